"""A job's released table for analysts: Arrow, pandas, and an HTML view for notebooks that marks
each suppressed cell with the rule that suppressed it, beside the release's disclosure report.

    t = job.table("elderly_by_district")
    t.to_arrow()       # pyarrow.Table, null in suppressed cells
    t.to_pandas()      # pandas.DataFrame (pip install 'public-data-sandbox[notebook]')
    t                  # in Jupyter: the table, suppressed cells as "—", and the report

pyarrow and pandas are imported only when a conversion asks for them.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["RULES", "ReleasedTable", "SuppressedCell"]

# What each rule of the service's disclosure control means (`sandbox.disclosure`), in the
# words shown on a suppressed cell.
RULES: dict[str, str] = {
    "min_contributors": "fewer contributors than the threshold",
    "dominance": "dominated by its largest contributions",
    "difference": "would reveal a small group by difference with another release",
    "secondary": "suppressed to protect another suppressed cell",
    "evaluation": "could not be evaluated for every row",
    "differential_privacy": "withheld by differential privacy",
}
MARK = "—"
UNKNOWN_RULE = "suppressed by the disclosure rules"


@dataclass(frozen=True)
class SuppressedCell:
    row: int
    column: str
    # The rule the disclosure report names for the cell; None for tables the job derived
    # from released values, whose report is that of their source.
    rule: str | None = None

    @property
    def reason(self) -> str:
        if self.rule is None:
            return UNKNOWN_RULE
        return f"{self.rule}: {RULES.get(self.rule, UNKNOWN_RULE)}"


@dataclass(frozen=True)
class ReleasedTable:
    """One table output of a job: its JSON as the API sent it, and the part of the job's
    disclosure report about it (None when the job derived it from released values)."""

    name: str
    body: Mapping[str, Any]
    report: Mapping[str, Any] | None = None
    derived: bool = False

    @classmethod
    def of(
        cls,
        name: str,
        body: Mapping[str, Any],
        disclosure: Mapping[str, Any] | None,
    ) -> ReleasedTable:
        derived = name in ((disclosure or {}).get("derived") or ()) or bool(body.get("derived"))
        report = None if derived else release_of(body, disclosure or {})
        return cls(name, body, report, derived)

    @property
    def columns(self) -> list[str]:
        return [str(c["name"]) for c in self.body["columns"]]

    @property
    def rows(self) -> list[list[Any]]:
        return [list(r) for r in self.body.get("rows") or []]

    @property
    def suppressed(self) -> list[SuppressedCell]:
        rules = {
            (int(s["row"]), str(s["column"])): s.get("rule")
            for s in (self.report or {}).get("suppressed") or []
            if isinstance(s, Mapping)
        }
        return [
            SuppressedCell(int(row), str(column), rules.get((int(row), str(column))))
            for row, column in self.body.get("suppressed") or []
        ]

    @property
    def margins(self) -> list[int]:
        """The rows that are totals (the job's with_totals()): None in a key there is "all"."""
        return [int(i) for i in self.body.get("margins") or []]

    def to_arrow(self) -> pa.Table:
        """A `pyarrow.Table`, each column typed as announced; null in suppressed cells."""
        # The client's reader, which types each column as the API announced it.
        from operators.client import released_table

        return released_table(self.body)

    def to_pandas(self) -> pd.DataFrame:
        """A `pandas.DataFrame` with nullable dtypes, so a suppressed count is <NA> in an
        integer column rather than NaN turning the column into floats."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError(
                "to_pandas() needs pandas: pip install 'public-data-sandbox[notebook]' "
                "(or pip install pandas)"
            ) from None
        frame: pd.DataFrame = self.to_arrow().to_pandas(types_mapper=_nullable(pd))
        return frame

    def summary(self) -> dict[str, Any]:
        """The disclosure report in brief: cells suppressed (by rule), rows, and what else the
        report says about this release."""
        by_rule = Counter(c.rule or "unknown" for c in self.suppressed)
        report = self.report or {}
        out: dict[str, Any] = {
            "rows": len(self.rows),
            "cells_suppressed": len(self.suppressed),
            "suppressed_by_rule": dict(sorted(by_rule.items())),
        }
        for key in ("dataset", "keys", "cells", "left_out", "coarsened", "truncated", "noise"):
            if key in report:
                out[key] = report[key]
        if self.margins:
            out["total_rows"] = len(self.margins)
        if self.derived:
            out["derived"] = True
        return out

    def _repr_html_(self) -> str:
        return render_html(self)

    def __repr__(self) -> str:
        return (
            f"<released table {self.name!r}: {len(self.rows)} rows × {len(self.columns)} "
            f"columns, {len(self.suppressed)} cells suppressed>"
        )


def _nullable(pd: Any) -> Callable[[Any], Any]:
    """pyarrow's types → pandas' nullable dtypes; other types keep pyarrow's default."""
    import pyarrow as pa

    def dtype(arrow_type: Any) -> Any:
        if pa.types.is_integer(arrow_type):
            return pd.Int64Dtype()
        if pa.types.is_floating(arrow_type):
            return pd.Float64Dtype()
        if pa.types.is_boolean(arrow_type):
            return pd.BooleanDtype()
        if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
            return pd.StringDtype()
        return None

    return dtype


def release_of(body: Mapping[str, Any], disclosure: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The entry of the job's disclosure report that released this table: the release with
    its group keys, its number of rows and exactly its suppressed cells. Outputs do not name
    their release, and a job may emit several; these agree for one release only unless two
    releases are alike in all three, when either report describes the table."""
    names = [str(c["name"]) for c in body.get("columns") or []]
    cells = {(int(r), str(c)) for r, c in body.get("suppressed") or []}
    for release in disclosure.get("releases") or []:
        if not isinstance(release, Mapping):
            continue
        keys = [str(k) for k in release.get("keys") or []]
        reported = {
            (int(s["row"]), str(s["column"]))
            for s in release.get("suppressed") or []
            if isinstance(s, Mapping)
        }
        if (
            release.get("rows") == len(body.get("rows") or [])
            and names[: len(keys)] == keys
            and reported == cells
        ):
            return release
    return None


# --- HTML ------------------------------------------------------------------------------------

_STYLE = (
    "<style>"
    ".sbx-released{display:flex;gap:1.5em;align-items:flex-start;flex-wrap:wrap}"
    ".sbx-released td.sbx-suppressed{color:#888;background:#f4f4f4;text-align:center}"
    ".sbx-report{font-size:90%;min-width:16em}"
    ".sbx-report th{text-align:left;padding-right:1em}"
    "</style>"
)
_MAX_ROWS = 200


def render_html(table: ReleasedTable) -> str:
    """The table, suppressed cells as "—" titled with their rule, and the report beside it.
    Every name and value is escaped: column names and labels come from job code and data."""
    hidden = {(c.row, c.column): c for c in table.suppressed}
    keys = set((table.report or {}).get("keys") or [])
    margins = set(table.margins)
    head = "".join(f"<th>{_e(c)}</th>" for c in table.columns)
    body_rows = []
    for i, row in enumerate(table.rows[:_MAX_ROWS]):
        cells = []
        for column, value in zip(table.columns, row):
            cell = hidden.get((i, column))
            if cell is not None:
                cells.append(
                    f'<td class="sbx-suppressed" title="{_e(cell.reason)}" '
                    f'data-rule="{_e(cell.rule or "")}">{MARK}</td>'
                )
            elif i in margins and value is None and (column in keys or not keys):
                # A total row: None in a key it adds up over means every value of that key.
                cells.append('<td class="sbx-total"><i>all</i></td>')
            else:
                cells.append(f"<td>{_e(_text(value))}</td>")
        label = "total" if i in margins else str(i)
        body_rows.append(f"<tr><th>{label}</th>{''.join(cells)}</tr>")
    more = len(table.rows) - _MAX_ROWS
    if more > 0:
        span = len(table.columns) + 1
        body_rows.append(f'<tr><td colspan="{span}">… {more} more rows (to_pandas())</td></tr>')
    grid = (
        f'<table class="sbx-table"><caption>{_e(table.name)}</caption>'
        f"<thead><tr><th></th>{head}</tr></thead><tbody>{''.join(body_rows)}</tbody></table>"
    )
    return (
        f'{_STYLE}<div class="sbx-released">{grid}'
        f'<div class="sbx-report">{_report_html(table)}</div></div>'
    )


def _report_html(table: ReleasedTable) -> str:
    summary = table.summary()
    rows: list[tuple[str, str]] = []
    if table.derived:
        rows.append(("derived", "computed by the job from released values"))
    if "dataset" in summary:
        rows.append(("dataset", str(summary["dataset"])))
    if summary.get("keys"):
        rows.append(("grouped by", ", ".join(map(str, summary["keys"]))))
    if summary.get("total_rows"):
        rows.append(("total rows", str(summary["total_rows"])))
    cells = f" of {summary['cells']}" if "cells" in summary else ""
    rows.append(("cells suppressed", f"{summary['cells_suppressed']}{cells}"))
    for rule, n in summary["suppressed_by_rule"].items():
        meaning = RULES.get(rule, UNKNOWN_RULE) if rule != "unknown" else UNKNOWN_RULE
        rows.append((f"rule {rule}", f"{n} ({meaning})"))
    left_out = summary.get("left_out")
    rows.append(
        (
            "groups left out",
            str(left_out) if left_out is not None else "too small to show; not counted here",
        )
    )
    if summary.get("coarsened"):
        rows.append(("coarsened", ", ".join(map(str, summary["coarsened"]))))
    if summary.get("truncated"):
        rows.append(("truncated", str(summary["truncated"])))
    if summary.get("noise"):
        rows.append(("noise", "differential privacy (see the job's disclosure report)"))
    lines = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows)
    return f"<table><caption>disclosure report</caption>{lines}</table>"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def tables_of(
    outputs: Mapping[str, Any],
    disclosure: Mapping[str, Any] | None,
    names: Iterable[str] | None = None,
) -> dict[str, ReleasedTable]:
    """Every table output (scalars left out) as a ReleasedTable."""
    wanted = list(outputs) if names is None else list(names)
    return {
        n: ReleasedTable.of(n, outputs[n], disclosure)
        for n in wanted
        if isinstance(outputs.get(n), Mapping) and outputs[n].get("kind") != "scalar"
    }
