"""Ingesting a CSV or Parquet file as a dataset.

The file is parsed and checked against its policy completely before anything is written;
the partitions are written to a temporary directory and moved into place with one rename,
so a failure leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import errno
import io
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sandbox.catalog import encryption, entities, quality, snapshot
from sandbox.catalog.models import LEVELS, ROLES, DatasetInfo
from sandbox.errors import IngestError, QualityRefused, StorageFull

NAME_PATTERN = r"^[^\W\d][\w\-]{0,127}$"
_PARQUET_MAGIC = b"PAR1"


class ColumnPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: str
    lower: float | None = None
    upper: float | None = None
    description: str | None = Field(None, max_length=500)

    @field_validator("role")
    @classmethod
    def _role(cls, v: str) -> str:
        if v not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        return v


class DatasetMeta(BaseModel):
    """The `meta` of a dataset upload (API.md `POST /v1/datasets`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=NAME_PATTERN)
    title: str = Field(min_length=1, max_length=300)
    provider_id: str
    level: str
    columns: dict[str, ColumnPolicy]
    topic: str | None = Field(None, max_length=100)
    description: str | None = Field(None, max_length=2000)
    # The date the data describes (数据截至), when not the day it is registered.
    as_of: dt.date | None = None
    # Declared quality constraints (catalog.quality.Rules), checked at every version.
    quality: dict[str, Any] | None = None

    @field_validator("level")
    @classmethod
    def _level(cls, v: str) -> str:
        if v not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}")
        return v


def parse_meta(raw: Any) -> DatasetMeta:
    try:
        return DatasetMeta.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "meta"
        hint = (
            " (names start with a letter and use letters, digits, '_' or '-')"
            if err["loc"] and err["loc"][0] == "name"
            else ""
        )
        raise IngestError(f"dataset meta: {where}: {err['msg']}{hint}") from None


def _scrub(message: str) -> str:
    # Arrow quotes offending row text after "got N"; keep the diagnosis, drop the data.
    return re.sub(r"(got \d+ ?\w*).*", r"\1", message.splitlines()[0])[:300]


def read_file(data: bytes, filename: str) -> pa.Table:
    if not data:
        raise IngestError("the uploaded file is empty")
    parquet = data[:4] == _PARQUET_MAGIC or filename.lower().endswith(".parquet")
    try:
        if parquet:
            return pq.read_table(io.BytesIO(data))
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise IngestError(
                "the CSV file is not UTF-8; save it as UTF-8 (a GBK file converts "
                "with: iconv -f GBK -t UTF-8 in.csv > out.csv)"
            ) from None
        return pacsv.read_csv(io.BytesIO(data))
    except pa.ArrowException as e:
        kind = "Parquet" if parquet else "CSV"
        raise IngestError(f"could not read the file as {kind}: {_scrub(str(e))}") from None


def policy_of(meta_columns: Mapping[str, ColumnPolicy]) -> snapshot.Policy:
    return snapshot.Policy(
        {
            name: (pol.role, pol.lower, pol.upper, (pol.description or "").strip() or None)
            for name, pol in meta_columns.items()
        }
    )


# What a write gets when the disk (or the writer's quota or file size limit) is used up.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@contextmanager
def disk_space(target: Path) -> Iterator[None]:
    """Writes of a new dataset at `target`: if any fails, its directory goes (the temporary
    one is gone already), and a full disk is said as such."""
    existed = target.exists()
    try:
        yield
    except BaseException as exc:
        if not existed:
            shutil.rmtree(target, ignore_errors=True)
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            raise StorageFull(
                f"the disk holding the datasets directory is full ({os.strerror(exc.errno)}): "
                f"{target.name!r} could not be written and nothing of it was kept. "
                "Free space there and try again"
            ) from None
        raise


def ingest(
    data: bytes, filename: str, meta: DatasetMeta, datasets_dir: Path, partition_rows: int
) -> DatasetInfo:
    return ingest_profiled(data, filename, meta, datasets_dir, partition_rows)[0]


def ingest_profiled(
    data: bytes,
    filename: str,
    meta: DatasetMeta,
    datasets_dir: Path,
    partition_rows: int,
    *,
    at_rest: bool = False,
) -> tuple[DatasetInfo, quality.QualityReport]:
    """The dataset's first version, and its quality profile under `meta.quality`'s rules
    (refused, with nothing written, when the rules say to). `at_rest`: encrypt its files if
    it is L3 or L4, under the master key of the instance `datasets_dir` belongs to."""
    table = read_file(data, filename)
    if table.num_rows == 0:
        raise IngestError("the file has no rows")
    policy = policy_of(meta.columns)
    snapshot.check_columns(table.schema, policy)
    columns = snapshot.declared_columns(table.schema, policy, {}, {})
    profile = quality.Profile(columns, quality.parse_rules(meta.quality, columns))
    profile.add(table)
    report = profile.report()
    if report.status == "refused":
        raise QualityRefused(
            f"dataset {meta.name!r} was refused by its quality rules and nothing was kept: "
            + "; ".join(f.message for f in report.failures)
            + ". Correct the data, or change the rules in meta.quality"
        )
    target = datasets_dir / meta.name
    registry = entities.Registry(datasets_dir / entities.DIRECTORY)
    with disk_space(target):
        written = snapshot.write(
            [table],
            policy,
            target,
            registry,
            partition_rows,
            encrypt=at_rest and encryption.is_encrypted_level(meta.level),
        )
    info = DatasetInfo(
        meta.name,
        meta.title,
        meta.provider_id,
        meta.level,
        written.row_count,
        written.columns,
        tuple(str(target / p) for p in written.partitions),
        (meta.topic or "").strip() or None,
        (meta.description or "").strip() or None,
        as_of=meta.as_of.isoformat() if meta.as_of else None,
    )
    return info, report
