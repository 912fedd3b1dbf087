"""A real `sandbox serve` process on a fresh instance, measured from outside.

`sandbox init` and `sandbox serve` run as subprocesses of this one, on SQLite in the instance's
own directory or on a PostgreSQL database created for the run and dropped afterwards. The
principals, the sample dataset, the fees and one active contract are then set up over HTTP,
as a bureau and an operator would.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import create_engine, text

from benchmarks.instance import SCHEDULE, active_contract, auth, free_port, principal
from benchmarks.queries import SMALL_DATASET
from operators.keys import generate_private_key
from sandbox.catalog.synthetic import generate_city
from sandbox.ledger.verify import BureauKey, LedgerSource, verify_log

DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
STARTUP_SECONDS = 120.0
HTTP_TIMEOUT = 600.0


@dataclass(frozen=True)
class Deployment:
    name: str
    database: str  # "sqlite" or "postgresql"
    workers: int


DEPLOYMENTS: dict[str, Deployment] = {
    d.name: d
    for d in (
        Deployment("sqlite-1", "sqlite", 1),
        Deployment("pg-1", "postgresql", 1),
        Deployment("pg-4", "postgresql", 4),
    )
}


@dataclass(frozen=True)
class Served:
    """A served instance with one active contract over the sample dataset."""

    url: str
    data_dir: Path
    bureau_token: str
    operator_token: str
    operator_key: Ed25519PrivateKey
    contract_id: str
    startup_s: float

    def partitions(self, dataset: str = SMALL_DATASET) -> list[str]:
        return sorted(str(p) for p in (self.data_dir / "datasets" / dataset).glob("part-*.parquet"))


def _sandbox(*args: str) -> list[str]:
    # The console script next to this interpreter, so the server runs this environment's code.
    script = Path(sys.executable).with_name("sandbox")
    return [str(script) if script.exists() else "sandbox", *args]


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A database of its own for one run, dropped (with any sessions still on it) at the end."""
    name = f"bench_{os.getpid()}_{secrets.token_hex(4)}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as con:
            con.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield engine.url.set(database=name).render_as_string(hide_password=False)
        finally:
            with engine.connect() as con:
                con.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


def server_env(database_url: str | None, ray_cpus: int | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env.pop("RAY_ADDRESS", None)  # a private Ray per server, whatever the shell points at
    env |= {"SANDBOX_LOG_LEVEL": "warning", "SANDBOX_EXECUTOR": "ray", "RAY_AUTH_MODE": "disabled"}
    if database_url is not None:
        env["SANDBOX_DATABASE_URL"] = database_url
    if ray_cpus is not None:
        env["SANDBOX_RAY_NUM_CPUS"] = str(ray_cpus)
    return env


def _init(data_dir: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        _sandbox("init", "--data-dir", str(data_dir), "--json"),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise RuntimeError(f"sandbox init failed:\n{done.stderr[-3000:]}")
    return str(json.loads(done.stdout)["token"])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sandbox serve exited with {proc.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(
        f"sandbox serve was not healthy after {STARTUP_SECONDS:.0f} s:\n{_tail(log)}"
    )


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:] if log.exists() else ""


@contextmanager
def _serve(
    data_dir: Path, env: dict[str, str], workers: int, log: Path
) -> Iterator[tuple[str, float]]:
    """`sandbox serve` in a process group of its own, so that its Ray and workers stop with it."""
    port = free_port()
    args = ["serve", "--data-dir", str(data_dir), "--port", str(port), "--workers", str(workers)]
    started = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            _sandbox(*args), env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc, log)
        yield url, time.perf_counter() - started
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def sample_file(rows: int, seed: int, where: Path) -> Path:
    """The small job's dataset: a draw of the synthetic population, written once per run."""
    path = where / f"{SMALL_DATASET}-{rows}.parquet"
    pq.write_table(generate_city(rows, seed=seed)["population"].table, path)
    return path


def _setup(url: str, bureau: str, sample: Path, seed: int) -> tuple[str, Ed25519PrivateKey, str]:
    """Provider, operator with a key, the sample dataset, the fees, an active contract."""
    policy = generate_city(100, seed=seed)["population"]
    meta: dict[str, Any] = {
        "name": SMALL_DATASET,
        "title": policy.title + "（抽样）",
        "level": policy.level,
        "columns": policy.columns,
    }
    key = generate_private_key()
    with httpx.Client(base_url=url, timeout=HTTP_TIMEOUT) as client:
        provider = principal(client, bureau, "市大数据中心", "provider")
        operator = principal(client, bureau, "智城数据科技有限公司", "operator", key)
        meta["provider_id"] = provider["id"]
        r = client.post(
            "/v1/datasets",
            headers=auth(bureau),
            files={"file": (sample.name, sample.read_bytes(), "application/vnd.apache.parquet")},
            data={"meta": json.dumps(meta, ensure_ascii=False)},
        )
        if r.status_code != 201:
            raise RuntimeError(f"ingest → {r.status_code}: {r.text[:500]}")
        r = client.post("/v1/price-schedules", headers=auth(bureau), json=SCHEDULE)
        if r.status_code not in (200, 201):
            raise RuntimeError(f"prices → {r.status_code}: {r.text[:500]}")
        grants = {SMALL_DATASET: list(policy.columns)}
        cid = active_contract(client, bureau, provider["token"], operator["token"], key, grants)
    return str(operator["token"]), key, cid


@contextmanager
def served(
    deployment: Deployment,
    sample: Path,
    seed: int,
    ray_cpus: int | None = None,
    pg_admin_url: str = DEFAULT_PG_ADMIN_URL,
) -> Iterator[Served]:
    """A fresh instance of `deployment`, served and set up; everything is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"sandbox-{deployment.name}-") as tmp:
        root = Path(tmp)
        with _database(deployment, pg_admin_url) as database_url:
            env = server_env(database_url, ray_cpus)
            data_dir = root / "instance"
            bureau = _init(data_dir, env)
            with _serve(data_dir, env, deployment.workers, root / "serve.log") as (url, startup):
                token, key, cid = _setup(url, bureau, sample, seed)
                yield Served(url, data_dir, bureau, token, key, cid, startup)


@contextmanager
def _database(deployment: Deployment, admin_url: str) -> Iterator[str | None]:
    if deployment.database == "sqlite":
        yield None
        return
    with postgres_database(admin_url) as url:
        yield url


def log_size(target: Served) -> int:
    r = httpx.get(
        f"{target.url}/v1/ledger/checkpoint", headers=auth(target.bureau_token), timeout=60
    )
    r.raise_for_status()
    return int(r.json()["size"])


def verify_ledger(target: Served) -> tuple[bool, int, str]:
    """The whole log checked from outside against the bureau key the instance keeps on disk
    (not the one the service serves): passed, entries checked, and the first problem."""
    private = serialization.load_pem_private_key(
        (target.data_dir / "keys" / "bureau.pem").read_bytes(), password=None
    )
    if not isinstance(private, Ed25519PrivateKey):
        raise RuntimeError("the bureau key is not an Ed25519 key")
    raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    with LedgerSource(target.url, target.bureau_token, timeout=HTTP_TIMEOUT) as source:
        report = verify_log(source, BureauKey(raw))
    first = report.problems[0].message if report.problems else ""
    return report.ok, report.entries_checked, first
