"""The object store's size of a locally started Ray comes from `SANDBOX_RAY_OBJECT_STORE_MB`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sandbox.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
STORE_MB = 96

# A process of its own: Ray starts once per process, and the suite's shared Ray (the
# `ray_local` fixture) may already run in this one.
STARTS_RAY = """
import json, ray
from sandbox.context import ensure_ray
from sandbox.settings import Settings

settings = Settings()
ensure_ray(settings)
print(json.dumps({"setting": settings.ray_object_store_mb,
                  "store": ray.cluster_resources().get("object_store_memory")}))
ray.shutdown()
"""


def test_the_object_store_size_is_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SANDBOX_RAY_OBJECT_STORE_MB", "512")
    assert Settings().ray_object_store_mb == 512
    monkeypatch.delenv("SANDBOX_RAY_OBJECT_STORE_MB")
    assert Settings().ray_object_store_mb is None


def test_below_ray_s_minimum_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBOX_RAY_OBJECT_STORE_MB", "10")
    with pytest.raises(ValueError):
        Settings()


def test_a_local_ray_is_started_with_that_object_store(tmp_path: Path) -> None:
    # A short private directory: Ray's socket paths are limited in length, and its "current
    # cluster" file must not be what another Ray on the machine picks up.
    ray_dir = tempfile.mkdtemp(prefix="pds-ray-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SANDBOX_RAY_ADDRESS")}
    env.update(
        RAY_TMPDIR=ray_dir,
        SANDBOX_DATA_DIR=str(tmp_path),
        SANDBOX_RAY_OBJECT_STORE_MB=str(STORE_MB),
        SANDBOX_RAY_NUM_CPUS="1",
    )
    try:
        proc = subprocess.run(
            [sys.executable, "-c", STARTS_RAY],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        shutil.rmtree(ray_dir, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["setting"] == STORE_MB
    assert out["store"] == STORE_MB << 20
