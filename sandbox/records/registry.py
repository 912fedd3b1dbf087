"""Datasets in the database: register (ingest + record + log), list, look up."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from operators.roles import Role
from sandbox.catalog.ingest import ingest, parse_meta
from sandbox.catalog.models import ColumnInfo, DatasetInfo
from sandbox.common import clock
from sandbox.context import Context
from sandbox.errors import Conflict, IngestError, NotFound
from sandbox.ledger import log
from sandbox.records.principals import Actor, require
from sandbox.store.models import Dataset, DatasetVersion, Principal


def to_info(ctx: Context, row: Dataset) -> DatasetInfo:
    base = ctx.settings.datasets_dir / row.name
    return DatasetInfo(
        row.name,
        row.title,
        row.provider_id,
        row.level,
        row.row_count,
        tuple(ColumnInfo(**c) for c in row.columns),
        tuple(str(base / p) for p in row.partitions),
        row.topic,
        row.description,
        clock.text(row.created_at) if row.created_at else None,
    )


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
    info = ingest(data, filename, meta, ctx.settings.datasets_dir, ctx.settings.partition_rows)
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
    return dataclasses.replace(info, registered_at=clock.text(registered))


def get(ctx: Context, session: Session, name: str) -> DatasetInfo:
    row = session.get(Dataset, name)
    if row is None:
        raise NotFound(f"no dataset named {name!r}; GET /v1/datasets lists them")
    return to_info(ctx, row)


def get_many(ctx: Context, session: Session, names: Iterable[str]) -> dict[str, DatasetInfo]:
    """Each of `names`; refuses like `get` when one does not exist.

    A registered dataset never changes (nothing updates or removes its row or its files),
    so what this process has read once it keeps: every job submission and run asks."""
    wanted = sorted(set(names))
    missing = [name for name in wanted if name not in ctx.catalog]
    if missing:
        rows = {
            r.name: r for r in session.scalars(select(Dataset).where(Dataset.name.in_(missing)))
        }
        for name in missing:
            if name not in rows:
                raise NotFound(f"no dataset named {name!r}; GET /v1/datasets lists them")
            ctx.catalog[name] = to_info(ctx, rows[name])
    return {name: ctx.catalog[name] for name in wanted}


def all_datasets(ctx: Context, session: Session) -> list[DatasetInfo]:
    return [to_info(ctx, r) for r in session.scalars(select(Dataset).order_by(Dataset.name))]
