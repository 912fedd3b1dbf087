"""Versions of a dataset: publishing a new one (replacing the rows, or appending to them),
the history of versions, and retiring old versions' files.

A version is a snapshot: its files never change, and a job reads exactly the versions in force
when it was submitted (`jobs.versions`). Publishing writes the files first (catalog.snapshot),
then records the version, makes it the one in force and logs it, in one transaction; if that
fails, the files go. A schema change is reported against the contracts that use the dataset:
a new column is granted by no one until a contract is amended; jobs that use a removed column
are refused, saying so. Older versions' files are kept for `version_retention_days` after
they were superseded, and longer while a queued or running job still reads them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.lifecycle import Status
from operators.roles import Role
from sandbox.catalog import encryption, entities, quality, snapshot
from sandbox.catalog.ingest import ColumnPolicy, disk_space, policy_of, read_file
from sandbox.catalog.models import ColumnInfo, DatasetInfo
from sandbox.common import clock
from sandbox.context import Context
from sandbox.errors import Conflict, Forbidden, IngestError, JobStatus, NotFound, QualityRefused
from sandbox.ledger import log
from sandbox.records import registry
from sandbox.records.principals import Actor
from sandbox.store.models import Contract, Dataset, DatasetVersion, Job

Mode = Literal["replace", "append"]
MODES: tuple[str, ...] = ("replace", "append")
# Contracts in these states still grant what they grant (or will, once signed).
_LIVE = (
    Status.pending_approval,
    Status.approved,
    Status.signed_by_bureau,
    Status.active,
    Status.suspended,
)


@dataclass(frozen=True)
class Published:
    """What publishing a version did, for the response and the log."""

    dataset: str
    version: int
    mode: str
    source: str
    row_count: int
    added_columns: tuple[str, ...]
    removed_columns: tuple[str, ...]
    retyped_columns: tuple[str, ...]
    revised: int  # people whose rows changed since the previous version
    # Contracts that grant a column this version no longer has: their jobs using it are refused.
    affected_contracts: tuple[str, ...]
    created_at: str
    quality: dict[str, Any] | None = None
    quality_status: str = "unchecked"

    def to_json(self) -> dict[str, Any]:
        return {
            **dataclasses.asdict(self),
            "added_columns": list(self.added_columns),
            "removed_columns": list(self.removed_columns),
            "retyped_columns": list(self.retyped_columns),
            "affected_contracts": list(self.affected_contracts),
        }


def may_publish(actor: Actor, row: Dataset) -> None:
    """The bureau, and the department whose dataset it is, publish its versions."""
    if actor.role == Role.bureau or (actor.role == Role.provider and actor.id == row.provider_id):
        return
    raise Forbidden(
        "a new version of a dataset is published by the bureau or by the department that "
        f"owns it; you are {actor.role}"
    )


def owned(ctx: Context, actor: Actor, name: str) -> Dataset:
    """Dataset `name`'s row, for someone who may publish its versions (or refused)."""
    with ctx.reading() as s:
        row = s.get(Dataset, name)
        if row is None:
            raise NotFound(f"no dataset named {name!r}; GET /v1/datasets lists them")
        may_publish(actor, row)
        s.expunge(row)
        return row


def _policy(
    current: DatasetInfo, schema: pa.Schema, declared: Mapping[str, ColumnPolicy]
) -> snapshot.Policy:
    """The policy of the new version: each column as it was, unless declared anew; a new
    column must be declared."""
    known = {c.name: c for c in current.columns}
    out: dict[str, tuple[str, float | None, float | None, str | None]] = {}
    for name in schema.names:
        if name in declared:
            out[name] = policy_of({name: declared[name]}).columns[name]
        elif name in known:
            c = known[name]
            out[name] = (c.role, c.lower, c.upper, c.description)
        else:
            raise IngestError(
                f"column {name!r} is new in this version; declare its role in meta.columns, "
                'e.g. {"columns": {"' + name + '": {"role": "attribute"}}}'
            )
    return snapshot.Policy(out)


def _declared(meta: Mapping[str, Any] | None) -> dict[str, ColumnPolicy]:
    raw = (meta or {}).get("columns") or {}
    if not isinstance(raw, dict):
        raise IngestError("meta.columns must be an object mapping column names to policies")
    try:
        return {str(k): ColumnPolicy.model_validate(v) for k, v in raw.items()}
    except ValueError as e:
        raise IngestError(f"meta.columns: {str(e).splitlines()[-1].strip()}") from None


def _as_of(meta: Mapping[str, Any] | None) -> str | None:
    """The date a new version's data describes, when its meta declares one (YYYY-MM-DD)."""
    raw = (meta or {}).get("as_of")
    if raw is None:
        return None
    try:
        return dt.date.fromisoformat(str(raw)).isoformat()
    except ValueError:
        raise IngestError(
            f"meta.as_of must be the date the data describes, as YYYY-MM-DD (got {raw!r})"
        ) from None


