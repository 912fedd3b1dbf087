"""Tables for spreadsheets: one model, written as CSV or as an XLSX workbook.

Every table the service hands out as a file is written here, so one place decides what a
spreadsheet may evaluate. Text in exports comes from operators (job code, params, names,
purposes) and from the data (group keys); a spreadsheet evaluates a cell that starts with
`=`, `+`, `-`, `@`, a tab or a carriage return as a formula (CSV injection, as OWASP describes
it). So:

- a column has a kind: text, number, money or time. Only a value that really is a number
  (int, float, Decimal, or a string that parses as one in a number column) is written as a
  number; everything else is text;
- CSV: a text cell starting with one of those characters gets a leading single quote, the
  OWASP recommendation; genuine numbers (negative ones included) are written as numbers,
  since `-3` is a value and not a formula. The file is UTF-8 with a BOM (Excel and WPS then
  read Chinese correctly); the header row holds the English keys, stable for scripts, and
  times are UTC in ISO 8601 (`…Z`), as in JSON;
- XLSX: text cells are typed as strings (never formulas, whatever they start with) and keep
  their exact text, with Excel's quote prefix on those that start like a formula so that
  editing the cell does not turn it into one; numbers are numbers, money exact decimals shown
  with two places, times in Beijing time with the zone named in the Chinese header, the
  header row frozen, suppressed cells written as `（已抑制）`.

Framework-free: the API and the CLI choose the format and wrap the bytes.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, Final
from urllib.parse import quote as percent_encode

from openpyxl import Workbook
from openpyxl.styles import Font
from openpyxl.utils import get_column_letter

from sandbox.common import clock

FORMATS: Final = ("csv", "xlsx")
MEDIA_TYPES: Final = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
# OWASP's list of characters that make a spreadsheet read a cell as a formula.
FORMULA_TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r")
SUPPRESSED_TEXT: Final = "（已抑制）"
BEIJING: Final = dt.timezone(dt.timedelta(hours=8), "UTC+8")
TIME_HEADER_SUFFIX: Final = " (北京时间 UTC+8)"
MONEY_FORMAT: Final = "0.00"
TIME_FORMAT: Final = "yyyy-mm-dd hh:mm:ss"
_CENT = Decimal("0.01")
# Characters XML 1.0 cannot carry; openpyxl refuses them, so a hostile value would break the
# whole workbook. They are shown as U+FFFD instead.
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
_SHEET_TITLE_ILLEGAL = re.compile(r"[\[\]:*?/\\]")


class Kind(StrEnum):
    TEXT = "text"
    NUMBER = "number"
    MONEY = "money"
    TIME = "time"


@dataclass(frozen=True)
class Column:
    """One column: `key` names it in CSV and finds its value in a row; `header` is what
    people read in the workbook (Chinese)."""

    key: str
    header: str
    kind: Kind = Kind.TEXT


class _Suppressed:
    def __repr__(self) -> str:
        return "SUPPRESSED"


SUPPRESSED: Final = _Suppressed()
"""A cell the release gate withheld: empty in CSV (as null in JSON), named in XLSX."""


@dataclass(frozen=True)
class Table:
    title: str
    columns: Sequence[Column]
    rows: Sequence[Mapping[str, Any]] = field(default_factory=list)


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    return fmt


def render(table: Table, fmt: str) -> bytes:
    return to_csv(table) if check_format(fmt) == "csv" else to_xlsx(table)


def neutralise(text: str) -> str:
    """The text with a leading single quote if a spreadsheet would evaluate it."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


# -- values ------------------------------------------------------------------------------------


def as_text(value: Any) -> str:
    """How any value reads as text: nested values as JSON, None as nothing."""
    if value is None or value is SUPPRESSED:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, dt.datetime):
        return clock.text(value)
    return str(value)


