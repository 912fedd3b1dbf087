"""Datasets for tests, from Arrow tables: Parquet bytes to upload, a dataset ingested as the
catalog ingests an upload, or partition files laid out directly (to choose the cuts, row
groups and statistics that ingest would choose itself)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from sandbox.catalog.ingest import ingest, parse_meta
from sandbox.catalog.models import ColumnInfo, DatasetInfo


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def ingested(
    root: Path,
    name: str,
    table: pa.Table,
    columns: dict[str, Any],
    *,
    level: str,
    partition_rows: int,
    title: str | None = None,
    provider_id: str = "pr-1",
) -> DatasetInfo:
    """`table` uploaded as `<name>.parquet` and ingested under `root`; `columns` as in a
    dataset's meta (each column's role and bounds)."""
    meta = parse_meta(
        {
            "name": name,
            "title": title or name,
            "provider_id": provider_id,
            "level": level,
            "columns": columns,
        }
    )
    return ingest(parquet_bytes(table), f"{name}.parquet", meta, root, partition_rows)


def slices(table: pa.Table, cuts: Sequence[int]) -> list[pa.Table]:
    """`table` cut before each row in `cuts` (clamped to its length; repeats ignored)."""
    n = table.num_rows
    bounds = sorted({0, n, *(min(c, n) for c in cuts)})
    return [table.slice(a, b - a) for a, b in zip(bounds, bounds[1:] or [n])]


def partitioned(
    root: Path,
    parts: Sequence[pa.Table],
    columns: tuple[ColumnInfo, ...],
    *,
    name: str = "t",
    title: str,
    prefix: str = "part",
    level: str = "L1",
    **write_options: Any,
) -> DatasetInfo:
    """A dataset whose partitions are `parts`, one file each, written under `root` as
    `<prefix>-<i>.parquet` with pyarrow's `write_options` (row_group_size, ...)."""
    paths = []
    for i, part in enumerate(parts):
        path = root / f"{prefix}-{i}.parquet"
        pq.write_table(part, path, **write_options)
        paths.append(str(path))
    return DatasetInfo(
        name, title, "pr-1", level, sum(part.num_rows for part in parts), columns, tuple(paths)
    )


def city_sql(city: dict[str, Any], sql: str) -> list[tuple[Any, ...]]:
    """`sql` run by DuckDB over the synthetic city's tables: the independent answer."""
    import duckdb

    con = duckdb.connect()
    for name in ("population", "social_insurance", "enterprises"):
        con.register(name, city[name].table)
    rows = con.execute(sql).fetchall()
    con.close()
    return rows