def parse_mode(raw: Any) -> Mode:
    if raw not in MODES:
        raise IngestError(f"mode must be one of {', '.join(MODES)} (got {raw!r})")
    return raw  # type: ignore[no-any-return]


def publish(
    ctx: Context,
    actor: Actor | None,
    name: str,
    batches: Iterable[pa.RecordBatch | pa.Table],
    *,
    mode: Mode = "replace",
    source: str = "upload",
    meta: Mapping[str, Any] | None = None,
    on_batch: Callable[[pa.RecordBatch], None] | None = None,
) -> Published:
    """Write and record a new version of dataset `name` from `batches`. `actor`: who
    publishes it; None for the service itself (a scheduled pull from the dataset's source).
    One version of a dataset is written at a time, by any process of the instance."""
    with _one_at_a_time(ctx, name):
        return _publish(ctx, actor, name, batches, mode, source, meta, on_batch)


@contextmanager
def _one_at_a_time(ctx: Context, name: str) -> Iterator[None]:
    # Two writers of the same next version would write one directory: the second's failure
    # would remove the first's files.
    ctx.settings.datasets_dir.mkdir(parents=True, exist_ok=True)
    with open(ctx.settings.datasets_dir / f".publishing-{name}", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict(
                f"a version of {name!r} is being published right now (an upload or a pull); "
                "try again when it is done"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _publish(
    ctx: Context,
    actor: Actor | None,
    name: str,
    batches: Iterable[pa.RecordBatch | pa.Table],
    mode: Mode,
    source: str,
    meta: Mapping[str, Any] | None,
    on_batch: Callable[[pa.RecordBatch], None] | None,
) -> Published:
    with ctx.reading() as s:
        row = s.get(Dataset, name)
        if row is None:
            raise NotFound(f"no dataset named {name!r}; GET /v1/datasets lists them")
        if actor is not None:
            may_publish(actor, row)
        current = registry.get_many(ctx, s, [name])[name]
    number = current.version + 1
    directory = registry.directory_of(name, number)
    target = ctx.settings.datasets_dir / directory
    declared = _declared(meta)
    as_of = _as_of(meta)
    previous = snapshot.Previous(
        current.columns, current.partitions, current.revisions, current.row_count
    )
    typed = (
        _typed_as_before(raw, current)
        for item in batches
        for raw in (item.to_batches() if isinstance(item, pa.Table) else [item])
    )
    first = next(typed, None)
    if first is None:
        raise IngestError("the data has no rows")
    # The first batch says which columns there are, and so the version's policy.
    policy = _policy(current, first.schema, declared)
    profile = quality.Profile(
        *_profiled(snapshot.declared_columns(first.schema, policy, {}, {}), row)
    )

    def profiled(batch: pa.RecordBatch) -> None:
        profile.add(batch)
        if on_batch is not None:
            on_batch(batch)

    reports: list[quality.QualityReport] = []

    def accept(_: snapshot.Snapshot) -> None:
        report = profile.report()
        if report.status == "refused":
            refuse(ctx, actor, name, number, report)
        reports.append(report)

    registry_of_people = entities.Registry(ctx.settings.datasets_dir / entities.DIRECTORY)
    with disk_space(target):
        written = snapshot.write(
            _chain(first, typed),
            policy,
            target,
            registry_of_people,
            ctx.settings.partition_rows,
            previous=previous,
            append=mode == "append",
            on_batch=profiled,
            accept=accept,
            encrypt=encryption.is_encrypted_level(current.level),
        )
    try:
        return _record(
            ctx,
            actor,
            row.name,
            number,
            directory,
            mode,
            source,
            current,
            written,
            reports[0],
            as_of,
        )
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _profiled(
    columns: tuple[ColumnInfo, ...], row: Dataset
) -> tuple[tuple[ColumnInfo, ...], quality.Rules]:
    """The columns a version is profiled over, and the dataset's rules that still apply (a
    rule on a column the version no longer has is dropped: the schema change says so)."""
    names = {c.name for c in columns}
    raw = dict(row.quality_rules or {})
    for key in ("not_null", "unique", "within_bounds"):
        raw[key] = [c for c in raw.get(key) or () if c in names]
    for key in ("max_null_rate", "check_digits"):
        raw[key] = {c: v for c, v in (raw.get(key) or {}).items() if c in names}
    return columns, quality.parse_rules(raw, columns)


def refuse(
    ctx: Context, actor: Actor | None, name: str, number: int, report: quality.QualityReport
) -> None:
    """A version its quality rules refuse: logged, and said to whoever published it."""
    with ctx.transaction() as s:
        log.append(
            s,
            "dataset.version_refused",
            actor.id if actor is not None else None,
            name,
            {"version": number, "quality": report.to_json()},
        )
    reasons = "; ".join(f.message for f in report.failures)
    raise QualityRefused(
        f"version {number} of {name!r} was refused by the dataset's quality rules and "
        f"nothing changed: {reasons}. Correct the data, or change the rules "
        f"(PUT /v1/datasets/{name}/quality-rules)"
    )


def _typed_as_before(batch: pa.RecordBatch, current: DatasetInfo) -> pa.RecordBatch:
    """A column with no value in this batch (a CSV column left empty) has no type of its
    own: it takes the type the current version gives it."""
    known = {c.name: c.type for c in current.columns}
    fields = [
        pa.field(f.name, pa.type_for_alias(known[f.name]))
        if pa.types.is_null(f.type) and f.name in known and _has_alias(known[f.name])
        else f
        for f in batch.schema
    ]
    schema = pa.schema(fields)
    return batch if schema == batch.schema else batch.cast(schema)


def _has_alias(type_name: str) -> bool:
    try:
        pa.type_for_alias(type_name)
    except ValueError:
        return False
    return True


def _chain(first: pa.RecordBatch, rest: Iterable[pa.RecordBatch]) -> Iterable[pa.RecordBatch]:
    yield first
    yield from rest


def _record(
    ctx: Context,
    actor: Actor | None,
    name: str,
    number: int,
    directory: str,
    mode: str,
    source: str,
    current: DatasetInfo,
    written: snapshot.Snapshot,
    report: quality.QualityReport,
    as_of: str | None,
) -> Published:
    before = {c.name: c.type for c in current.columns}
    after = {c.name: c.type for c in written.columns}
    removed = tuple(sorted(set(before) - set(after)))
    retyped = tuple(sorted(n for n in set(before) & set(after) if before[n] != after[n]))
    now = clock.stored(clock.now())
    with ctx.transaction() as s:
        row = s.get(Dataset, name, with_for_update=True)
        assert row is not None
        if row.version != current.version:
            raise IngestError(
                f"another version of {name!r} was published meanwhile (now version "
                f"{row.version}); publish again on top of it"
            )
        affected = _affected(s, name, set(removed) | set(retyped))
        s.add(
            DatasetVersion(
                dataset=name,
                version=number,
                mode=mode,
                source=source,
                directory=directory,
                partitions=list(written.partitions),
                columns=[c.to_record() for c in written.columns],
                row_count=written.row_count,
                created_at=now,
                created_by=actor.id if actor is not None else None,
                revisions=written.revisions,
                quality=report.to_json(),
                quality_status=report.status,
                as_of=as_of,
            )
        )
        superseded = s.get(DatasetVersion, (name, current.version))
        if superseded is not None:
            superseded.superseded_at = now
        row.version = number
        row.columns = [c.to_record() for c in written.columns]
        row.partitions = list(written.partitions)
        row.row_count = written.row_count
        row.created_at = now
        row.as_of = as_of
        published = Published(
            name,
            number,
            mode,
            source,
            written.row_count,
            tuple(sorted(set(after) - set(before))),
            removed,
            retyped,
            written.revised,
            affected,
            clock.text(now),
            report.to_json(),
            report.status,
        )
        s.flush()
        log.append(
            s,
            "dataset.version_published",
            actor.id if actor is not None else None,
            name,
            published.to_json(),
        )
    return published


def _affected(session: Session, name: str, gone: set[str]) -> tuple[str, ...]:
    if not gone:
        return ()
    out = []
    for contract_id, document in session.execute(
        select(Contract.id, Contract.document).where(Contract.status.in_(_LIVE))
    ):
        granted = (document.get("datasets") or {}).get(name) or {}
        if gone & set(granted):
            out.append(contract_id)
    return tuple(sorted(out))


def history(ctx: Context, session: Session, name: str) -> list[dict[str, Any]]:
    """Every version of `name`, newest first."""
    if session.get(Dataset, name) is None:
        raise NotFound(f"no dataset named {name!r}; GET /v1/datasets lists them")
    rows = session.scalars(
        select(DatasetVersion)
        .where(DatasetVersion.dataset == name)
        .order_by(DatasetVersion.version.desc())
    )
    return [version_json(v) for v in rows]


def version_json(v: DatasetVersion, *, quality: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "dataset": v.dataset,
        "version": v.version,
        "mode": v.mode,
        "source": v.source,
        "row_count": v.row_count,
        "columns": [c["name"] for c in v.columns],
        "created_at": clock.text(v.created_at),
        "created_by": v.created_by,
        "quality_status": v.quality_status,
        "superseded_at": clock.text(v.superseded_at) if v.superseded_at else None,
        "retired_at": clock.text(v.retired_at) if v.retired_at else None,
    }
    if quality:
        body["quality"] = v.quality
    return body


def retire(ctx: Context, at: dt.datetime | None = None) -> list[tuple[str, int]]:
    """Remove the files of versions superseded more than the retention ago that no queued or
    running job reads; returns the versions retired."""
    now = clock.stored(at or clock.now())
    cutoff = now - dt.timedelta(days=ctx.settings.version_retention_days)
    with ctx.reading() as s:
        due = s.scalars(
            select(DatasetVersion).where(
                DatasetVersion.superseded_at.is_not(None),
                DatasetVersion.superseded_at <= cutoff,
                DatasetVersion.retired_at.is_(None),
            )
        ).all()
        if not due:
            return []
        pinned = {
            (name, int(number))
            for versions in s.scalars(
                select(Job.versions).where(
                    Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.HELD))
                )
            )
            for name, number in (versions or {}).items()
        }
        candidates = [(v.dataset, v.version, v.directory) for v in due]
    retired = []
    for name, number, directory in candidates:
        if (name, number) in pinned:
            continue
        with ctx.transaction() as s:
            version = s.get(DatasetVersion, (name, number))
            if version is None or version.retired_at is not None:
                continue
            version.retired_at = now
            log.append(s, "dataset.version_retired", None, name, {"version": number})
        _remove_files(ctx, directory, name, number)
        retired.append((name, number))
    return retired


