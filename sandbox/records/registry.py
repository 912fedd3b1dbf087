"""Datasets in the database: register (ingest + record + log), list, look up."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from operators.roles import Role
from sandbox.catalog.ingest import ingest_profiled, parse_meta
from sandbox.catalog.models import ColumnInfo, DatasetInfo
from sandbox.common import clock
from sandbox.context import Context
from sandbox.errors import Conflict, IngestError, NotFound, VersionRetired
from sandbox.ledger import log
from sandbox.records.principals import Actor, require
from sandbox.store.models import Dataset, DatasetVersion, Principal


def to_info(ctx: Context, row: Dataset, version: DatasetVersion | None = None) -> DatasetInfo:
    """The dataset as of `version` (a row of dataset_versions; None: the version in force,
    whose columns and files the dataset's own row repeats)."""
    number = version.version if version is not None else row.version
    directory = ctx.settings.datasets_dir / (
        version.directory if version is not None else directory_of(row.name, number)
    )
    revised = version.revisions if version is not None else None
    return DatasetInfo(
        row.name,
        row.title,
        row.provider_id,
        row.level,
        version.row_count if version is not None else row.row_count,
        tuple(ColumnInfo(**c) for c in (version.columns if version is not None else row.columns)),
        tuple(
            str(directory / p)
            for p in (version.partitions if version is not None else row.partitions)
        ),
        row.topic,
        row.description,
        clock.text(row.created_at) if row.created_at else None,
        number,
        str(directory / revised) if revised else None,
        (version.as_of if version is not None else row.as_of) or _day(row, version),
    )


def _day(row: Dataset, version: DatasetVersion | None) -> str | None:
    """A version's date when none was declared: the day it was published."""
    at = version.created_at if version is not None else row.created_at
    return at.date().isoformat() if at is not None else None


def directory_of(name: str, version: int) -> str:
    """Where a version's files are, under the datasets directory: the first in the
    dataset's own directory (as every dataset was before versions), later ones beside it."""
    return name if version == 1 else f"{name}@{version}"


def register(ctx: Context, actor: Actor, data: bytes, filename: str, meta_raw: Any) -> DatasetInfo:
    require(actor, Role.bureau)
    meta = parse_meta(meta_raw)
    if len(data) > ctx.settings.max_upload_mb * 2**20:
        raise IngestError(f"the file is larger than {ctx.settings.max_upload_mb} MiB")
    with ctx.reading() as s:
        if s.get(Dataset, meta.name) is not None:
            raise Conflict(f"a dataset named {meta.name!r} already exists; choose another name")
        provider = s.get(Principal, meta.provider_id)
        if provider is None or provider.role != Role.provider:
            raise IngestError(
                f"provider_id {meta.provider_id!r} is not a registered provider; "
                "create it first with POST /v1/principals (role 'provider')"
            )
    info, report = ingest_profiled(
        data, filename, meta, ctx.settings.datasets_dir, ctx.settings.partition_rows, at_rest=True
    )
    registered = clock.stored(clock.now())
    try:
        with ctx.transaction() as s:
            s.add(
                Dataset(
                    name=info.name,
                    title=info.title,
                    provider_id=info.provider_id,
                    level=info.level,
                    row_count=info.row_count,
                    columns=[c.to_record() for c in info.columns],
                    partitions=[p.rsplit("/", 1)[1] for p in info.partitions],
                    topic=info.topic,
                    description=info.description,
                    created_at=registered,
                    as_of=info.as_of,
                    quality_rules=meta.quality,
                )
            )
            s.flush()
            s.add(
                DatasetVersion(
                    dataset=info.name,
                    version=1,
                    mode="initial",
                    source="upload",
                    directory=info.name,
                    partitions=[p.rsplit("/", 1)[1] for p in info.partitions],
                    columns=[c.to_record() for c in info.columns],
                    row_count=info.row_count,
                    created_at=registered,
                    created_by=actor.id,
                    quality=report.to_json(),
                    quality_status=report.status,
                    as_of=info.as_of,
                )
            )
            log.append(
                s,
                "dataset.registered",
                actor.id,
                info.name,
                {**info.to_json(), "partitions": len(info.partitions)},
            )
    except BaseException:
        # Nothing half-registered: the files go if the record does not commit.
        shutil.rmtree(ctx.settings.datasets_dir / info.name, ignore_errors=True)
        raise
    return dataclasses.replace(
        info,
        registered_at=clock.text(registered),
        as_of=info.as_of or registered.date().isoformat(),
    )


def get(ctx: Context, session: Session, name: str) -> DatasetInfo:
    row = session.get(Dataset, name)
    if row is None:
        raise NotFound(f"no dataset named {name!r}; GET /v1/datasets lists them")
    return to_info(ctx, row)


def get_many(
    ctx: Context,
    session: Session,
    names: Iterable[str],
    versions: Mapping[str, Any] | None = None,
) -> dict[str, DatasetInfo]:
    """Each of `names`, as of the version `versions` names (a job's pinned versions) or else
    the version in force; refuses like `get` when one does not exist, and says so when a
    pinned version's files were retired.

    A version never changes (nothing updates its row or its files), so what this process has
    read of one it keeps: every job submission and run asks. Which version is in force is
    read each time (one row per dataset)."""
    wanted = sorted(set(names))
    pinned = dict(versions or {})
    unpinned = [n for n in wanted if n not in pinned]
    if unpinned:
        current: dict[str, int] = {
            name: version
            for name, version in session.execute(
                select(Dataset.name, Dataset.version).where(Dataset.name.in_(unpinned))
            )
        }
        for name in unpinned:
            if name not in current:
                raise NotFound(f"no dataset named {name!r}; GET /v1/datasets lists them")
        pinned.update(current)
    out = {}
    for name in wanted:
        key = (name, int(pinned[name]))
        if key not in ctx.catalog:
            ctx.catalog[key] = _version_info(ctx, session, *key)
        out[name] = ctx.catalog[key]
    return out


def _version_info(ctx: Context, session: Session, name: str, number: int) -> DatasetInfo:
    row = session.get(Dataset, name)
    version = session.get(DatasetVersion, (name, number))
    if row is None or version is None:
        raise NotFound(f"no dataset named {name!r}; GET /v1/datasets lists them")
    if version.retired_at is not None:
        raise VersionRetired(
            f"version {number} of dataset {name!r} was retired on "
            f"{clock.text(version.retired_at)} and its files removed; submit the job again to "
            "read the current version"
        )
    return to_info(ctx, row, version)


def all_datasets(ctx: Context, session: Session) -> list[DatasetInfo]:
    return [to_info(ctx, r) for r in session.scalars(select(Dataset).order_by(Dataset.name))]
