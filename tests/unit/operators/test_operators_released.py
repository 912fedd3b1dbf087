"""Released tables in notebooks: Arrow and pandas conversions, the HTML view with suppressed
cells marked and the disclosure report beside them, and errors typed by the service's code."""

from __future__ import annotations

import html.parser
from typing import Any

import httpx
import pandas as pd
import pyarrow as pa
import pytest

from operators.client import (
    ERRORS_BY_CODE,
    CodeRejected,
    ContractScope,
    Forbidden,
    Job,
    JobCodeError,
    OutputUnavailable,
    PlanInvalid,
    Progress,
    SandboxAPIError,
    SandboxClient,
    api_error,
)
from operators.released import MARK, ReleasedTable

# As the service answers GET /v1/jobs/{id} for an operator: a release with two cells below the
# threshold and their secondary suppressions, a table the job derived from it, and a value.
BODY = {
    "kind": "table",
    "columns": [
        {"name": "district", "type": "string"},
        {"name": "n", "type": "int64"},
        {"name": "avg_income", "type": "double"},
    ],
    "rows": [["北山区", 75, 112.5], ["南湖区", None, None], ["<城关区>", 445, None]],
    "suppressed": [[1, "n"], [1, "avg_income"], [2, "avg_income"]],
}
DERIVED = {**BODY, "rows": BODY["rows"][:1], "suppressed": [], "derived": True}
DISCLOSURE = {
    "releases": [
        {
            "index": 0,
            "dataset": "population",
            "keys": ["district"],
            "rows": 3,
            "cells": 6,
            "suppressed": [
                {"row": 1, "column": "n", "rule": "min_contributors"},
                {"row": 1, "column": "avg_income", "rule": "min_contributors"},
                {"row": 2, "column": "avg_income", "rule": "dominance"},
            ],
        }
    ],
    "derived": ["top"],
}


def _job(**overrides: Any) -> Job:
    body = {
        "id": "j-1",
        "status": "succeeded",
        "contract_id": "c-1",
        "outputs": {"by_district": BODY, "top": DERIVED, "total": {"kind": "scalar", "value": 3}},
        "disclosure": DISCLOSURE,
        "charge": {"amount": "1.20", "currency": "CNY"},
        **overrides,
    }
    return Job.from_json(body, SandboxClient("http://127.0.0.1:9"))


