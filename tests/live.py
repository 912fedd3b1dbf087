"""A real `sandbox serve` process for tests: `sandbox init` + `sandbox serve` on a free port,
and a cast of clients (bureau, provider, operator) on an instance with the population dataset
and the demo's fees."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
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
from operators.keys import PrivateKey, generate_private_key, public_key_b64
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


def server_env(executor: str | None, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "SANDBOX_JOB_WALL_SECONDS": "20",
        "SANDBOX_PARTITION_ROWS": "2000",
        "SANDBOX_RAY_NUM_CPUS": "2",
        "RAY_AUTH_MODE": "disabled",
    }
    for name in ("SANDBOX_EXECUTOR", "SANDBOX_DATABASE_URL", "SANDBOX_RAY_ADDRESS", "RAY_ADDRESS"):
        env.pop(name, None)
    if executor is not None:
        env["SANDBOX_EXECUTOR"] = executor
    return {**env, **extra}


def init_instance(data_dir: Path, env: dict[str, str], args: tuple[str, ...] = ()) -> str:
    """`sandbox init`; the bureau's token."""
    init = subprocess.run(
        _sandbox("init", "--data-dir", str(data_dir), "--json", *args),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert init.returncode == 0, init.stderr
    created = json.loads(init.stdout)
    assert Path(created["data_dir"]) == data_dir.resolve()
    return str(created["token"])


@dataclass(frozen=True)
class Serving:
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@contextlib.contextmanager
def serving(data_dir: Path, env: dict[str, str], log: Path, workers: int = 1) -> Iterator[Serving]:
    """`sandbox serve` on a free port, in a process group of its own (so that a test can kill
    the whole service at once), stopped at the end if still running."""
    port = _free_port()
    args = ["serve", "--data-dir", str(data_dir), "--port", str(port), "--workers", str(workers)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            _sandbox(*args), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(url, proc, log, STARTUP_SECONDS)
            yield Serving(url, proc, log)
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


@contextlib.contextmanager
def run_server(
    root: Path,
    executor: str | None,
    extra_env: Mapping[str, str] | None = None,
    workers: int = 1,
    database_url: str | None = None,
    init_args: tuple[str, ...] = (),
) -> Iterator[Server]:
    """A new instance in `root`/instance, served. `extra_env`: settings of this server on top
    of the suite's (its log format, say); `init_args`: more options of `sandbox init`."""
    extra = {**(extra_env or {})}
    if database_url:
        extra["SANDBOX_DATABASE_URL"] = database_url
    env = server_env(executor, **extra)
    data_dir = root / "instance"
    token = init_instance(data_dir, env, init_args)
    with serving(data_dir, env, root / "serve.log", workers) as served:
        yield Server(served.url, token, data_dir)


@contextlib.contextmanager
def serve_instance(
    data_dir: Path, bureau_token: str, executor: str | None, database_url: str | None = None
) -> Iterator[Server]:
    """`sandbox serve` the existing instance in `data_dir` on a free port."""
    extra = {"SANDBOX_DATABASE_URL": database_url} if database_url else {}
    log = data_dir.parent / f"serve-{data_dir.name}.log"
    with serving(data_dir, server_env(executor, **extra), log) as served:
        yield Server(served.url, bureau_token, data_dir)


def ledger_cli(*args: str, cwd: Path, token: str | None = None) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("sandbox")
    # Nothing about the instance leaks in through the environment: only what is passed.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env.update({"PYTHONIOENCODING": "utf-8", "COLUMNS": "200"})
    if token is not None:
        env["SANDBOX_TOKEN"] = token
    return subprocess.run(
        [str(script) if script.exists() else "sandbox", "ledger", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@dataclass(frozen=True)
class Cast:
    """One client per principal of a live instance with the population dataset and fees."""

    server: Server
    bureau: SandboxClient
    provider: SandboxClient
    operator: SandboxClient
    operator_key: Ed25519PrivateKey | PrivateKey
    operator_token: str
    unsigned_operator: SandboxClient


@contextlib.contextmanager
def cast_of(server: Server, tmp: Path, key: PrivateKey | None = None) -> Iterator[Cast]:
    """`key`: the operator's signing key (a new Ed25519 key unless given)."""
    bureau = SandboxClient(server.url, token=server.bureau_token)
    key = key or generate_private_key()
    provider = bureau.create_principal("市公安局", "provider")
    operator = bureau.create_principal(
        "某数据科技有限公司",
        "operator",
        license_no="授权运营-2026-007",
        public_key=public_key_b64(key),
    )
    population = generate_city(RESIDENTS, seed=SEED)["population"]
    paths = write_city(tmp / "city", RESIDENTS, seed=SEED)
    bureau.ingest(
        paths["population"],
        {
            "name": "population",
            "title": population.title,
            "topic": population.topic,
            "description": population.description,
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
