"""Writing one version of a dataset from a stream of record batches.

An upload is one batch; a department's database arrives in many (catalog.sources). Batch by
batch the rows get their people's numbers (catalog.entities), are written as Parquet
partitions of `partition_rows` rows into a temporary directory, and are profiled; at the end
the people whose rows changed since the previous version are found (catalog.revisions) and the
directory is moved into place with one rename. Memory is bounded by a partition's rows plus
16 bytes per row (each row's person and content hash), never by the data's width; a failure
anywhere leaves nothing behind, in the directory or in the registry of people.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sandbox.catalog import encryption, revisions
from sandbox.catalog.entities import Numbering, Registry
from sandbox.catalog.models import ENTITY, ROLES, ColumnInfo
from sandbox.common.hashing import key_hash
from sandbox.errors import IngestError

# Rows per Parquet row group: the unit a filtered scan can skip by its statistics (a whole
# partition in one group could only be read or skipped entirely).
ROW_GROUP_ROWS = 128 * 1024
# Distinct values of a quasi-identifier counted exactly up to this many: past it, the count
# only has to say "too many to group by raw" (engine.validate.MAX_RAW_QUASI_GROUPS).
DISTINCT_CAP = 1 << 20


class Policy:
    """What the version's columns are declared to be: role, bounds and description."""

    def __init__(self, columns: Mapping[str, tuple[str, float | None, float | None, str | None]]):
        self.columns = dict(columns)


@dataclass(frozen=True)
class Previous:
    """The version a new one follows: its columns, its files, its revisions file, and how
    many rows it holds (an appended version holds those and the new ones)."""

    columns: tuple[ColumnInfo, ...]
    partitions: tuple[str, ...]
    revisions: str | None
    row_count: int


@dataclass(frozen=True)
class Snapshot:
    row_count: int
    columns: tuple[ColumnInfo, ...]
    partitions: tuple[str, ...]  # file names in the version's directory
    revisions: str | None  # file name in the version's directory
    revised: int  # people whose rows changed since the previous version


def check_columns(schema: pa.Schema, policy: Policy) -> None:
    names = schema.names
    if len(set(names)) != len(names):
        raise IngestError("the file has duplicate column names")
    if ENTITY in names:
        raise IngestError(f"column name {ENTITY!r} is reserved; rename that column")
    unknown = [c for c in policy.columns if c not in names]
    if unknown:
        raise IngestError(
            f"the policy names column {unknown[0]!r}, which is not in the data; "
            f"data columns: {', '.join(names)}"
        )
    missing = [c for c in names if c not in policy.columns]
    if missing:
        raise IngestError(
            f"column {missing[0]!r} has no role in the policy; give every column "
            f"one of: {', '.join(ROLES)}"
        )
    for name in names:
        role, lower, upper, _ = policy.columns[name]
        typ = schema.field(name).type
        numeric = pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ)
        if (lower is not None or upper is not None) and not numeric:
            raise IngestError(
                f"column {name!r} has bounds but is of type {typ}; bounds apply "
                "to numeric columns only"
            )
        if lower is not None and upper is not None and lower > upper:
            raise IngestError(f"column {name!r}: lower bound is above upper bound")
        if pa.types.is_null(typ):
            raise IngestError(f"column {name!r} is empty in every row; remove it or fill it")


class _Distinct:
    """Distinct values of one column, by hash, counted up to DISTINCT_CAP."""

    def __init__(self) -> None:
        self.seen = np.zeros(0, np.uint64)

    def add(self, column: pa.Array) -> None:
        if len(self.seen) > DISTINCT_CAP:
            return
        valid = column.drop_null()
        if len(valid):
            self.seen = np.union1d(self.seen, key_hash(valid))

    @property
    def count(self) -> int:
        return len(self.seen)


class _Unique:
    """Whether an identifier column names every row and no two alike (one row per person):
    what differential privacy and the join rules rely on (ColumnInfo.unique)."""

    def __init__(self) -> None:
        self.hashes: list[np.ndarray] = []
        self.nulls = 0

    def add(self, column: pa.Array | pa.ChunkedArray) -> None:
        self.nulls += column.null_count
        if not self.nulls:
            self.hashes.append(key_hash(_whole(column)))

    @property
    def unique(self) -> bool:
        if self.nulls:
            return False
        every = np.concatenate(self.hashes) if self.hashes else np.zeros(0, np.uint64)
        return bool(len(np.unique(every)) == len(every))


