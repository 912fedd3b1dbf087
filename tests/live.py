"""A real `sandbox serve` process for tests: `sandbox init` + `sandbox serve` on a free port,
and a cast of clients (bureau, provider, operator) on an instance with the population dataset
and the demo's fees."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import GRANTS, SCHEDULE
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from waiting import wait_until

from operators.client import SandboxClient
from operators.keys import generate_private_key
from sandbox.catalog.synthetic import generate_city, write_city

RESIDENTS = 5000
SEED = 3
STARTUP_SECONDS = 60.0


@dataclass(frozen=True)
class Server:
    url: str
    bureau_token: str
    data_dir: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sandbox(*args: str) -> list[str]:
    # The installed console script next to this interpreter, so the test uses its environment.
    script = Path(sys.executable).with_name("sandbox")
    return [str(script) if script.exists() else "sandbox", *args]


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, limit: float) -> None:
    def healthy() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"sandbox serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            return httpx.get(f"{url}/v1/health", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(
        healthy,
        limit,
        interval=0.2,
        message=lambda: f"sandbox serve was not healthy:\n{log.read_text()[-3000:]}",
    )


@contextlib.contextmanager
def run_server(
    root: Path, executor: str | None, extra_env: Mapping[str, str] | None = None
) -> Iterator[Server]:
    """`extra_env`: settings of this server on top of the suite's (its log format, say)."""
    env = {
        **os.environ,
        "SANDBOX_JOB_WALL_SECONDS": "20",
        "SANDBOX_PARTITION_ROWS": "2000",
        "SANDBOX_RAY_NUM_CPUS": "2",
        "RAY_AUTH_MODE": "disabled",
        **(extra_env or {}),
    }
    env.pop("SANDBOX_EXECUTOR", None)
    if executor is not None:
        env["SANDBOX_EXECUTOR"] = executor
    data_dir = root / "instance"
    init = subprocess.run(
        _sandbox("init", "--data-dir", str(data_dir), "--json"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    created = json.loads(init.stdout)
    assert Path(created["data_dir"]) == data_dir.resolve()
    port = _free_port()
    log = root / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            _sandbox("serve", "--data-dir", str(data_dir), "--port", str(port)),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(url, proc, log, STARTUP_SECONDS)
            yield Server(url, created["token"], data_dir)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


@dataclass(frozen=True)
class Cast:
    """One client per principal of a live instance with the population dataset and fees."""

    server: Server
    bureau: SandboxClient
    provider: SandboxClient
    operator: SandboxClient
    operator_key: Ed25519PrivateKey
    operator_token: str
    unsigned_operator: SandboxClient


@contextlib.contextmanager
def cast_of(server: Server, tmp: Path) -> Iterator[Cast]:
    bureau = SandboxClient(server.url, token=server.bureau_token)
    key = generate_private_key()
    provider = bureau.create_principal("市公安局", "provider")
    operator = bureau.create_principal(
        "某数据科技有限公司",
        "operator",
        license_no="授权运营-2026-007",
        public_key=key.public_key(),
    )
    population = generate_city(RESIDENTS, seed=SEED)["population"]
    paths = write_city(tmp / "city", RESIDENTS, seed=SEED)
    bureau.ingest(
        paths["population"],
        {
            "name": "population",
            "title": population.title,
            "provider_id": provider["id"],
            "level": population.level,
            "columns": population.columns,
        },
    )
    bureau.publish_prices(SCHEDULE)
    clients = (
        SandboxClient(server.url, token=provider["token"]),
        SandboxClient(server.url, token=operator["token"], signing_key=key),
        SandboxClient(server.url, token=operator["token"]),
    )
    try:
        yield Cast(server, bureau, clients[0], clients[1], key, operator["token"], clients[2])
    finally:
        for c in (bureau, *clients):
            c.close()


def active_contract(cast: Cast, **terms: Any) -> str:
    applied = cast.operator.apply_contract(
        GRANTS,
        "养老服务设施规划",
        "commercial",
        dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "2030-01-01T00:00:00Z",
        **terms,
    )
    cid = applied["id"]
    assert applied["status"] == "pending_approval"
    cast.provider.approve_contract(cid)
    assert cast.bureau.sign_contract(cid)["signatures"]["bureau"]
    signed = cast.operator.sign_contract(cid)
    assert signed["status"] == "active", signed
    return cid
