"""Four API workers on PostgreSQL and Ray, as a city runs the service: the deployment the
workers' system tests share, and what they check of it."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from databases import fresh_database
from live import Cast, Server, Serving, init_instance, ledger_cli, server_env, serving
from waiting import wait_until

from operators.client import SandboxClient
from operators.keys import private_key_from_pem, public_key_b64

FLAT_FEE = {
    "name": "按次收费",
    "effective_from": "2026-01-02T00:00:00Z",
    "items": [{"unit": "call", "price": "1.00"}],
}
COUNT = 'emit("n", table("population").agg(n=count()).collect())'
# Under differential privacy a job ends only on a whole timing step (4 s here): long enough
# to be caught running.
PRIVATE = {"population": {"epsilon": "5", "per_job_epsilon": "0.2"}}
NOISY = (
    "emit('t', table('population').group_by('district')"
    ".agg(n=count(), avg_income=mean('income')).collect())"
)
FINAL = {"succeeded", "failed", "rejected"}


@dataclass(frozen=True)
class Deployment:
    env: dict[str, str]
    data_dir: Path
    token: str
    root: Path

    def serve(self) -> Any:
        return serving(self.data_dir, self.env, self.root / "serve.log", workers=4)

    def server(self, served: Serving) -> Server:
        return Server(served.url, self.token, self.data_dir)


@contextlib.contextmanager
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    """A new instance on a PostgreSQL database of its own, served by four workers on Ray."""
    with fresh_database("postgresql") as url:
        assert url is not None
        env = server_env(
            "ray",
            SANDBOX_DATABASE_URL=url,
            SANDBOX_TIMING_QUANTUM_SECONDS="4",
            SANDBOX_RECOVERY_INTERVAL_SECONDS="1",
        )
        data_dir = tmp_path / "instance"
        yield Deployment(env, data_dir, init_instance(data_dir, env), tmp_path)


def regulator_desk(cast: Cast, root: Path) -> tuple[Path, str]:
    """A regulator with the bureau's published key and a checkpoint saved now."""
    regulator = cast.bureau.create_principal("市场监管审计处", "regulator")["token"]
    desk = root / "regulator"
    desk.mkdir()
    key = private_key_from_pem((cast.server.data_dir / "keys" / "bureau.pem").read_bytes())
    (desk / "bureau.pub").write_text(public_key_b64(key) + "\n", encoding="utf-8")
    saved = ledger_cli(
        "checkpoint", "--url", cast.server.url, "--out", "saved.txt", cwd=desk, token=regulator
    )
    assert saved.returncode == 0, saved.stderr
    return desk, regulator


def verify(url: str, desk: Path, regulator: str) -> None:
    args = ("--url", url, "--bureau-key", "bureau.pub", "--checkpoint", "saved.txt")
    verified = ledger_cli("verify", *args, cwd=desk, token=regulator)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def submit_all(cast: Cast, cid: str, code: str, keys: list[str]) -> list[str]:
    """Submitted at once, each on a connection of its own (so spread over the workers)."""

    def one(key: str) -> str:
        body = {"contract_id": cid, "code": code, "params": {}, "idempotency_key": key}
        r = httpx.post(
            f"{cast.server.url}/v1/jobs",
            json=body,
            headers={"Authorization": f"Bearer {cast.operator_token}"},
            timeout=60,
        )
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    with ThreadPoolExecutor(len(keys)) as pool:
        return list(pool.map(one, keys))


@contextlib.contextmanager
def reconnected(cast: Cast, server: Server) -> Iterator[Cast]:
    """The same people, signed in to the service started again."""
    bureau = SandboxClient(server.url, token=server.bureau_token)
    operator = SandboxClient(server.url, token=cast.operator_token, signing_key=cast.operator_key)
    unsigned = SandboxClient(server.url, token=cast.operator_token)
    try:
        yield dataclasses.replace(
            cast, server=server, bureau=bureau, operator=operator, unsigned_operator=unsigned
        )
    finally:
        for client in (bureau, operator, unsigned):
            client.close()


def statuses(cast: Cast, ids: list[str]) -> dict[str, Any]:
    return {j: cast.operator.job(j) for j in ids}


def wait_all_running(cast: Cast, ids: list[str]) -> None:
    wait_until(
        lambda: all(j.status == "running" for j in statuses(cast, ids).values()),
        30,
        interval=0.2,
        message="the jobs did not all start",
    )


def worker_pids(parent: int) -> list[int]:
    """The uvicorn workers of `parent`: its children started by multiprocessing (the others
    are Ray's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            found.append(int(entry.name))
    return found


def assert_settled_consistently(cast: Cast, cid: str, jobs: dict[str, Any]) -> None:
    charged = sum(Decimal(j.charge["amount"]) for j in jobs.values() if j.charge)
    spend = cast.bureau.contract(cid)["spend"]
    assert spend == {"reserved_fen": 0, "spent_fen": int(charged * 100)}, spend
    budget = cast.operator._request("GET", f"/contracts/{cid}/budget")["privacy"]["population"]
    ran = sum(1 for j in jobs.values() if j.status == "succeeded")
    assert budget["reserved"] == "0", budget
    assert Decimal(budget["spent"]) == Decimal("0.2") * ran, budget


def assert_interrupted(job: Any) -> None:
    assert job.status == "failed", job
    assert job.error["code"] == "interrupted" and job.error["fault"] == "service", job.error
    assert not job.charge or Decimal(job.charge["amount"]) == 0
