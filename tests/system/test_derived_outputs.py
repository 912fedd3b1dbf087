"""Tables a job derives from its releases leave as outputs, marked derived; the values the
rules hid stay hidden in them, and anything that is not a table shape is refused."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
from conftest import World

SHARES = """\
res = table("population").group_by("district", "gender").agg(n=count()).collect()
by = res.pivot("district", "gender", "n").sort("district")
emit("by_gender", by)
emit("top", res.sort("n", descending=True).head(3))
total = sum([n for d, g, n in res.rows if n is not None])
emit_table("shares", columns=["区县", "性别", "占比"],
           rows=[[d, g, (n / total if n is not None else None)] for d, g, n in res.rows])
"""


def test_derived_tables_are_emitted_and_marked(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    job = w.run(cid, SHARES).json()
    assert job["status"] == "succeeded", job["error"]
    outputs = job["outputs"]
    assert job["disclosure"]["derived"] == ["by_gender", "shares", "top"]
    pivot = outputs["by_gender"]
    assert pivot["derived"] is True
    assert [c["name"] for c in pivot["columns"]][0] == "district"
    assert [r[0] for r in pivot["rows"]] == sorted(r[0] for r in pivot["rows"])
    top = outputs["top"]
    counts = [r[2] for r in top["rows"]]
    assert len(counts) == 3 and counts == sorted(counts, reverse=True)
    shares = outputs["shares"]
    assert [c["name"] for c in shares["columns"]] == ["区县", "性别", "占比"]
    assert abs(sum(r[2] for r in shares["rows"] if r[2] is not None) - 1.0) < 1e-9
    # A derived output downloads like a released one.
    r = w.client.get(f"/v1/jobs/{job['id']}/outputs/shares?format=parquet", headers=w.h(w.operator))
    assert r.status_code == 200, r.text
    assert pq.read_table(io.BytesIO(r.content)).column_names == ["区县", "性别", "占比"]


def test_a_table_shape_the_driver_does_not_accept_fails_the_job(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    bad = 'emit_table("x", columns=["a", "b"], rows=[[1]])'
    job = w.run(cid, bad).json()
    # Refused as any plan error is (the job is recorded rejected), before it read anything.
    assert job["status"] == "rejected"
    assert "row 0 must be a list of 2 values" in job["error"]["message"]
    assert job["usage"]["rows_scanned"] == 0
    assert job["charge"] is None or job["charge"]["amount"] == "0.00"


def test_bands_come_in_edge_order_with_their_bounds(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    job = w.run(
        cid,
        'y = table("population").derive(y=col("birth_date").year())\n'
        'h = y.histogram("y", [1950, 1970, 1990, 2010]).collect()\n'
        'emit("h", h)\n'
        'emit("top", h.sort("n", descending=True).head(2))',
    ).json()
    assert job["status"] == "succeeded", job["error"]
    h = job["outputs"]["h"]
    labels = [r[0] for r in h["rows"]]
    # As text, "< 1950" and ">= 2010" would come before every "[…)".
    order = ["< 1950", "[1950, 1970)", "[1970, 1990)", "[1990, 2010)", ">= 2010"]
    assert labels == order
    (band,) = [c for c in h["columns"] if c["name"] == "bin"]
    assert band["bounds"] == [
        [None, 1950],
        [1950, 1970],
        [1970, 1990],
        [1990, 2010],
        [2010, None],
    ]
    # A table derived from it keeps the bounds and leaves as a derived output.
    assert job["outputs"]["top"]["columns"][0]["bounds"] == band["bounds"]


def test_an_aggregate_rounded_at_the_source_never_reaches_the_job_exact(
    local_world: World,
) -> None:
    w = local_world
    cid = w.active_contract()
    code = (
        'r = table("population").group_by("district").agg(\n'
        '    exact=mean("income"), tens=mean("income").round(-1), one=mean("income").round(1)\n'
        ").collect()\n"
        'emit("r", r)\n'
        'emit("seen", str([v for d, e, t, o in r.rows for v in (t, o)]))\n'
    )
    job = w.run(cid, code).json()
    assert job["status"] == "succeeded", job["error"]
    for _, exact, tens, one in job["outputs"]["r"]["rows"]:
        if exact is None:
            continue
        assert tens == float(round(exact / 10)) * 10 or abs(tens - exact) <= 5
        assert tens % 10 == 0 and abs(one - exact) <= 0.05 + 1e-9
        assert round(one * 10) == one * 10
    bad = w.run(cid, 'emit("x", table("population").agg(m=mean("income").round(99)).collect())')
    assert bad.json()["status"] == "rejected" and "round()" in bad.json()["error"]["message"]