def _whole(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


class _ByContent:
    """People of a dataset without an identifier, followed from one version to the next by
    their rows' content: a row the previous version had keeps its number; identical rows are
    one person (fewer, larger contributors: the cautious side of every rule)."""

    def __init__(self, previous: revisions.Digests, numbering: Numbering) -> None:
        self._hashes, self._numbers = previous.sums, previous.entities  # sums: row hashes here
        order = np.argsort(self._hashes, kind="stable")
        self._hashes, self._numbers = self._hashes[order], self._numbers[order]
        self._numbering = numbering

    def number(self, hashes: np.ndarray) -> pa.Array:
        distinct, which = np.unique(hashes, return_inverse=True)
        at = np.minimum(np.searchsorted(self._hashes, distinct), max(len(self._hashes) - 1, 0))
        found = (self._hashes[at] == distinct) if len(self._hashes) else np.zeros(0, bool)
        numbers = np.where(found, self._numbers[at] if len(self._hashes) else 0, np.uint64(0))
        fresh = np.flatnonzero(~found)
        numbers[fresh] = self._numbering.fresh(len(fresh))
        all_hashes = np.concatenate([self._hashes, distinct[fresh]])
        order = np.argsort(all_hashes, kind="stable")
        self._hashes = all_hashes[order]
        self._numbers = np.concatenate([self._numbers, numbers[fresh]]).astype(np.uint64)[order]
        return pa.array(numbers.astype(np.uint64)[which], pa.uint64())


def _rows_by_content(paths: Iterable[str], columns: tuple[str, ...]) -> revisions.Digests:
    """A previous version's rows as (person, row hash) pairs, one per distinct row."""
    entities, hashes = [], []
    for path in paths:
        table = pq.read_table(
            path, columns=[*columns, ENTITY], decryption_properties=encryption.decryption_for(path)
        )
        entities.append(table.column(ENTITY).to_numpy().astype(np.uint64))
        hashes.append(revisions.row_hashes(table, columns))
    if not entities:
        return revisions.Digests(np.zeros(0, np.uint64), np.zeros(0, np.uint64))
    e, h = np.concatenate(entities), np.concatenate(hashes)
    _, first = np.unique(h, return_index=True)
    return revisions.Digests(e[first], h[first])


class _Partitions:
    """Rows gathered into partitions of `partition_rows`, each written when full."""

    def __init__(
        self, directory: Path, partition_rows: int, start: int, encrypt: bool = False
    ) -> None:
        self._dir, self._rows, self._next = directory, partition_rows, start
        self._encrypt = encrypt
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self.names: list[str] = []

    def add(self, batch: pa.RecordBatch) -> None:
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        while self._pending_rows >= self._rows:
            table = pa.Table.from_batches(self._pending)
            self._write(table.slice(0, self._rows))
            rest = table.slice(self._rows)
            self._pending = rest.to_batches()
            self._pending_rows = rest.num_rows

    def close(self) -> None:
        if self._pending_rows:
            self._write(pa.Table.from_batches(self._pending))
        self._pending, self._pending_rows = [], 0

    def _write(self, table: pa.Table) -> None:
        name = f"part-{self._next:05d}.parquet"
        path = self._dir / name
        pq.write_table(
            table,
            path,
            row_group_size=ROW_GROUP_ROWS,
            # Checked on every read (engine.prune): damage on disk is found, not computed.
            write_page_checksum=True,
            # Entity numbers run mostly in steps of one: delta-encoded they take a few bytes
            # per thousand rows instead of eight per row, and read five times faster.
            use_dictionary=[c for c in table.column_names if c != ENTITY],
            column_encoding={ENTITY: "DELTA_BINARY_PACKED"},
            encryption_properties=encryption.encryption_for(path) if self._encrypt else None,
        )
        self.names.append(name)
        self._next += 1


def _as_batches(item: pa.RecordBatch | pa.Table) -> list[pa.RecordBatch]:
    return item.to_batches() if isinstance(item, pa.Table) else [item]


def write(
    batches: Iterable[pa.RecordBatch | pa.Table],
    policy: Policy,
    target: Path,
    registry: Registry,
    partition_rows: int,
    *,
    previous: Previous | None = None,
    append: bool = False,
    on_batch: Callable[[pa.RecordBatch], None] | None = None,
    accept: Callable[[Snapshot], None] | None = None,
    encrypt: bool = False,
) -> Snapshot:
    """Write a version into the new directory `target` (see the module's description).
    `accept` sees the finished snapshot before it is kept: if it raises, nothing is.
    `encrypt` writes the partitions encrypted (L3/L4 data, see `catalog.encryption`)."""
    if target.exists():
        raise IngestError(f"a dataset directory already exists at {target.name!r}")
    tmp = target.parent / f".tmp-{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    try:
        with registry.session() as numbering:
            snapshot = _write(
                batches, policy, tmp, numbering, partition_rows, previous, append, on_batch, encrypt
            )
            if accept is not None:
                accept(snapshot)
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return snapshot


def _write(
    batches: Iterable[pa.RecordBatch | pa.Table],
    policy: Policy,
    tmp: Path,
    numbering: Numbering,
    partition_rows: int,
    previous: Previous | None,
    append: bool,
    on_batch: Callable[[pa.RecordBatch], None] | None,
    encrypt: bool = False,
) -> Snapshot:
    carried: list[str] = []
    if append:
        assert previous is not None
        # The rows already published stay as they are: linked, not copied.
        for i, path in enumerate(previous.partitions):
            name = f"part-{i:05d}.parquet"
            os.link(path, tmp / name)
            # An encrypted partition keeps its wrapped keys beside it, under its new name.
            material = encryption.key_material(Path(path))
            if material.exists():
                shutil.copyfile(material, encryption.key_material(tmp / name))
            carried.append(name)
    parts = _Partitions(tmp, partition_rows, len(carried), encrypt)
    schema: pa.Schema | None = None
    named_by: str | None = None
    content: tuple[str, ...] = ()
    by_content: _ByContent | None = None
    distinct: dict[str, _Distinct] = {}
    uniques: dict[str, _Unique] = {}
    entities: list[np.ndarray] = []
    hashes: list[np.ndarray] = []
    rows = 0
    for item in batches:
        for batch in _as_batches(item):
            if schema is None:
                schema = batch.schema
                check_columns(schema, policy)
                if append:
                    _check_append(schema, previous)
                named_by = next(
                    (n for n in schema.names if policy.columns[n][0] == "identifier"), None
                )
                distinct = {
                    n: _Distinct()
                    for n in schema.names
                    if policy.columns[n][0] == "quasi_identifier"
                }
                uniques = {
                    n: _Unique() for n in schema.names if policy.columns[n][0] == "identifier"
                }
                if append:
                    assert previous is not None
                    for path in previous.partitions:
                        old = pq.read_table(
                            path,
                            columns=[*distinct, *uniques],
                            decryption_properties=encryption.decryption_for(path),
                        )
                        for name, counter in distinct.items():
                            counter.add(_whole(old.column(name)))
                        for name, tracker in uniques.items():
                            tracker.add(old.column(name))
                infos = declared_columns(schema, policy, {}, {})
                if previous is not None:
                    content = revisions.content_columns(previous.columns, infos)
                    if named_by is None and not append:
                        by_content = _ByContent(
                            _rows_by_content(previous.partitions, content), numbering
                        )
            elif batch.schema != schema:
                batch = _conform(batch, schema)
            if not batch.num_rows:
                continue
            if by_content is not None:
                row_hash = revisions.row_hashes(batch, content)
                numbers = by_content.number(row_hash)
            else:
                numbers = numbering.number(
                    batch.column(named_by) if named_by else None, batch.num_rows
                )
            if named_by is not None or previous is not None:
                entities.append(numbers.to_numpy().astype(np.uint64))
            if previous is not None:
                hashes.append(revisions.row_hashes(batch, content))
            for name, counter in distinct.items():
                counter.add(batch.column(name))
            for name, tracker in uniques.items():
                tracker.add(batch.column(name))
            if on_batch is not None:
                on_batch(batch)
            parts.add(
                pa.RecordBatch.from_arrays([*batch.columns, numbers], [*schema.names, ENTITY])
            )
            rows += batch.num_rows
    if schema is None or rows == 0:
        raise IngestError("the data has no rows" if not append else "there are no rows to append")
    parts.close()
    people = np.concatenate(entities) if entities else np.zeros(0, np.uint64)
    entities.clear()
    infos = declared_columns(
        schema,
        policy,
        {n: d.count for n, d in distinct.items()},
        {n: u.unique for n, u in uniques.items()},
    )
    revised_count, revisions_file = 0, None
    if previous is not None:
        revised_count, revisions_file = _revise(
            previous, content, people, np.concatenate(hashes), numbering, tmp, append
        )
    return Snapshot(
        rows + (previous.row_count if append and previous else 0),
        infos,
        tuple(carried + parts.names),
        revisions_file,
        revised_count,
    )


def _check_append(schema: pa.Schema, previous: Previous | None) -> None:
    assert previous is not None
    before = [(c.name, c.type) for c in previous.columns]
    now = [(f.name, str(f.type)) for f in schema]
    if before != now:
        raise IngestError(
            "appended rows must have the columns of the current version, in order and of the "
            f"same types ({', '.join(f'{n} {t}' for n, t in before)}); publish a replacing "
            "version to change the columns"
        )


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    if batch.schema.names != schema.names:
        raise IngestError("a batch of the data has other columns than the first one")
    try:
        return batch.cast(schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise IngestError("a batch of the data has other column types than the first one") from None


def declared_columns(
    schema: pa.Schema, policy: Policy, distinct: Mapping[str, int], unique: Mapping[str, bool]
) -> tuple[ColumnInfo, ...]:
    out = []
    for field in schema:
        role, lower, upper, description = policy.columns[field.name]
        out.append(
            ColumnInfo(
                field.name,
                str(field.type),
                role,  # type: ignore[arg-type]
                lower,
                upper,
                distinct.get(field.name) if role == "quasi_identifier" else None,
                unique.get(field.name) if role == "identifier" else None,
                description,
            )
        )
    return tuple(out)


def _revise(
    previous: Previous,
    content: tuple[str, ...],
    people: np.ndarray,
    hashes: np.ndarray,
    numbering: Numbering,
    directory: Path,
    append: bool,
) -> tuple[int, str | None]:
    old = revisions.digests_of_files(previous.partitions, content)
    new = revisions.Digests.of(people, hashes)
    if append:
        new = revisions.Digests.join([old, new])
    revised = revisions.changed(old, new)
    before = (
        revisions.load(previous.revisions) if previous.revisions else revisions.Revisions.empty()
    )
    now = before.updated(revised, numbering.fresh(len(revised)))
    return len(revised), (now.save(directory) if len(now) else None)
