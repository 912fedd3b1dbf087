"""The departments' statistics (考核) from real jobs: two departments, three contracts decided
at controlled times, jobs that succeed, suppress cells and are refused, a version and demands
recorded; every figure checked against what the test did, on each database."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import GRANTS, World
from factories import parquet_bytes
from test_console import _fresh, _sign_in
from typer.testing import CliRunner

from operators.keys import sign as sign_bytes
from sandbox.api.models.statistics import DatasetStatistics, DepartmentStatistics
from sandbox.catalog.synthetic import generate_city
from sandbox.cli.main import app as cli
from sandbox.common import clock
from sandbox.store.models import DatasetVersion, Demand

BEIJING = dt.timezone(dt.timedelta(hours=8))
SI_GRANTS = {"months_paid": ["group_by", "filter", "aggregate"]}
BOTH = {**GRANTS, "social_insurance": SI_GRANTS}
# Small groups of one district: some left out, others suppressed (tests/system/test_http_jobs).
SUPPRESSING = (
    'rows = table("population").filter(col("district") == "北山区")'
    '.group_by("hukou_type", "gender").agg(n=count()).collect()\n'
    'emit("户籍性别", rows)\n'
)
BY_DISTRICT = 'emit("d", table("population").group_by("district").agg(n=count()).collect())'
READS_BOTH = (
    'emit("p", table("population").agg(n=count()).collect())\n'
    'emit("s", table("social_insurance").agg(n=count()).collect())\n'
)
OUT_OF_SCOPE = 'emit("r", table("population").group_by("resident_id").agg(n=count()).collect())'


class Clock:
    """The service's clock, set by the test."""

    def __init__(self, at: dt.datetime) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at.astimezone(dt.UTC)

    def set(self, at: dt.datetime) -> None:
        self.at = at


def next_month_start() -> dt.datetime:
    """The first moment (Beijing) of the month after the real one: the world's data, made
    at the real time, is all older than the month the test controls."""
    here = clock.now().astimezone(BEIJING)
    first = here.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return (first + dt.timedelta(days=32)).replace(day=1)


def month_end(start: dt.datetime) -> dt.datetime:
    return (start + dt.timedelta(days=32)).replace(day=1)


def get(w: World, path: str, who: Any) -> Any:
    r = w.client.get(path, headers=w.h(who))
    assert r.status_code == 200, r.text
    return r


def principal(w: World, name: str, role: str) -> dict[str, Any]:
    r = w.client.post("/v1/principals", json={"name": name, "role": role}, headers=w.h(w.bureau))
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def apply(w: World, op: dict[str, Any], grants: dict[str, Any]) -> str:
    body = {
        "datasets": grants,
        "purpose": "养老服务设施规划",
        "purpose_class": "commercial",
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_to": "2030-01-01T00:00:00Z",
    }
    r = w.client.post("/v1/contracts", json=body, headers=w.h(op))
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def decide(w: World, who: dict[str, Any], cid: str, refuse: bool = False) -> dict[str, Any]:
    if refuse:
        r = w.client.post(
            f"/v1/contracts/{cid}/refuse", json={"reason": "超出所需"}, headers=w.h(who)
        )
    else:
        r = w.client.post(f"/v1/contracts/{cid}/approve", headers=w.h(who))
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def sign(w: World, cid: str, operator: str) -> None:
    assert w.client.post(f"/v1/contracts/{cid}/sign", headers=w.h(w.bureau)).status_code == 200
    op, key = (
        (w.operator, w.operator_key) if operator == "operator" else (w.other_operator, w.other_key)
    )
    canonical = base64.b64decode(get(w, f"/v1/contracts/{cid}", op).json()["canonical"])
    r = w.client.post(
        f"/v1/contracts/{cid}/sign",
        json={"signature": sign_bytes(key, canonical)},
        headers=w.h(op),
    )
    assert r.json()["status"] == "active", r.text


def add_rows(session: Any, *rows: Any) -> None:
    for row in rows:
        session.add(row)


