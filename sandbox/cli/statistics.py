"""`sandbox statistics datasets|departments`: the departments' statistics (考核) for a month on
a local instance, as the bureau sees them, with the same table as CSV or XLSX."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from sandbox.cli.options import DataDir

statistics_app = typer.Typer(
    help="The departments' statistics (考核) per month (acts as the bureau on a local instance).",
    no_args_is_help=True,
)

Month = typer.Option(None, "--month", help="Month, YYYY-MM (Beijing time); default this month.")
CsvFile = typer.Option(None, "--csv", help="Also write the table as CSV (UTF-8) to this file.")
XlsxFile = typer.Option(None, "--xlsx", help="Also write the table as an Excel workbook.")


@statistics_app.command("datasets")
def datasets(
    month: str | None = Month,
    csv_file: Path | None = CsvFile,
    xlsx_file: Path | None = XlsxFile,
    data_dir: Path | None = DataDir,
) -> None:
    """Per dataset: versions, jobs, operators, rows, fees, refusals, suppressed cells,
    approval times and open demands."""
    _report("datasets", month, csv_file, xlsx_file, data_dir)


@statistics_app.command("departments")
def departments(
    month: str | None = Month,
    csv_file: Path | None = CsvFile,
    xlsx_file: Path | None = XlsxFile,
    data_dir: Path | None = DataDir,
) -> None:
    """Per department: its datasets' figures rolled up."""
    _report("departments", month, csv_file, xlsx_file, data_dir)


def _report(
    kind: str,
    month: str | None,
    csv_file: Path | None,
    xlsx_file: Path | None,
    data_dir: Path | None,
) -> None:
    # The command line's own helpers; imported here, as main imports this module.
    from sandbox.cli.main import _bureau, _domain_errors, _fail, _open, console
    from sandbox.common import exports
    from sandbox.records import statistics

    ctx = _open(data_dir)
    try:
        if kind == "datasets":
            report = statistics.datasets(ctx, _bureau(ctx), month)
            sheet = statistics.datasets_table(report)
        else:
            report = statistics.departments(ctx, _bureau(ctx), month)
            sheet = statistics.departments_table(report)
    except _domain_errors() as e:
        _fail(getattr(e, "message", str(e)))
    finally:
        ctx.close()
    console.print(_table(kind, report))
    console.print(f"Charges in {report['month']}: {report['charges']} {report['currency']}")
    for path, fmt in ((csv_file, "csv"), (xlsx_file, "xlsx")):
        if path is not None:
            path.write_bytes(exports.render(sheet, fmt))
            console.print(f"Wrote {path}")


def _table(kind: str, report: dict[str, Any]) -> Table:
    first = ("dataset", "title") if kind == "datasets" else ("department", "datasets")
    table = Table(
        *first,
        "versions",
        "days since",
        "jobs",
        "operators",
        "rows",
        "fees",
        "refused",
        "suppressed",
        "approval h (median/max)",
        "open demands",
        title=f"Statistics by {kind[:-1]}, {report['month']} (as of {report['as_of']})",
    )
    for row in report[kind]:
        head = (
            (row["dataset"], row["title"] or "")
            if kind == "datasets"
            else (row["department"] or row["department_id"], str(row["datasets"]))
        )
        table.add_row(
            *head,
            str(row["versions_published"]),
            _text(row["days_since_last_version"]),
            str(row["jobs"]),
            str(row["operators"]),
            f"{row['rows_scanned']:,}",
            row["fees"],
            str(row["refusals"]),
            str(row["suppressed_cells"]),
            f"{_text(row['approval_median_hours'])}/{_text(row['approval_max_hours'])}",
            str(row["open_demands"]),
        )
    return table


def _text(value: Any) -> str:
    return "—" if value is None else str(value)
