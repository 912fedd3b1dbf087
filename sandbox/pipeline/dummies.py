"""Serving dummy data: who may download a dataset's generated table, and in what form.

The table comes from `catalog.dummy` (the published schema only); the companion JSON from
`pipeline.local.dummy_catalog`. With `SANDBOX_DUMMY_NEEDS_CONTRACT` an operator needs a
contract in force that covers the dataset; the other roles read the catalog anyway.
"""

from __future__ import annotations

import io
import json
from typing import Any, Final

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from contracts.errors import ContractError
from contracts.lifecycle import Status, check_usable
from operators.roles import Role
from sandbox.catalog import dummy
from sandbox.catalog.models import DatasetInfo
from sandbox.common import clock, exports
from sandbox.context import Context
from sandbox.errors import Forbidden
from sandbox.pipeline.local import CATALOG_KEY, NOTICE, dummy_catalog
from sandbox.records import agreements, registry
from sandbox.records.principals import Actor
from sandbox.store.models import Contract

FORMATS: Final = ("parquet", "csv", "xlsx")
MEDIA_TYPES: Final = {"parquet": "application/vnd.apache.parquet", **exports.MEDIA_TYPES}
PREVIEW_ROWS: Final = 5


def dataset_for(ctx: Context, actor: Actor, name: str) -> DatasetInfo:
    """The dataset, once `actor` may have its dummy data (404 for no such dataset first)."""
    with ctx.reading() as s:
        info = registry.get(ctx, s, name)
        if actor.role == Role.operator and ctx.settings.dummy_needs_contract:
            rows = s.scalars(
                select(Contract).where(
                    Contract.operator_id == actor.id, Contract.status == Status.active.value
                )
            ).all()
            if not any(_covers(row, name) for row in rows):
                raise Forbidden(
                    f"dummy data for dataset {name!r} needs a contract in force that covers "
                    "it; apply for one from the dataset's page (POST /v1/contracts), or ask "
                    "the bureau whether SANDBOX_DUMMY_NEEDS_CONTRACT may be turned off"
                )
    return info


def _covers(row: Contract, name: str) -> bool:
    doc = agreements.document(row)
    if name not in doc.datasets:
        return False
    try:
        check_usable(doc, Status(row.status), clock.now())
    except ContractError:
        return False
    return True


def catalog(ctx: Context, actor: Actor, name: str) -> dict[str, Any]:
    return dummy_catalog(dataset_for(ctx, actor, name), ctx.settings)


def download(
    ctx: Context, actor: Actor, name: str, rows: int, fmt: str, seed: int = 0
) -> tuple[bytes, str, str]:
    """The file's bytes, media type and file name."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown dummy data format {fmt!r}; use one of {', '.join(FORMATS)}")
    info = dataset_for(ctx, actor, name)
    table = dummy.generate(info, rows, seed)
    if fmt != "parquet":
        return spreadsheet(table, fmt), MEDIA_TYPES[fmt], f"{name}.dummy.{fmt}"
    described = dummy_catalog(info, ctx.settings)
    metadata = {CATALOG_KEY: json.dumps(described, ensure_ascii=False).encode("utf-8")}
    sink = io.BytesIO()
    pq.write_table(table.replace_schema_metadata(metadata), sink)
    return sink.getvalue(), MEDIA_TYPES["parquet"], f"{name}.dummy.parquet"


def to_csv(table: pa.Table) -> bytes:
    return spreadsheet(table, "csv")


def spreadsheet(table: pa.Table, fmt: str) -> bytes:
    """As every CSV or XLSX file the service writes (`common.exports`): numbers as numbers,
    text that a spreadsheet would evaluate neutralised."""
    columns = [
        exports.Column(
            f.name,
            f.name,
            exports.Kind.NUMBER
            if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
            else exports.Kind.TEXT,
        )
        for f in table.schema
    ]
    return exports.render(exports.Table("dummy", columns, table.to_pylist()), fmt)


def preview(info: DatasetInfo, rows: int = PREVIEW_ROWS) -> dict[str, Any]:
    """A few generated rows for the dataset's page, with what they are."""
    table = dummy.generate(info, rows)
    return {
        "columns": table.column_names,
        "rows": [list(r.values()) for r in table.to_pylist()],
        "notice": NOTICE,
    }
