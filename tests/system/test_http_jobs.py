"""Jobs over HTTP: compile refusals, disclosure control, output downloads, idempotency,
signed submissions; a few end to end on the real local Ray."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import GRANTS, World

from operators.keys import generate_private_key, sign
from operators.submission import now_text, sign_submission, submission_bytes

COUNT_CODE = 'emit("n", table("population").agg(n=count()).collect())'
SMALL_GROUPS = (
    'rows = table("population").filter(col("district") == params["区"])'
    '.group_by("hukou_type", "gender").agg(n=count()).collect()\n'
    'emit("户籍性别", rows)\n'
)
THRESHOLD_L3 = 10


def true_counts(city: Any, district: str) -> Counter[tuple[str, str]]:
    t = city["population"].table
    return Counter(
        (h, g)
        for d, h, g in zip(
            t["district"].to_pylist(), t["hukou_type"].to_pylist(), t["gender"].to_pylist()
        )
        if d == district
    )


def spend(w: World, cid: str) -> dict[str, int]:
    return w.client.get(f"/v1/contracts/{cid}", headers=w.h(w.operator)).json()["spend"]


def ledger_types(w: World) -> list[str]:
    entries = w.client.get("/v1/ledger/entries", headers=w.h(w.regulator)).json()["entries"]
    return [e["event"]["type"] for e in entries]


def download(w: World, job_id: str, name: str, fmt: str) -> Any:
    r = w.client.get(f"/v1/jobs/{job_id}/outputs/{name}?format={fmt}", headers=w.h(w.operator))
    assert r.status_code == 200, r.text
    return r


# --- compile refusals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "code,line",
    [
        ("import os\n", 1),
        ("x = 1\nfrom os import path\n", 2),
        ('n = 1\n\nf = open("/etc/passwd")\n', 3),
        ("t = table('population')\nk = t.__class__\n", 2),
        ("x = ().__class__.__bases__\n", 1),
        ('x = getattr(table("population"), "__dict__")\n', 1),
        ('eval("1 + 1")\n', 1),
        ("def f(:\n", 1),
    ],
)
def test_code_refused_at_submission_names_the_line(
    local_world: World, code: str, line: int
) -> None:
    w = local_world
    cid = w.active_contract()
    before = spend(w, cid)
    r = w.client.post(
        "/v1/jobs?wait=true", json={"contract_id": cid, "code": code}, headers=w.h(w.operator)
    )
    assert r.status_code == 400, r.text
    err = r.json()
    assert err["code"] == "code_rejected"
    assert err["line"] == line and f"line {line}" in err["error"]
    job = w.client.get(f"/v1/jobs/{err['job_id']}", headers=w.h(w.operator)).json()
    assert job["status"] == "rejected"
    assert job["error"]["code"] == "code_rejected" and job["error"]["line"] == line
    assert spend(w, cid) == before
    # A quote of the same code is refused the same way, without recording a job.
    q = w.client.post(
        "/v1/quotes", json={"contract_id": cid, "code": code}, headers=w.h(w.operator)
    )
    assert q.status_code == 400 and q.json()["code"] == "code_rejected"


# --- disclosure -----------------------------------------------------------------------------


def test_identifier_group_by_is_refused_even_when_granted(local_world: World) -> None:
    w = local_world
    grants = {
        "population": {
            **GRANTS["population"],
            "name": ["group_by", "join"],
            "resident_id": ["group_by"],
        }
    }
    cid = w.active_contract(grants)
    for column in ("name", "resident_id"):
        r = w.run(
            cid, f'emit("t", table("population").group_by("{column}").agg(n=count()).collect())'
        )
        job = r.json()
        assert r.status_code in (201, 403), r.text
        if r.status_code == 403:
            assert job["code"] == "disclosure_refused"
            job = w.client.get(f"/v1/jobs/{job['job_id']}", headers=w.h(w.operator)).json()
        assert job["status"] == "rejected"
        assert job["error"]["code"] == "disclosure_refused"
        assert f"'{column}'" in job["error"]["message"] and "identifier" in job["error"]["message"]
        assert job["outputs"] == {}
        assert job["charge"] is None or job["charge"]["amount"] == "0.00"
    assert spend(w, cid)["spent_fen"] == 0


def test_small_groups_are_suppressed_and_reported(local_world: World, city: Any) -> None:
    w = local_world
    cid = w.active_contract()
    job = w.run(cid, SMALL_GROUPS, params={"区": "北山区"}).json()
    assert job["status"] == "succeeded", job
    out = job["outputs"]["户籍性别"]
    assert [c["name"] for c in out["columns"]] == ["hukou_type", "gender", "n"]
    truth = true_counts(city, "北山区")
    assert any(n < THRESHOLD_L3 for n in truth.values()), "the data must have a small group"
    released = {(h, g): n for h, g, n in out["rows"]}
    # Groups below the threshold are left out, key and all: the rest are shown.
    assert set(released) == {k for k, n in truth.items() if n >= THRESHOLD_L3}
    suppressed = {tuple(cell) for cell in out["suppressed"]}
    (release,) = job["disclosure"]["releases"]
    assert "left_out" not in release  # how many: for the regulator only
    rules = {(c["row"], c["column"]): c for c in release["suppressed"]}
    for i, (h, g, n) in enumerate(out["rows"]):
        if (i, "n") in suppressed:
            # Secondary suppression: hidden so the small cell cannot be subtracted out.
            assert n is None and rules[(i, "n")]["rule"] == "secondary"
        else:
            assert n == truth[(h, g)]
    assert release["dataset"] == "population" and release["keys"] == ["hukou_type", "gender"]
    assert [(s["row"], s["column"]) for s in release["suppressed"]] == sorted(suppressed)
    assert all("contributors" not in cell for cell in release["suppressed"])
    # No hukou type and no gender has exactly one hidden cell (left out, or suppressed).
    hidden = [k for k in truth if k not in released] + [
        tuple(out["rows"][i][:2]) for i, _ in suppressed
    ]
    for k in (0, 1):
        lines = Counter(key[k] for key in hidden)
        assert 1 not in lines.values()


def test_params_reach_the_code(local_world: World, city: Any) -> None:
    w = local_world
    cid = w.active_contract()
    for district in ("城关区", "湖滨区"):
        job = w.run(cid, SMALL_GROUPS, params={"区": district}).json()
        total = sum(n for _, _, n in job["outputs"]["户籍性别"]["rows"])
        assert total == sum(true_counts(city, district).values())


# --- downloads ------------------------------------------------------------------------------


def test_outputs_download_as_json_csv_and_parquet(local_world: World, city: Any) -> None:
    w = local_world
    cid = w.active_contract()
    code = SMALL_GROUPS + 'emit("占比", 0.25)\nemit("说明", "北山区户籍结构")\n'
    job = w.run(cid, code, params={"区": "北山区"}).json()
    assert job["status"] == "succeeded", job
    out = job["outputs"]["户籍性别"]
    assert download(w, job["id"], "户籍性别", "json").json() == out
    assert (
        w.client.get(f"/v1/jobs/{job['id']}/outputs/户籍性别", headers=w.h(w.operator)).json()
        == out
    )

    r = download(w, job["id"], "户籍性别", "csv")
    assert r.headers["content-type"].startswith("text/csv")
    assert "charset=utf-8" in r.headers["content-type"]
    assert r.headers["content-disposition"] == (
        "attachment; filename*=UTF-8''%E6%88%B7%E7%B1%8D%E6%80%A7%E5%88%AB.csv"
    )
    text = r.content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["hukou_type", "gender", "n"]
    assert rows[1:] == [[h, g, "" if n is None else str(n)] for h, g, n in out["rows"]]
    assert "本地农村" in text and "女" in text

    r = download(w, job["id"], "户籍性别", "parquet")
    table = pq.read_table(io.BytesIO(r.content))
    assert table.schema.names == ["hukou_type", "gender", "n"]
    assert table.schema.field("n").type == pa.int64()
    assert table.schema.field("hukou_type").type == pa.string()
    assert [list(row.values()) for row in table.to_pylist()] == out["rows"]
    assert table.column("n").null_count == len(out["suppressed"]) > 0

    assert download(w, job["id"], "占比", "json").json() == {"kind": "scalar", "value": 0.25}
    assert download(w, job["id"], "说明", "csv").content.decode("utf-8-sig").splitlines() == [
        "value",
        "北山区户籍结构",
    ]
    scalar = pq.read_table(io.BytesIO(download(w, job["id"], "占比", "parquet").content))
    assert scalar.to_pylist() == [{"value": 0.25}]


def test_parquet_keeps_declared_types_when_every_cell_is_suppressed(local_world: World) -> None:
    """Residents born in one month, by district, leaves every cell below the threshold: the
    Parquet download still carries the declared column types."""
    w = local_world
    cid = w.active_contract()
    job = w.run(
        cid,
        'emit("t", table("population").filter(col("birth_date") >= "2024-12-01")'
        '.group_by("district").agg(n=count(), m=mean("income")).collect())',
    ).json()
    assert job["status"] == "succeeded", job
    out = job["outputs"]["t"]
    assert all(n is None for _, n, _ in out["rows"])
    table = pq.read_table(io.BytesIO(download(w, job["id"], "t", "parquet").content))
    assert [str(f.type) for f in table.schema] == [c["type"] for c in out["columns"]]
    assert table.num_rows == len(out["rows"])


# --- idempotency and signatures ------------------------------------------------------------


def test_idempotency_key_returns_the_same_job_and_charges_once(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    body = {"contract_id": cid, "code": COUNT_CODE, "idempotency_key": "报表-2026-11"}
    first = w.client.post("/v1/jobs?wait=true", json=body, headers=w.h(w.operator)).json()
    assert first["status"] == "succeeded"
    submitted = ledger_types(w).count("job.submitted")
    after_first = spend(w, cid)
    second = w.client.post("/v1/jobs?wait=true", json=body, headers=w.h(w.operator))
    assert second.status_code in (200, 201)
    assert second.json()["id"] == first["id"]
    assert second.json()["charge"] == first["charge"]
    assert spend(w, cid) == after_first
    assert after_first["spent_fen"] == round(float(first["charge"]["amount"]) * 100)
    assert ledger_types(w).count("job.submitted") == submitted
    # The same key for different work is a conflict, not a silent replay.
    r = w.client.post("/v1/jobs", json={**body, "code": COUNT_CODE + "\n"}, headers=w.h(w.operator))
    assert r.status_code == 409 and r.json()["code"] == "conflict"
    # Another operator may use the same key for its own job.
    other = w.active_contract(operator="other_operator")
    r = w.client.post(
        "/v1/jobs?wait=true", headers=w.h(w.other_operator), json={**body, "contract_id": other}
    )
    assert r.status_code == 201 and r.json()["id"] != first["id"]


def test_signed_submission_is_accepted_and_bad_signature_refused(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    params = {"区": "城关区", "年份": 2026}
    at = now_text()
    good = sign(w.operator_key, submission_bytes(cid, SMALL_GROUPS, params, "签名-1", at))
    body = {
        "contract_id": cid,
        "code": SMALL_GROUPS,
        "params": params,
        "idempotency_key": "签名-1",
        "signature": good,
        "signed_at": at,
    }
    r = w.client.post("/v1/jobs?wait=true", json=body, headers=w.h(w.operator))
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] == "succeeded"
    seen = w.client.get(f"/v1/jobs/{job['id']}", headers=w.h(w.regulator)).json()
    assert seen["signature"] == good and seen["signed_at"] == at

    submitted = ledger_types(w).count("job.submitted")
    earlier = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)).isoformat()
    bad = [
        sign(generate_private_key(), submission_bytes(cid, SMALL_GROUPS, params, "签名-2", at)),
        sign(w.operator_key, submission_bytes(cid, SMALL_GROUPS, {"区": "湖滨区"}, "签名-2", at)),
        sign(w.operator_key, submission_bytes(cid, COUNT_CODE, params, "签名-2", at)),
        sign(w.operator_key, submission_bytes(cid, SMALL_GROUPS, params, "签名-2", earlier)),
        good,  # signed for another idempotency key
        "bm90IGEgc2lnbmF0dXJl",
    ]
    for signature in bad:
        r = w.client.post(
            "/v1/jobs?wait=true",
            headers=w.h(w.operator),
            json={**body, "idempotency_key": "签名-2", "signature": signature},
        )
        assert r.status_code == 400, r.text
        assert r.json()["code"] == "signature_invalid"
    assert ledger_types(w).count("job.submitted") == submitted
    # Signed by the right key, but the other operator's key is registered for the other.
    other = w.active_contract(operator="other_operator")
    forged = sign_submission(w.operator_key, other, COUNT_CODE)
    r = w.client.post(
        "/v1/jobs",
        headers=w.h(w.other_operator),
        json={"contract_id": other, "code": COUNT_CODE, **forged},
    )
    assert r.status_code == 400 and r.json()["code"] == "signature_invalid"


def test_a_signature_is_only_accepted_close_to_its_signing_time(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    stale = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=20)).isoformat()
    body = {
        "contract_id": cid,
        "code": COUNT_CODE,
        **sign_submission(w.operator_key, cid, COUNT_CODE, signed_at=stale),
    }
    r = w.client.post("/v1/jobs", headers=w.h(w.operator), json=body)
    assert r.status_code == 400 and r.json()["code"] == "submission_invalid"
    assert "sign it again now" in r.json()["error"]
    missing = {
        k: v
        for k, v in sign_submission(w.operator_key, cid, COUNT_CODE).items()
        if k != "signed_at"
    }
    r = w.client.post(
        "/v1/jobs",
        headers=w.h(w.operator),
        json={"contract_id": cid, "code": COUNT_CODE, **missing},
    )
    assert r.status_code == 400 and "signed_at" in r.json()["error"]
    r = w.client.post(
        "/v1/jobs",
        headers=w.h(w.operator),
        json={
            "contract_id": cid,
            "code": COUNT_CODE,
            **sign_submission(w.operator_key, cid, COUNT_CODE, signed_at="yesterday"),
        },
    )
    assert r.status_code == 400 and "ISO 8601" in r.json()["error"]


def test_job_without_wait_finishes_later(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    r = w.client.post(
        "/v1/jobs", json={"contract_id": cid, "code": COUNT_CODE}, headers=w.h(w.operator)
    )
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["status"] in ("queued", "running", "succeeded")
    assert job["quote"]["amount"]
    job = w.wait_for_job(job["id"], timeout=20)
    assert job["status"] == "succeeded"
    assert job["outputs"]["n"]["rows"] == [[20_000]]
    # Times are UTC and say so, so no client reads them as its local time.
    created, finished = (
        dt.datetime.fromisoformat(job[k].replace("Z", "+00:00"))
        for k in ("created_at", "finished_at")
    )
    assert job["created_at"].endswith("Z") and job["finished_at"].endswith("Z")
    assert created <= finished <= dt.datetime.now(dt.UTC)
    assert dt.datetime.now(dt.UTC) - created < dt.timedelta(minutes=1)
    types = ledger_types(w)
    assert types[-3:] == ["job.started", "job.succeeded", "charge.settled"]


def test_failing_code_fails_with_line_and_releases_reservation(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    job = w.run(cid, 'x = table("population").agg(n=count()).collect()\n\ny = 1 / 0\n').json()
    assert job["status"] == "failed"
    assert job["error"]["line"] == 3 and "ZeroDivisionError" in job["error"]["message"]
    assert job["outputs"] == {}
    s = spend(w, cid)
    assert s["reserved_fen"] == 0
    assert s["spent_fen"] == round(float(job["charge"]["amount"]) * 100) > 0


# --- on the real local Ray ------------------------------------------------------------------


def test_ray_job_releases_suppressed_table_and_downloads(world: World, city: Any) -> None:
    w = world
    cid = w.active_contract()
    job = w.run(cid, SMALL_GROUPS, params={"区": "北山区"}).json()
    assert job["status"] == "succeeded", job
    out = job["outputs"]["户籍性别"]
    truth = true_counts(city, "北山区")
    hidden = {i for i, _ in out["suppressed"]}
    for i, (h, g, n) in enumerate(out["rows"]):
        assert n == (None if i in hidden else truth[(h, g)])
        assert truth[(h, g)] >= THRESHOLD_L3 or i in hidden
    assert out["suppressed"]
    assert job["usage"]["rows_scanned"] == 20_000
    table = pq.read_table(io.BytesIO(download(w, job["id"], "户籍性别", "parquet").content))
    assert [list(r.values()) for r in table.to_pylist()] == out["rows"]
    text = download(w, job["id"], "户籍性别", "csv").content.decode("utf-8-sig")
    assert "本地农村" in text
    regulator = w.client.get(f"/v1/jobs/{job['id']}", headers=w.h(w.regulator)).json()
    (release,) = regulator["disclosure"]["releases"]
    assert len(release["suppressed"]) == len(out["suppressed"])
    for cell in release["suppressed"]:
        h, g, _ = out["rows"][cell["row"]]
        if cell["rule"] == "min_contributors":
            assert cell["contributors"] == truth[(h, g)] < cell["threshold"]
        else:
            assert cell["rule"] == "secondary" and truth[(h, g)] >= THRESHOLD_L3


def test_ray_job_failure_and_idempotent_retry(world: World) -> None:
    w = world
    cid = w.active_contract()
    failed = w.run(cid, 'n = table("population").agg(n=count()).collect()\nz = 1 / 0\n').json()
    assert failed["status"] == "failed" and failed["error"]["line"] == 2
    body = {"contract_id": cid, "code": COUNT_CODE, "idempotency_key": "ray-1"}
    r = w.client.post("/v1/jobs", json=body, headers=w.h(w.operator))
    assert r.status_code == 201
    again = w.client.post("/v1/jobs?wait=true", json=body, headers=w.h(w.operator)).json()
    assert again["id"] == r.json()["id"]
    assert again["status"] == "succeeded" and again["outputs"]["n"]["rows"] == [[20_000]]
    s = spend(w, cid)
    assert s["reserved_fen"] == 0
    charged = [failed["charge"]["amount"], again["charge"]["amount"]]
    assert s["spent_fen"] == sum(round(float(a) * 100) for a in charged)


def test_a_quantile_of_income_is_coarsened_and_the_report_says_so(local_world: World) -> None:
    w = local_world
    cid = w.active_contract()
    job = w.run(
        cid,
        'emit("q", table("population").group_by("district")'
        '.agg(median=quantile("income", 0.5)).collect())',
    ).json()
    assert job["status"] == "succeeded", job
    medians = [row[1] for row in job["outputs"]["q"]["rows"] if row[1] is not None]
    assert medians and all(float(f"{m:.2g}") == m for m in medians)
    (release,) = job["disclosure"]["releases"]
    assert release["coarsened"] and release["coarsened"][0]["column"] == "median"
    assert release["coarsened"][0]["rule"] == "significant_figures"