def _remove_files(ctx: Context, directory: str, name: str, number: int) -> None:
    path = ctx.settings.datasets_dir / directory
    if number == 1 and directory == name:
        # The first version lives in the dataset's own directory; later ones beside it.
        for part in path.glob("part-*.parquet"):
            part.unlink(missing_ok=True)
            encryption.key_material(part).unlink(missing_ok=True)
        return
    shutil.rmtree(path, ignore_errors=True)


def publish_upload(
    ctx: Context, actor: Actor, name: str, data: bytes, filename: str, meta: Any
) -> Published:
    """A new version from an uploaded CSV or Parquet file; `meta`: {mode, columns?, as_of?}."""
    if not isinstance(meta, dict):
        raise IngestError('meta must be a JSON object: {"mode": "replace" | "append", …}')
    unknown = sorted(set(meta) - {"mode", "columns", "as_of"})
    if unknown:
        raise IngestError(
            f"meta has unknown field {unknown[0]!r}; it takes mode, columns and as_of"
        )
    if len(data) > ctx.settings.max_upload_mb * 2**20:
        raise IngestError(f"the file is larger than {ctx.settings.max_upload_mb} MiB")
    mode = parse_mode(meta.get("mode", "replace"))
    table = read_file(data, filename)
    published = publish(ctx, actor, name, [table], mode=mode, source="upload", meta=meta)
    retire(ctx)
    return published


