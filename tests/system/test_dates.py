"""Ages at a date in a job: the residents 65 and over at the end of 2025, by district, as the
job language computes them, equal the count made from the source rows."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from typing import Any

from conftest import World


def test_age_at_a_date_filters_as_the_source_rows_say(
    local_world: World, city: dict[str, Any]
) -> None:
    w = local_world
    cid = w.active_contract()
    job = w.run(
        cid,
        'old = table("population").filter(col("birth_date").age_at("2025-12-31") >= 65)\n'
        'emit("aged", old.group_by("district").agg(n=count()).collect())',
    ).json()
    assert job["status"] == "succeeded", job["error"]
    pop = city["population"].table.to_pydict()
    end = dt.date(2025, 12, 31)
    truth = Counter(
        d
        for d, b in zip(pop["district"], pop["birth_date"])
        if end.year - b.year - ((end.month, end.day) < (b.month, b.day)) >= 65
    )
    released = job["outputs"]["aged"]
    shown = {r[0]: r[1] for r in released["rows"] if r[1] is not None}
    assert shown and all(shown[d] == truth[d] for d in shown)
    # An age is as coarse as a year of birth: grouping by it is allowed like year().
    by_age = w.run(
        cid,
        'a = table("population").derive(age=col("birth_date").age_at("2025-12-31"))\n'
        'emit("by_age", a.filter(col("age") >= 90).group_by("age").agg(n=count()).collect())',
    ).json()
    assert by_age["status"] == "succeeded", by_age["error"]
    ages = {r[0] for r in by_age["outputs"]["by_age"]["rows"]}
    assert ages and min(ages) >= 90
    # Both ends must be dates.
    bad = w.run(
        cid,
        'emit("x", table("population").filter(col("birth_date").age_at("last year") > 1)'
        ".agg(n=count()).collect())",
    )
    refused = bad.json()
    assert refused["status"] == "rejected" and refused["usage"]["rows_scanned"] == 0
    assert "years_until needs two dates" in refused["error"]["message"]
