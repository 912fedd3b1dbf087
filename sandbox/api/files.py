"""File downloads: CSV that spreadsheets read correctly, and safe attachment names."""

from __future__ import annotations

from urllib.parse import quote as percent_encode

from fastapi.responses import Response


def attachment(filename: str) -> dict[str, str]:
    # Header values are Latin-1: a Chinese file name travels percent-encoded (RFC 6266).
    encoded = percent_encode(filename, safe="")
    return {"Content-Disposition": f"attachment; filename*=UTF-8''{encoded}"}


def csv_response(text: str, filename: str) -> Response:
    # UTF-8 with a BOM so that spreadsheet programs show Chinese names correctly.
    return Response(("\ufeff" + text).encode("utf-8"), media_type="text/csv; charset=utf-8",
                    headers=attachment(filename))