def sees_quality(actor: Actor, row: Dataset) -> bool:
    """Quality is the bureau's and the owning department's business only."""
    return actor.role == Role.bureau or (
        actor.role == Role.provider and actor.id == row.provider_id
    )


def view_history(ctx: Context, actor: Actor, name: str) -> list[dict[str, Any]]:
    with ctx.reading() as s:
        row = s.get(Dataset, name)
        if row is None:
            raise NotFound(f"no dataset named {name!r}; GET /v1/datasets lists them")
        owner = sees_quality(actor, row)
        return [_visible(b, owner) for b in history(ctx, s, name)]


def view_version(ctx: Context, actor: Actor, name: str, number: int) -> dict[str, Any]:
    with ctx.reading() as s:
        row = s.get(Dataset, name)
        version = s.get(DatasetVersion, (name, number))
        if row is None or version is None:
            raise NotFound(
                f"dataset {name!r} has no version {number}; "
                f"GET /v1/datasets/{name}/versions lists them"
            )
        owner = sees_quality(actor, row)
        return _visible(version_json(version, quality=owner), owner)


def _visible(body: dict[str, Any], owner: bool) -> dict[str, Any]:
    if owner:
        return body
    return {k: v for k, v in body.items() if k not in ("quality", "quality_status", "created_by")}


def set_rules(ctx: Context, actor: Actor, name: str, raw: Any) -> dict[str, Any]:
    """The dataset's quality rules, checked at every later version."""
    owned(ctx, actor, name)
    with ctx.transaction() as s:
        row = s.get(Dataset, name)
        assert row is not None
        info = registry.to_info(ctx, row)
        rules = quality.parse_rules(raw, info.columns)
        row.quality_rules = rules.model_dump(mode="json")
        log.append(s, "dataset.quality_rules", actor.id, name, row.quality_rules)
        return dict(row.quality_rules)
