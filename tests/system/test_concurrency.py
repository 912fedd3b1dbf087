"""Money under concurrency, against a real `sandbox serve`: reservations against a spend cap
are atomic, idempotency keys never charge twice, and nothing is lost; as one process on
SQLite, and as four worker processes on PostgreSQL, where the in-process locks cannot help."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from databases import fresh_database
from live import Cast, active_contract, cast_of, run_server

from contracts.quota import BEIJING

# One call fee and nothing else, so that a job's charge equals its quote and the number of
# jobs a cap admits does not depend on how many have settled meanwhile.
FLAT_FEE = {
    "name": "按次收费",
    "effective_from": "2026-01-02T00:00:00Z",
    "items": [{"unit": "call", "price": "1.00"}],
}
JOB = 'emit("n", table("population").agg(n=count()).collect())'


@pytest.fixture(scope="module", params=["one worker on sqlite", "four workers on postgresql"])
def cast(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cast]:
    root = tmp_path_factory.mktemp("concurrency")
    several = request.param.startswith("four")
    with (
        fresh_database("postgresql" if several else "sqlite") as url,
        run_server(
            root, "ray" if several else "local", workers=4 if several else 1, database_url=url
        ) as server,
        cast_of(server, root) as cast,
    ):
        cast.bureau.publish_prices(FLAT_FEE)
        yield cast


def _submit(url: str, token: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{url}/v1/jobs", json=body, timeout=120, headers={"Authorization": f"Bearer {token}"}
    )


def _submit_at_once(cast: Cast, body: dict[str, Any], times: int) -> list[httpx.Response]:
    """`body` submitted `times` times at once, each on a connection of its own."""
    with ThreadPoolExecutor(max_workers=times) as pool:
        return list(
            pool.map(lambda _: _submit(cast.server.url, cast.operator_token, body), range(times))
        )


def _finish(cast: Cast, job_ids: list[str], limit: float = 120) -> list[Any]:
    deadline = time.monotonic() + limit
    return [
        cast.operator.job(j).wait(timeout=max(0.0, deadline - time.monotonic())) for j in job_ids
    ]


def test_a_cap_for_37_jobs_admits_exactly_37_of_100_concurrent_submissions(cast: Cast) -> None:
    cid = active_contract(cast, spend_cap="37.00")
    assert cast.operator.quote(cid, JOB)["quote"]["amount"] == "1.00"
    body = {"contract_id": cid, "code": JOB}
    responses = _submit_at_once(cast, body, 100)
    codes = [r.status_code for r in responses]
    assert codes.count(201) == 37 and codes.count(429) == 63, codes
    for r in responses:
        if r.status_code == 429:
            err = r.json()
            assert err["code"] == "quota_exceeded" and "spend cap of 37.00" in err["error"]
    jobs = _finish(cast, [r.json()["id"] for r in responses if r.status_code == 201])
    assert [j.status for j in jobs] == ["succeeded"] * 37
    assert all(j.charge["amount"] == "1.00" for j in jobs)
    spend = cast.bureau.contract(cid)["spend"]
    assert spend == {"reserved_fen": 0, "spent_fen": 3700}
    bill = cast.operator.bills(dt.datetime.now(BEIJING).strftime("%Y-%m"))
    assert sum(1 for c in bill["charges"] if c["contract_id"] == cid) == 37
    # The cap is used up: one more is refused, and nothing was reserved for it.
    assert _submit(cast.server.url, cast.operator_token, body).status_code == 429
    assert cast.bureau.contract(cid)["spend"] == spend


def test_concurrent_resubmissions_with_one_key_run_and_charge_once(cast: Cast) -> None:
    cid = active_contract(cast, spend_cap="100.00")
    body = {"contract_id": cid, "code": JOB, "idempotency_key": "每日报表-2026-11-25"}
    responses = _submit_at_once(cast, body, 20)
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    _finish(cast, [responses[0].json()["id"]])
    assert cast.bureau.contract(cid)["spend"] == {"reserved_fen": 0, "spent_fen": 100}


def test_a_quota_of_9_jobs_a_day_admits_exactly_9_of_30_concurrent_submissions(
    cast: Cast,
) -> None:
    cid = active_contract(cast, spend_cap="100.00", quotas={"jobs_per_day": 9})
    body = {"contract_id": cid, "code": JOB}
    responses = _submit_at_once(cast, body, 30)
    codes = [r.status_code for r in responses]
    assert codes.count(201) == 9 and codes.count(429) == 21, codes
    assert all("9 job(s) per day" in r.json()["error"] for r in responses if r.status_code == 429)
    jobs = _finish(cast, [r.json()["id"] for r in responses if r.status_code == 201])
    assert [j.status for j in jobs] == ["succeeded"] * 9
    assert cast.bureau.contract(cid)["spend"] == {"reserved_fen": 0, "spent_fen": 900}


def test_a_privacy_budget_for_5_jobs_admits_exactly_5_of_20_concurrent_submissions(
    cast: Cast,
) -> None:
    privacy = {"population": {"epsilon": "1.0", "per_job_epsilon": "0.2"}}
    cid = active_contract(cast, spend_cap="100.00", privacy=privacy)
    body = {"contract_id": cid, "code": JOB}
    responses = _submit_at_once(cast, body, 20)
    codes = [r.status_code for r in responses]
    assert codes.count(201) == 5, codes
    refused = [r.json() for r in responses if r.status_code != 201]
    assert len(refused) == 15 and all("budget" in e["error"] for e in refused), refused[:2]
    jobs = _finish(cast, [r.json()["id"] for r in responses if r.status_code == 201])
    assert [j.status for j in jobs] == ["succeeded"] * 5
    budget = cast.operator._request("GET", f"/contracts/{cid}/budget")["privacy"]["population"]
    assert (budget["spent"], budget["reserved"], budget["remaining"]) == ("1", "0", "0")
