"""Four API workers on PostgreSQL: one log however many processes append to it, counts summed
over the workers, one release history; and where several workers cannot be correct, refused."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import fleet
import httpx
import pytest
from fleet import (
    COUNT,
    FLAT_FEE,
    regulator_desk,
    submit_all,
    verify,
    worker_pids,
)
from live import RESIDENTS, SEED, Cast, active_contract, cast_of, server_env

from operators.client import SandboxClient
from sandbox.catalog.synthetic import generate_city


def _scrape(url: str, token: str) -> str:
    # A new connection each time, so that successive scrapes reach different workers.
    r = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.text


def _succeeded_total(text: str) -> float:
    found = re.search(r'^sandbox_jobs_total\{code="",status="succeeded"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


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
    deployment: fleet.Deployment,
) -> None:
    with deployment.serve() as served, cast_of(deployment.server(served), deployment.root) as cast:
        cast.bureau.publish_prices(FLAT_FEE)
        desk, regulator = regulator_desk(cast, deployment.root)
        cid = active_contract(cast, spend_cap="100.00")
        assert len(worker_pids(served.process.pid)) == 4

        # Appends from every worker at once: principals made and jobs submitted and settled.
        with ThreadPoolExecutor(24) as pool:
            made = pool.map(
                lambda i: cast.bureau.create_principal(f"运营公司{i:02d}", "operator"), range(12)
            )
            ids = submit_all(cast, cid, COUNT, [f"计数-{i}" for i in range(12)])
            assert len({p["id"] for p in made}) == 12
        jobs = [cast.operator.job(j).wait(timeout=120) for j in ids]
        assert [j.status for j in jobs] == ["succeeded"] * 12

        verify(served.url, desk, regulator)
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
