"""File downloads: export tables as CSV or XLSX."""

from __future__ import annotations

from typing import Literal

from fastapi.responses import Response

from sandbox.common import exports

# The formats a listing, report or released output offers besides JSON (Parquet is added
# where the data is a released output); the query parameter is checked against these, so an
# unknown one is refused in the error envelope with this list.
ListingFormat = Literal["json", "csv", "xlsx"]
OutputFormat = Literal["json", "csv", "xlsx", "parquet"]


def export_response(table: exports.Table, fmt: str, stem: str) -> Response:
    """`table` as a download in `fmt` (csv or xlsx), named `stem` plus the extension."""
    return Response(
        exports.render(table, fmt),
        media_type=exports.MEDIA_TYPES[fmt],
        headers=exports.attachment(f"{stem}.{fmt}"),
    )
