"""The running counters that quotas and volume tiers read: they hold what summing the jobs
would give, and a submission reads them instead of the jobs, so its cost does not grow with
the number of jobs before it."""

from __future__ import annotations

import json
from typing import Any

from conftest import World
from sqlalchemy import event, text

from sandbox.common import clock
from sandbox.records import counters

OK = 'emit("r", table("population").group_by("district").agg(n=count()).collect())'
FAILS = 'x = table("population").agg(n=count()).collect()\nraise ValueError("late")'
NOT_GRANTED = 'emit("r", table("population").agg(s=sum(col("birth_date").year())).collect())'


def _summed(w: World, contract_id: str, operator_id: str) -> tuple[int, int, dict[str, int]]:
    """The sums the counters replace, over the jobs themselves (as the service once did)."""
    jobs = w.client.get(
        f"/v1/jobs?contract_id={contract_id}&limit=200", headers=w.h(w.operator)
    ).json()["jobs"]
    with w.ctx.reading() as s:
        rows = s.execute(
            text("SELECT id, quote, usage, charge FROM jobs WHERE operator_id = :o"),
            {"o": operator_id},
        ).all()
    admitted = {j["id"] for j in jobs}
    today = rows_month = 0
    volume: dict[str, int] = {}

    def parsed(v: Any) -> Any:
        return json.loads(v) if isinstance(v, str) else v

    for job_id, quote, usage, charge in rows:
        quote, usage, charge = parsed(quote), parsed(usage) or {}, parsed(charge)
        if quote is None:
            continue
        if job_id in admitted:
            today += 1
            rows_month += int(usage.get("rows_scanned", usage["bounds"]["rows_scanned"]))
        if charge is not None:
            for level, n in (usage.get("rows_by_level") or {}).items():
                volume[level] = volume.get(level, 0) + int(n)
    return today, rows_month, volume


def test_the_counters_hold_what_summing_the_jobs_gives(local_world: World) -> None:
    w = local_world
    cid = w.active_contract(quotas={"jobs_per_day": 50, "rows_per_month": 10_000_000})
    outcomes = [w.run(cid, code) for code in (OK, FAILS, NOT_GRANTED, OK)]
    assert [r.status_code for r in outcomes] == [201, 201, 403, 201]
    assert outcomes[1].json()["status"] == "failed"
    today, rows_month, volume = _summed(w, cid, w.operator["id"])
    now = clock.stored_now()
    with w.ctx.reading() as s:
        assert counters.one(s, counters.JOBS_OF_DAY, cid, counters.day_of(now)) == today == 3
        held = counters.one(s, counters.ROWS_OF_MONTH, cid, counters.month_of(now))
        assert held == rows_month > 0
        month = counters.read(s, counters.VOLUME_OF_MONTH, w.operator["id"], counters.month_of(now))
        assert month == volume and sum(month.values()) > 0


def test_a_submission_reads_no_sum_over_the_jobs(local_world: World) -> None:
    """What made each submission dearer than the last: sums over the month's jobs."""
    w = local_world
    cid = w.active_contract(quotas={"jobs_per_day": 50})
    assert w.run(cid, OK).status_code == 201
    seen: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        seen.append(" ".join(statement.lower().split()))

    event.listen(w.ctx.engine, "before_cursor_execute", note)
    try:
        assert w.run(cid, OK).status_code == 201
    finally:
        event.remove(w.ctx.engine, "before_cursor_execute", note)
    over_jobs = [s for s in seen if "from jobs" in s and ("sum(" in s or "count(" in s)]
    assert seen and not over_jobs, over_jobs
