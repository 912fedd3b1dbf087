"""Four API workers on PostgreSQL, run as a city runs the service: one log however many
processes append to it, counts summed over the workers, and crashes (the whole service, or
some of its workers, killed with SIGKILL while jobs run) that leave every job finished and
explained, nothing reserved, ε given back and the log verifying from outside."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from databases import fresh_database
from live import (
    RESIDENTS,
    SEED,
    Cast,
    Server,
    Serving,
    active_contract,
    cast_of,
    init_instance,
    ledger_cli,
    server_env,
    serving,
)
from waiting import wait_until

from operators.client import SandboxClient
from operators.keys import private_key_from_pem, public_key_b64
from sandbox.catalog.synthetic import generate_city

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


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
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


def _regulator_desk(cast: Cast, root: Path) -> tuple[Path, str]:
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


def _verify(url: str, desk: Path, regulator: str) -> None:
    args = ("--url", url, "--bureau-key", "bureau.pub", "--checkpoint", "saved.txt")
    verified = ledger_cli("verify", *args, cwd=desk, token=regulator)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _submit_all(cast: Cast, cid: str, code: str, keys: list[str]) -> list[str]:
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
def _reconnected(cast: Cast, server: Server) -> Iterator[Cast]:
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


def _statuses(cast: Cast, ids: list[str]) -> dict[str, Any]:
    return {j: cast.operator.job(j) for j in ids}


def _worker_pids(parent: int) -> list[int]:
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


def _scrape(url: str, token: str) -> str:
    # A new connection each time, so that successive scrapes reach different workers.
    r = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.text


def _succeeded_total(text: str) -> float:
    found = re.search(r'^sandbox_jobs_total\{code="",status="succeeded"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def _assert_settled_consistently(cast: Cast, cid: str, jobs: dict[str, Any]) -> None:
    charged = sum(Decimal(j.charge["amount"]) for j in jobs.values() if j.charge)
    spend = cast.bureau.contract(cid)["spend"]
    assert spend == {"reserved_fen": 0, "spent_fen": int(charged * 100)}, spend
    budget = cast.operator._request("GET", f"/contracts/{cid}/budget")["privacy"]["population"]
    ran = sum(1 for j in jobs.values() if j.status == "succeeded")
    assert budget["reserved"] == "0", budget
    assert Decimal(budget["spent"]) == Decimal("0.2") * ran, budget


def _assert_interrupted(job: Any) -> None:
    assert job.status == "failed", job
    assert job.error["code"] == "interrupted" and job.error["fault"] == "service", job.error
    assert not job.charge or Decimal(job.charge["amount"]) == 0


def _targets(count: int) -> list[dict[str, Any]]:
    """Residents with income, each alone in their (district, birth date, gender), one per
    district."""
    rows = generate_city(RESIDENTS, seed=SEED)["population"].table.to_pylist()
    seen = Counter((r["district"], r["birth_date"], r["gender"]) for r in rows)
    found: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["income"] > 0 and seen[(r["district"], r["birth_date"], r["gender"])] == 1:
            found.setdefault(r["district"], r)
    assert len(found) >= count
    return list(found.values())[:count]


def _sum_by_new_connection(cast: Cast, cid: str, where: str) -> list[Any]:
    code = (
        f'emit("r", table("population").filter({where})'
        '.agg(n=count(), total=sum("income")).collect())'
    )
    # A client of its own: a new connection, which any of the workers may take.
    with SandboxClient(
        cast.server.url, token=cast.operator_token, signing_key=cast.operator_key
    ) as operator:
        job = operator.submit(cid, code, wait=True)
    assert job.status == "succeeded", job.error
    return list(job.outputs["r"]["rows"][0])


def test_four_workers_keep_one_log_one_release_history_and_one_count(
    deployment: Deployment,
) -> None:
    with deployment.serve() as served, cast_of(deployment.server(served), deployment.root) as cast:
        cast.bureau.publish_prices(FLAT_FEE)
        desk, regulator = _regulator_desk(cast, deployment.root)
        cid = active_contract(cast, spend_cap="100.00")
        assert len(_worker_pids(served.process.pid)) == 4

        # Appends from every worker at once: principals made and jobs submitted and settled.
        with ThreadPoolExecutor(24) as pool:
            made = pool.map(
                lambda i: cast.bureau.create_principal(f"运营公司{i:02d}", "operator"), range(12)
            )
            ids = _submit_all(cast, cid, COUNT, [f"计数-{i}" for i in range(12)])
            assert len({p["id"] for p in made}) == 12
        jobs = [cast.operator.job(j).wait(timeout=120) for j in ids]
        assert [j.status for j in jobs] == ["succeeded"] * 12

        _verify(served.url, desk, regulator)
        entries = cast.bureau.ledger_entries()
        assert [e["index"] for e in entries] == list(range(len(entries)))
        # Whichever worker answers the scrape, it counts the jobs every worker settled.
        for _ in range(8):
            assert _succeeded_total(_scrape(served.url, cast.server.bureau_token)) == 12

        # Differencing through different workers: a district, then the district without one
        # resident, each job on a connection of its own. The workers share one release history.
        for target in _targets(4):
            # A contract each: detection suspends a contract whose jobs keep attacking.
            cid = active_contract(cast, spend_cap="10.00")
            district = f'(col("district") == "{target["district"]}")'
            alone = (
                f'(col("birth_date") == "{target["birth_date"].isoformat()}") & '
                f'(col("gender") == "{target["gender"]}")'
            )
            whole = _sum_by_new_connection(cast, cid, district)
            assert None not in whole
            assert _sum_by_new_connection(cast, cid, f"{district} & ~({alone})") == [None, None]


def test_the_whole_service_killed_while_jobs_run_comes_back_consistent(
    deployment: Deployment,
) -> None:
    with deployment.serve() as served, cast_of(deployment.server(served), deployment.root) as cast:
        cast.bureau.publish_prices(FLAT_FEE)
        desk, regulator = _regulator_desk(cast, deployment.root)
        cid = active_contract(cast, spend_cap="100.00", privacy=PRIVATE)
        keys = [f"夜间报表-{i}" for i in range(8)]
        ids = _submit_all(cast, cid, NOISY, keys)
        wait_until(
            lambda: all(j.status == "running" for j in _statuses(cast, ids).values()),
            30,
            interval=0.2,
            message="the jobs did not all start",
        )
        # Every process of the service at once: the workers, their supervisor, Ray.
        os.killpg(served.process.pid, signal.SIGKILL)
        served.process.wait(timeout=30)

    with deployment.serve() as served, _reconnected(cast, deployment.server(served)) as cast:
        jobs = _statuses(cast, ids)
        assert {j.status for j in jobs.values()} <= FINAL
        for job in jobs.values():
            _assert_interrupted(job)
        _assert_settled_consistently(cast, cid, jobs)
        # An idempotency key still names its job: submitted again, nothing new runs.
        again = cast.operator.submit(cid, NOISY, idempotency_key=keys[0])
        assert again.id == ids[0] and again.status == "failed"
        assert cast.bureau.contract(cid)["spend"]["reserved_fen"] == 0
        _verify(served.url, desk, regulator)
        # And the service works: a new job runs.
        fresh = cast.operator.submit(cid, NOISY, wait=True)
        assert fresh.status == "succeeded", fresh.error


def test_killed_workers_leave_their_jobs_to_the_others(deployment: Deployment) -> None:
    with deployment.serve() as served, cast_of(deployment.server(served), deployment.root) as cast:
        cast.bureau.publish_prices(FLAT_FEE)
        cid = active_contract(cast, spend_cap="100.00", privacy=PRIVATE)
        ids = _submit_all(cast, cid, NOISY, [f"报表-{i}" for i in range(12)])
        wait_until(
            lambda: all(j.status == "running" for j in _statuses(cast, ids).values()),
            30,
            interval=0.2,
            message="the jobs did not all start",
        )
        workers = _worker_pids(served.process.pid)
        assert len(workers) == 4
        for pid in workers[:3]:
            os.kill(pid, signal.SIGKILL)

        def all_final() -> dict[str, Any] | None:
            try:
                jobs = _statuses(cast, ids)
            except httpx.TransportError:
                return None
            return jobs if all(j.status in FINAL for j in jobs.values()) else None

        jobs = wait_until(all_final, 60, interval=0.5, message="jobs were left unfinished")
        interrupted = [j for j in jobs.values() if j.status == "failed"]
        assert interrupted, "no job was running in a killed worker"
        for job in interrupted:
            _assert_interrupted(job)
        assert all(j.status == "succeeded" for j in jobs.values() if j not in interrupted)
        _assert_settled_consistently(cast, cid, jobs)
        # The supervisor has replaced the killed workers, and the service works.
        wait_until(lambda: len(_worker_pids(served.process.pid)) == 4, 60, interval=0.5)
        fresh = cast.operator.submit(cid, NOISY, wait=True)
        assert fresh.status == "succeeded", fresh.error
        time.sleep(0)  # nothing left to wait for


@pytest.mark.parametrize(
    ("database", "executor", "reason"),
    [
        (None, "ray", "several workers need PostgreSQL"),
        ("postgresql+psycopg://nobody@127.0.0.1:1/none", "local", "need SANDBOX_EXECUTOR=ray"),
    ],
)
def test_several_workers_are_refused_where_they_cannot_be_correct(
    tmp_path: Path, database: str | None, executor: str, reason: str
) -> None:
    """SQLite (one writer, one process) and in-process jobs (a release gate per process)
    would break the invariants the workers share: refused at once, with what to do."""
    extra = {"SANDBOX_DATABASE_URL": database} if database else {}
    env = server_env(executor, **extra)
    args = ["serve", "--data-dir", str(tmp_path / "none"), "--workers", "2", "--port", "0"]
    script = Path(sys.executable).with_name("sandbox")
    done = subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert reason in done.stderr and "--workers 1" in done.stderr, done.stderr