class Cells(html.parser.HTMLParser):
    """The <td> cells of an HTML fragment, with their attributes and text."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "td":
            self._open = dict(attrs)
            self.cells.append((self._open, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._open = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._open is not None:
            attrs, text = self.cells[-1]
            self.cells[-1] = (attrs, text + data)


def _cells(markup: str) -> Cells:
    parser = Cells()
    parser.feed(markup)
    return parser


def test_a_table_output_converts_to_arrow_and_pandas_with_nulls_where_suppressed() -> None:
    table = _job().table("by_district")
    arrow = table.to_arrow()
    assert arrow.schema.types == [pa.string(), pa.int64(), pa.float64()]
    assert arrow.column("n").to_pylist() == [75, None, 445]
    frame = table.to_pandas()
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["district", "n", "avg_income"]
    assert str(frame["n"].dtype) == "Int64", "a suppressed count keeps the column integral"
    assert frame["n"].isna().tolist() == [False, True, False]
    assert frame["avg_income"].isna().tolist() == [False, True, True]
    assert frame["district"].tolist() == ["北山区", "南湖区", "<城关区>"]


def test_each_suppressed_cell_names_the_rule_that_suppressed_it() -> None:
    table = _job().table("by_district")
    assert table.report is DISCLOSURE["releases"][0]
    assert [(c.row, c.column, c.rule) for c in table.suppressed] == [
        (1, "n", "min_contributors"),
        (1, "avg_income", "min_contributors"),
        (2, "avg_income", "dominance"),
    ]
    assert table.summary() == {
        "rows": 3,
        "cells_suppressed": 3,
        "suppressed_by_rule": {"dominance": 1, "min_contributors": 2},
        "dataset": "population",
        "keys": ["district"],
        "cells": 6,
    }


def test_the_html_marks_suppressed_cells_and_shows_the_report_beside_them() -> None:
    markup = _job().table("by_district")._repr_html_()
    parsed = _cells(markup)
    marked = [
        (attrs.get("data-rule"), attrs.get("title")) for attrs, text in parsed.cells if text == MARK
    ]
    assert marked == [
        ("min_contributors", "min_contributors: fewer contributors than the threshold"),
        ("min_contributors", "min_contributors: fewer contributors than the threshold"),
        ("dominance", "dominance: dominated by its largest contributions"),
    ]
    shown = [text for attrs, text in parsed.cells if text != MARK]
    assert {"北山区", "75", "112.5", "445"} <= set(shown)
    text = "".join(parsed.text)
    assert "disclosure report" in text and "cells suppressed" in text and "3 of 6" in text
    assert "groups left out" in text
    # Labels come from data and job code: escaped, never markup.
    assert "<城关区>" in text and "&lt;城关区&gt;" in markup and "<城关区>" not in markup


def test_a_derived_table_says_so_and_a_value_is_not_a_table() -> None:
    job = _job()
    top = job.table("top")
    assert top.derived and top.report is None
    assert "computed by the job from released values" in "".join(_cells(top._repr_html_()).text)
    assert set(job.tables()) == {"by_district", "top"}
    with pytest.raises(OutputUnavailable, match=r"job.output\('total'\)"):
        job.table("total")
    assert job.output("total") == 3
    job_html = job._repr_html_()
    assert "succeeded" in job_html and "1.20 CNY" in job_html and job_html.count(MARK) == 3


def test_total_rows_show_all_in_the_keys_they_add_up_over() -> None:
    body = {
        **BODY,
        "rows": [*BODY["rows"], [None, 520, 900.0]],
        "margins": [3],
    }
    disclosure = {"releases": [{**DISCLOSURE["releases"][0], "rows": 4}]}
    table = ReleasedTable.of("t", body, disclosure)
    assert table.margins == [3] and table.summary()["total_rows"] == 1
    markup = table._repr_html_()
    assert "<th>total</th>" in markup and '<td class="sbx-total"><i>all</i></td>' in markup
    assert table.to_pandas()["district"].isna().tolist() == [False, False, False, True]


def test_released_table_reads_back_its_own_json() -> None:
    table = ReleasedTable.of("t", BODY, None)
    assert table.report is None and [c.rule for c in table.suppressed] == [None, None, None]
    assert "suppressed by the disclosure rules" in table._repr_html_()


def _response(status: int, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(status, json=body, request=httpx.Request("POST", "http://x/v1/jobs"))


def test_service_errors_are_raised_as_the_class_of_their_code() -> None:
    error = api_error(
        _response(
            400,
            {
                "ok": False,
                "status": 400,
                "code": "code_rejected",
                "error": "line 2: imports are not available",
                "job_id": "j-9",
                "line": 2,
            },
        )
    )
    assert type(error) is CodeRejected and isinstance(error, SandboxAPIError)
    assert (error.status, error.code, error.line, error.job_id) == (400, "code_rejected", 2, "j-9")
    assert str(error) == "HTTP 400 code_rejected: line 2: imports are not available"
    scope = api_error(
        _response(403, {"ok": False, "status": 403, "code": "contract_scope", "error": "no"})
    )
    assert isinstance(scope, ContractScope) and isinstance(scope, Forbidden)
    assert scope.line is None
    unknown = api_error(
        _response(409, {"ok": False, "status": 409, "code": "something_new", "error": "x"})
    )
    assert type(unknown) is SandboxAPIError and unknown.code == "something_new"
    assert ERRORS_BY_CODE["plan_invalid"] is PlanInvalid


def test_a_job_that_did_not_succeed_raises_its_error_with_the_line() -> None:
    failed = _job(
        status="failed",
        outputs={},
        error={"code": "job_code_error", "message": "ZeroDivisionError", "line": 7},
    )
    with pytest.raises(JobCodeError) as raised:
        failed.raise_for_error()
    assert (raised.value.status, raised.value.line, raised.value.job_id) == (None, 7, "j-1")
    assert str(raised.value) == "job j-1 job_code_error: ZeroDivisionError (line 7)"
    rejected = _job(
        status="rejected", error={"code": "plan_invalid", "message": "no column", "line": 3}
    )
    with pytest.raises(PlanInvalid, match="no column") as plan:
        rejected.raise_for_error()
    assert repr(plan.value) == "PlanInvalid(None, 'plan_invalid', 'no column', line=3)"
    assert _job().raise_for_error().status == "succeeded"
    assert _job(status="running").raise_for_error().status == "running"


def test_progress_writes_a_line_per_status() -> None:
    lines: list[str] = []
    progress = Progress(lines.append)
    progress(_job(status="queued", outputs={}))
    progress(_job(status="held", outputs={}))
    progress(_job())
    progress(_job(status="failed", error={"code": "plan_invalid", "message": "m", "line": 4}))
    assert [line.split(" (")[0] for line in lines] == [
        "job j-1: queued",
        "job j-1: held for people to check its release",
        "job j-1: succeeded: 3 outputs, charged 1.20 CNY",
        "job j-1: failed: plan_invalid at line 4",
    ]