def _number(value: Any) -> int | float | Decimal | None:
    """The value as a number if it genuinely is one (finite); None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    if isinstance(value, str) and value.strip() == value and value:
        try:
            parsed = Decimal(value)
        except InvalidOperation:
            return None
        return parsed if parsed.is_finite() else None
    return None


def _money(value: Any) -> Decimal | None:
    number = _number(value)
    if number is None:
        return None
    # Money is exact: a float here would already have lost the fen, so it goes through repr.
    exact = Decimal(repr(number)) if isinstance(number, float) else Decimal(number)
    return exact.quantize(_CENT)


def _moment(value: Any) -> dt.datetime | None:
    """An aware moment: stored times are naive UTC, JSON ones ISO 8601 with `Z`."""
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, str) and "T" in value:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


# -- CSV ---------------------------------------------------------------------------------------


def to_csv(table: Table) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([neutralise(c.key) for c in table.columns])
    for row in table.rows:
        writer.writerow([_csv_cell(c.kind, row.get(c.key)) for c in table.columns])
    # The BOM tells Excel and WPS the file is UTF-8; without it they guess GBK.
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def _csv_cell(kind: Kind, value: Any) -> str:
    if kind is Kind.MONEY and (money := _money(value)) is not None:
        return str(money)
    if kind is Kind.NUMBER and (number := _number(value)) is not None:
        return repr(number) if isinstance(number, float) else str(number)
    if kind is Kind.TIME and (moment := _moment(value)) is not None:
        return clock.text(moment)
    return neutralise(as_text(value))


# -- XLSX --------------------------------------------------------------------------------------


def to_xlsx(table: Table) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = _sheet_title(table.title)
    bold = Font(bold=True)
    for j, column in enumerate(table.columns, start=1):
        header = column.header + (TIME_HEADER_SUFFIX if column.kind is Kind.TIME else "")
        _text_cell(ws.cell(row=1, column=j), header).font = bold
        ws.column_dimensions[get_column_letter(j)].width = _width(column, header)
    for i, row in enumerate(table.rows, start=2):
        for j, column in enumerate(table.columns, start=1):
            _xlsx_cell(ws.cell(row=i, column=j), column.kind, row.get(column.key))
    ws.freeze_panes = "A2"
    if table.columns:
        ws.auto_filter.ref = f"A1:{get_column_letter(len(table.columns))}{len(table.rows) + 1}"
    sink = io.BytesIO()
    wb.save(sink)
    return sink.getvalue()


def _xlsx_cell(cell: Any, kind: Kind, value: Any) -> None:
    if value is SUPPRESSED:
        _text_cell(cell, SUPPRESSED_TEXT)
    elif value is None:
        return
    elif kind is Kind.MONEY and (money := _money(value)) is not None:
        cell.value = money
        cell.number_format = MONEY_FORMAT
    elif kind is Kind.NUMBER and (number := _number(value)) is not None:
        cell.value = number
    elif kind is Kind.TIME and (moment := _moment(value)) is not None:
        # Excel has no time zones: the cell holds Beijing wall time, the header names the zone.
        cell.value = moment.astimezone(BEIJING).replace(tzinfo=None)
        cell.number_format = TIME_FORMAT
    elif text := as_text(value):
        _text_cell(cell, text)


def _text_cell(cell: Any, text: str) -> Any:
    text = _XML_ILLEGAL.sub("\ufffd", text)[:32767]
    cell.value = text
    # openpyxl makes a string starting with "=" a formula and "#N/A" an error; typed as a
    # string it is stored as text, whatever it starts with.
    cell.data_type = "s"
    if text.startswith(FORMULA_TRIGGERS):
        # Keeps it text when someone edits the cell and presses Enter.
        cell.quotePrefix = True
    return cell


def _sheet_title(title: str) -> str:
    return (_SHEET_TITLE_ILLEGAL.sub("_", title).strip("'") or "Sheet")[:31]


def _width(column: Column, header: str) -> float:
    # Chinese characters are about two Latin characters wide.
    wide = sum(2 if ord(ch) > 0x2E7F else 1 for ch in header)
    floor = {Kind.TIME: 20, Kind.MONEY: 12, Kind.NUMBER: 10, Kind.TEXT: 12}[column.kind]
    return float(min(max(wide + 2, floor), 60))


def attachment(filename: str) -> dict[str, str]:
    """The header that makes a response a download named `filename`."""
    # Header values are Latin-1: a Chinese file name travels percent-encoded (RFC 6266).
    encoded = percent_encode(filename, safe="")
    return {"Content-Disposition": f"attachment; filename*=UTF-8''{encoded}"}