def demand(id_: str, operator: str, status: str, at: dt.datetime, **more: Any) -> Demand:
    stored = clock.stored(at)
    return Demand(
        id=id_,
        operator_id=operator,
        title="需要更多字段",
        description="按街道统计",
        purpose="规划",
        status=status,
        created_at=stored,
        updated_at=stored,
        history=more.pop("history", [{"status": status, "at": clock.text(at), "by": operator}]),
        **more,
    )


def test_statistics_count_what_the_departments_data_went_through(
    local_world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    w = local_world
    start = next_month_start()
    end = month_end(start)
    month = start.strftime("%Y-%m")
    t0 = start + dt.timedelta(days=1, hours=9)
    now = Clock(t0)
    monkeypatch.setattr(clock, "now", now)

    # A second department and its dataset, registered in the month.
    hr = principal(w, "市人力资源和社会保障局", "provider")
    si = generate_city(2000, seed=7)["social_insurance"]
    meta = {
        "name": "social_insurance",
        "title": si.title,
        "provider_id": hr["id"],
        "level": si.level,
        "columns": si.columns,
    }
    r = w.client.post(
        "/v1/datasets",
        headers=w.h(w.bureau),
        files={"file": ("si.parquet", parquet_bytes(si.table))},
        data={"meta": json.dumps(meta, ensure_ascii=False)},
    )
    assert r.status_code == 201, r.text
    # A new version of the population dataset, an hour later (published as the bureau's
    # refreshes will publish it).
    now.set(t0 + dt.timedelta(hours=1))
    with w.ctx.transaction() as s:
        first = s.get(DatasetVersion, ("population", 1))
        assert first is not None
        s.add(
            DatasetVersion(
                dataset="population",
                version=2,
                mode="replace",
                source="upload",
                directory=first.directory,
                partitions=first.partitions,
                columns=first.columns,
                row_count=first.row_count,
                created_at=clock.stored(now()),
            )
        )

    # Contracts, decided at known times after their applications.
    police = w.provider
    now.set(t0 + dt.timedelta(hours=2))
    c1 = apply(w, w.operator, BOTH)
    now.set(t0 + dt.timedelta(hours=3))
    c2 = apply(w, w.other_operator, GRANTS)
    now.set(t0 + dt.timedelta(hours=4))
    decide(w, police, c1)  # 2 h; the other department is still to decide
    decide(w, police, c2)  # 1 h
    c3 = apply(w, w.operator, GRANTS)
    now.set(t0 + dt.timedelta(hours=7))
    assert decide(w, hr, c1)["status"] == "approved"  # 5 h
    assert decide(w, police, c3, refuse=True)["status"] == "refused"  # 3 h
    sign(w, c1, "operator")
    sign(w, c2, "other_operator")

    # Jobs, the next day and at the month's edges.
    now.set(t0 + dt.timedelta(days=1))
    jobs = [
        w.run(c1, SUPPRESSING).json(),
        w.run(c1, READS_BOTH).json(),
        w.run(c2, BY_DISTRICT, operator="other_operator").json(),
    ]
    for job in jobs:
        assert job["status"] == "succeeded", job
    scope = w.run(c2, OUT_OF_SCOPE, operator="other_operator").json()
    compile_error = w.run(c2, "import os", operator="other_operator").json()
    assert (scope["code"], compile_error["code"]) == ("contract_scope", "code_rejected")
    refused = [scope["job_id"], compile_error["job_id"]]
    now.set(end - dt.timedelta(minutes=30))  # 23:30 on the month's last day, Beijing
    jobs.append(w.run(c2, BY_DISTRICT, operator="other_operator").json())
    now.set(end + dt.timedelta(minutes=30))  # 00:30 the next day: the next month
    later = w.run(c1, BY_DISTRICT).json()
    assert jobs[-1]["status"] == later["status"] == "succeeded"

    # Demands: open at the month's end or not.
    op_id = w.operator["id"]
    with w.ctx.transaction() as s:
        add_rows(
            s,
            demand("d-open", op_id, "open", t0, dataset="population"),
            demand("d-routed", op_id, "routed", t0, provider_id=hr["id"]),
            demand("d-refused", op_id, "refused", t0, dataset="population"),
            demand("d-planned", op_id, "planned", t0, dataset="social_insurance"),
            demand(
                "d-next-month", op_id, "open", end + dt.timedelta(hours=1), dataset="population"
            ),
            demand(
                "d-closed-later",
                op_id,
                "refused",
                t0,
                dataset="population",
                history=[
                    {"status": "open", "at": clock.text(t0)},
                    {"status": "refused", "at": clock.text(end + dt.timedelta(hours=2))},
                ],
            ),
        )
    now.set(end + dt.timedelta(days=3))

    # --- what the test did, from the service's own records of each job --------------------
    month_jobs = [get(w, f"/v1/jobs/{j['id']}", w.regulator).json() for j in jobs]
    month_jobs += [get(w, f"/v1/jobs/{i}", w.regulator).json() for i in refused]
    rows = Counter[str]()
    rules: dict[str, Counter[str]] = {"population": Counter(), "social_insurance": Counter()}
    for job in month_jobs:
        rows.update((job["usage"] or {}).get("rows_by_dataset", {}))
        for release in (job["disclosure"] or {}).get("releases", []):
            for name in [release["dataset"], *release.get("joined", [])]:
                rules[name].update(cell["rule"] for cell in release["suppressed"])
    assert sum(rules["population"].values()) > 0, "the test needs suppressed cells"
    bill = get(w, f"/v1/bills?period={month}", w.bureau).json()
    assert {c["job_id"] for c in bill["charges"]} == {j["id"] for j in jobs}

    report = get(w, f"/v1/statistics/datasets?month={month}", w.regulator).json()
    DatasetStatistics.model_validate(report)
    assert report["month"] == month and report["as_of"] == clock.text(end)
    by_name = {d["dataset"]: d for d in report["datasets"]}
    assert set(by_name) == {"population", "social_insurance"}
    pop, ins = by_name["population"], by_name["social_insurance"]
    assert (pop["department"], ins["department"]) == ("市公安局", "市人力资源和社会保障局")
    assert ins["title"] == "社会保险参保信息库"

    # Versions: one each in the month; days counted to the month's end.
    assert pop["versions_published"] == ins["versions_published"] == 1
    assert pop["days_since_last_version"] == (end - (t0 + dt.timedelta(hours=1))).days
    assert ins["days_since_last_version"] == (end - t0).days

    # Jobs, operators, rows, refusals.
    assert pop["jobs"] == 6 and pop["jobs_succeeded"] == 4 and pop["operators"] == 2
    assert ins["jobs"] == 1 and ins["jobs_succeeded"] == 1 and ins["operators"] == 1
    assert pop["rows_scanned"] == rows["population"] > 0
    assert ins["rows_scanned"] == rows["social_insurance"] > 0
    assert pop["refusals"] == 2 and ins["refusals"] == 0
    assert pop["refusals_by_code"] == {
        "disclosure_refused": 0,
        "plan_invalid": 0,
        "code_rejected": 1,
        "contract_scope": 1,
    }

    # Suppressed cells by rule, as the disclosure reports say.
    for d, name in ((pop, "population"), (ins, "social_insurance")):
        assert {k: n for k, n in d["suppressed_by_rule"].items() if n} == dict(rules[name])
        assert d["suppressed_cells"] == sum(rules[name].values())

    # Fees: the datasets' add up to the month's charges; the job that read both datasets
    # pays each its rows and shares the rest by rows scanned.
    fees = Decimal(pop["fees"]) + Decimal(ins["fees"])
    assert fees == Decimal(bill["total"]) == Decimal(report["charges"]) > 0
    assert report["unattributed_fees"] == "0.00"
    both = next(c for c in bill["charges"] if c["job_id"] == jobs[1]["id"])
    direct = {ln["dataset"]: Decimal(ln["amount"]) for ln in both["lines"] if ln.get("dataset")}
    shared = sum(Decimal(ln["amount"]) for ln in both["lines"] if not ln.get("dataset"))
    usage = month_jobs[1]["usage"]["rows_by_dataset"]
    si_share = shared * usage["social_insurance"] / sum(usage.values())
    assert abs(Decimal(ins["fees"]) - direct.get("social_insurance", 0) - si_share) <= Decimal(
        "0.01"
    )

    # Approvals: from application to each department's decision.
    assert (pop["approval_decisions"], pop["approval_median_hours"]) == (3, 2.0)
    assert pop["approval_max_hours"] == 3.0
    assert (ins["approval_decisions"], ins["approval_median_hours"]) == (1, 5.0)
    assert ins["approval_max_hours"] == 5.0

    # Demands open at the month's end.
    assert (pop["open_demands"], ins["open_demands"]) == (2, 1)

    # --- departments: the same rolled up ---------------------------------------------------
    departments = get(w, f"/v1/statistics/departments?month={month}", w.bureau).json()
    DepartmentStatistics.model_validate(departments)
    rows_by_id = {d["department_id"]: d for d in departments["departments"]}
    assert set(rows_by_id) == {police["id"], hr["id"]}
    for dept, dataset in ((rows_by_id[police["id"]], pop), (rows_by_id[hr["id"]], ins)):
        assert dept["datasets"] == 1
        same = {k: v for k, v in dataset.items() if k not in ("dataset", "title")}
        assert {k: dept[k] for k in same} | {"open_demands": 0} == same | {"open_demands": 0}
    assert rows_by_id[hr["id"]]["open_demands"] == 2  # routed to it, and naming its dataset
    assert rows_by_id[police["id"]]["open_demands"] == 2

    # --- who sees what -----------------------------------------------------------------------
    own = get(w, f"/v1/statistics/datasets?month={month}", police).json()
    assert [d["dataset"] for d in own["datasets"]] == ["population"]
    assert own["datasets"][0] == pop and "charges" not in own
    own_row = get(w, f"/v1/statistics/departments?month={month}", hr).json()
    assert [d["department_id"] for d in own_row["departments"]] == [hr["id"]]
    for who in (w.operator, w.other_operator):
        for kind in ("datasets", "departments"):
            r = w.client.get(f"/v1/statistics/{kind}?month={month}", headers=w.h(who))
            assert r.status_code == 403 and r.json()["code"] == "forbidden"
            assert "departments, the bureau and the regulator" in r.json()["error"]

    # --- the CSV is the JSON, Chinese names intact ------------------------------------------
    r = get(w, f"/v1/statistics/datasets?month={month}&format=csv", w.regulator)
    assert r.headers["content-type"].startswith("text/csv")
    assert r.content.startswith("\ufeff".encode())
    assert f"statistics-datasets-{month}.csv" in r.headers["content-disposition"]
    assert_csv_is_json(r.content.decode("utf-8-sig"), report["datasets"], month)
    assert "社会保险参保信息库" in r.content.decode("utf-8-sig")
    assert "市人力资源和社会保障局" in r.content.decode("utf-8-sig")
    r = get(w, f"/v1/statistics/departments?month={month}&format=csv", w.regulator)
    assert_csv_is_json(r.content.decode("utf-8-sig"), departments["departments"], month)

    # The next month has the job after midnight; the CLI prints and writes the same table.
    following = get(w, f"/v1/statistics/datasets?month={end:%Y-%m}", w.regulator).json()
    assert {d["dataset"]: d["jobs"] for d in following["datasets"]} == {
        "population": 1,
        "social_insurance": 0,
    }
    out = tmp_path / "s.csv"
    env = {"SANDBOX_DATABASE_URL": w.ctx.settings.database_url, "COLUMNS": "300"}
    result = CliRunner().invoke(
        cli,
        [
            "statistics",
            "datasets",
            "--month",
            month,
            "--csv",
            str(out),
            "--data-dir",
            str(w.ctx.settings.data_dir),
        ],
        env=env,
    )
    assert result.exit_code == 0, result.output
    assert "social_insurance" in result.output and report["charges"] in result.output
    assert_csv_is_json(out.read_text(encoding="utf-8-sig"), report["datasets"], month)


def assert_csv_is_json(text: str, rows: list[dict[str, Any]], month: str) -> None:
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert len(parsed) == len(rows)
    for line, row in zip(parsed, rows):
        assert line["month"] == month
        for key, value in row.items():
            if isinstance(value, dict):
                prefix = "refused_" if key == "refusals_by_code" else "suppressed_"
                for inner, n in value.items():
                    assert line[prefix + inner] == str(n), (key, inner)
            elif value is None:
                assert line[key] == "", key
            else:
                assert line[key] == str(value), (key, line[key], value)


def test_an_idle_month_has_zeros_and_a_malformed_month_is_refused(local_world: World) -> None:
    w = local_world
    this_month = clock.now().astimezone(BEIJING).strftime("%Y-%m")
    report = get(w, "/v1/statistics/datasets", w.bureau).json()
    assert report["month"] == this_month
    (pop,) = report["datasets"]
    assert pop["versions_published"] == 1 and pop["days_since_last_version"] == 0
    assert (pop["jobs"], pop["rows_scanned"], pop["fees"], pop["refusals"]) == (0, 0, "0.00", 0)
    assert (pop["approval_decisions"], pop["approval_median_hours"]) == (0, None)
    assert set(pop["suppressed_by_rule"].values()) == {0}
    # Before anything existed: no rows, not an error.
    for kind in ("datasets", "departments"):
        early = get(w, f"/v1/statistics/{kind}?month=2020-01", w.regulator).json()
        assert early[kind] == [] and early["charges"] == "0.00"
        csv_text = get(w, f"/v1/statistics/{kind}?month=2020-01&format=csv", w.regulator).text
        assert len(csv_text.lstrip("\ufeff").splitlines()) == 1  # the header alone
    for bad in ("2026-13", "2026-1", "202611", "next"):
        r = w.client.get(f"/v1/statistics/datasets?month={bad}", headers=w.h(w.provider))
        assert r.status_code == 400, r.text
        assert r.json()["error"] == "month must be a month written YYYY-MM, e.g. 2026-11"


def test_the_console_shows_each_role_its_statistics(local_world: World) -> None:
    """The console's pages answer as the API does: a department its own, the bureau and the
    regulator everyone's, an operator refused; a month picked, a CSV equal to the API's."""
    w = local_world
    cid = w.active_contract()
    assert w.run(cid, BY_DISTRICT).json()["status"] == "succeeded"
    month = clock.now().astimezone(BEIJING).strftime("%Y-%m")
    other = principal(w, "市民政局", "provider")
    pages = (
        (w.provider, "/statistics"),
        (w.bureau, "/admin/statistics"),
        (w.regulator, "/oversight/statistics"),
    )
    for who, place in pages:
        token = who if isinstance(who, str) else who["token"]
        with _fresh(w) as browser:
            _sign_in(browser, token)
            assert f'href="{place}"' in browser.get("/catalog").text  # in the menu
            page = browser.get(place)
            assert page.status_code == 200, page.text
            assert 'id="ds-population"' in page.text and "人口基础信息库" in page.text
            assert f'value="{month}"' in page.text
            row = page.text.split('id="ds-population"')[1].split("</tr>")[0]
            assert '<td class="f-jobs">1 ' in row
            shown_other = f'id="dept-{other["id"]}"' in page.text
            assert shown_other == (place != "/statistics")
            csv_file = browser.get(f"{place}/datasets.csv?month={month}")
            assert csv_file.status_code == 200
            api = get(w, f"/v1/statistics/datasets?month={month}&format=csv", who).content
            assert csv_file.content == api
            english = browser.get(f"{place}?month=2020-01&lang=en")
            assert "By department" in english.text and "By dataset" in english.text
            assert "No dataset to count this month." in english.text
            bad = browser.get(f"{place}?month=2026-13")
            assert bad.status_code == 400 and "YYYY-MM" in bad.text
    with _fresh(w) as browser:
        _sign_in(browser, w.operator["token"])
        for _, place in pages:
            assert browser.get(place).status_code == 403
            assert browser.get(f"{place}/datasets.csv").status_code == 403
    with _fresh(w) as browser:
        _sign_in(browser, w.provider["token"])
        assert browser.get("/admin/statistics").status_code == 403
        assert browser.get("/oversight/statistics").status_code == 403
