"""The one writer of CSV and XLSX exports: formula-safe text, typed numbers, money, times."""

from __future__ import annotations

import csv
import datetime as dt
import io
import zipfile
from decimal import Decimal

import openpyxl
import pytest

from sandbox.common.exports import (
    SUPPRESSED,
    Column,
    Kind,
    Table,
    check_format,
    neutralise,
    render,
    to_csv,
    to_xlsx,
)

HOSTILE = ['=HYPERLINK("http://evil.example","点我")', "@SUM(A1)", "+1+1", "-1+1", "\t=1", "\r=1"]
TABLE = Table(
    "报表",
    [
        Column("key", "分组"),
        Column("n", "人数", Kind.NUMBER),
        Column("fee", "金额（元）", Kind.MONEY),
        Column("at", "时间", Kind.TIME),
    ],
    [{"key": h, "n": -3, "fee": "2.5", "at": "2026-11-30T16:30:00Z"} for h in HOSTILE]
    + [
        {"key": "城关区", "n": SUPPRESSED, "fee": Decimal("0.1"), "at": dt.datetime(2026, 1, 1)},
        {"key": {"a": [1]}, "n": "=1+1", "fee": "-1+1", "at": "=NOW()"},
    ],
)


def read_csv(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def read_xlsx(data: bytes) -> list[list[openpyxl.cell.Cell]]:
    return [list(r) for r in openpyxl.load_workbook(io.BytesIO(data)).active.iter_rows()]


@pytest.mark.parametrize("text", HOSTILE)
def test_text_a_spreadsheet_would_evaluate_gets_a_quote(text: str) -> None:
    assert neutralise(text) == "'" + text


@pytest.mark.parametrize("text", ["城关区", "a=b", " =1", "'=1", "", "1-2"])
def test_other_text_is_left_alone(text: str) -> None:
    assert neutralise(text) == text


def test_csv_has_keys_for_headers_and_neutralised_text() -> None:
    rows = read_csv(to_csv(TABLE))
    assert rows[0] == ["key", "n", "fee", "at"]
    assert [r[0] for r in rows[1:7]] == ["'" + h for h in HOSTILE]
    # A genuine negative number is a number, not text: no quote.
    assert rows[1][1:] == ["-3", "2.50", "2026-11-30T16:30:00Z"]
    assert rows[7] == ["城关区", "", "0.10", "2026-01-01T00:00:00Z"]
    # Whatever fails to be a number, money or time is text, and neutralised as such.
    assert rows[8] == ['{"a": [1]}', "'=1+1", "'-1+1", "'=NOW()"]


def test_xlsx_types_every_cell_and_never_writes_a_formula() -> None:
    header, *body = read_xlsx(to_xlsx(TABLE))
    assert [c.value for c in header] == ["分组", "人数", "金额（元）", "时间 (北京时间 UTC+8)"]
    for row, text in zip(body, HOSTILE):
        assert row[0].value == text.replace("\r", "\n") and row[0].data_type == "s"
        assert row[0].quotePrefix
        assert row[1].value == -3 and row[1].data_type == "n"
        assert row[2].value == 2.5 and row[2].number_format == "0.00"
        assert row[3].value == dt.datetime(2026, 12, 1, 0, 30)  # Beijing time
    suppressed = body[6]
    assert suppressed[1].value == "（已抑制）" and suppressed[1].data_type == "s"
    assert suppressed[3].value == dt.datetime(2026, 1, 1, 8, 0)
    last = body[7]
    assert [c.value for c in last] == ['{"a": [1]}', "=1+1", "-1+1", "=NOW()"]
    assert all(c.data_type == "s" for c in last)


def test_xlsx_freezes_the_header_and_survives_control_characters() -> None:
    table = Table("a/b:c*[d]?" * 5, [Column("k", "键")], [{"k": "a\x00b\x1bc"}, {"k": None}])
    book = openpyxl.load_workbook(io.BytesIO(to_xlsx(table)))
    sheet = book.active
    assert sheet.freeze_panes == "A2" and len(sheet.title) <= 31
    assert sheet["A2"].value == "a\ufffdb\ufffdc" and sheet["A3"].value is None


def test_money_is_exact_in_both_formats() -> None:
    table = Table("钱", [Column("m", "金额", Kind.MONEY)], [{"m": "0.10"}, {"m": Decimal("1e2")}])
    assert read_csv(to_csv(table))[1:] == [["0.10"], ["100.00"]]
    # The workbook holds the decimal's own digits; "0.00" shows the two places.
    sheet = zipfile.ZipFile(io.BytesIO(to_xlsx(table))).read("xl/worksheets/sheet1.xml").decode()
    assert "<v>0.1</v>" in sheet and "<v>100</v>" in sheet


def test_an_unknown_format_names_the_ones_that_exist() -> None:
    assert check_format("xlsx") == "xlsx"
    with pytest.raises(ValueError, match="csv, xlsx"):
        render(TABLE, "xls")
