"""Joins across datasets, distributed and memory-bounded.

A plan is cut into *pieces*: descriptions of how one task builds one partition of a table
(read a Parquet file, apply filter/derive/select steps, join with other partitions). A
piece's inputs that other tasks computed are passed to its task as arguments, so the
scheduler starts it only once they exist and nothing waits inside a task.

Each join picks one of three strategies, from the catalog and the partitions' footers:

- **broadcast** when the right side is small (at most `BROADCAST_MAX_ROWS` rows read):
  its partitions are computed by one task each and concatenated once; every left partition
  is joined against that one shared table inside the task that goes on to aggregate it;
- **cut by entity numbers** when the key is, on both sides, the identifier that numbered
  their people (catalog.entities: equal values have equal numbers) and the right side's
  partitions hold ranges of numbers apart (as ingest leaves a table numbered in one pass):
  the left partitions are split by those ranges, and one task per right partition reads it
  where it lies and joins the left rows of its range, matching numbers and then comparing
  the keys of the pairs found. Only the left side's rows move;
- **partitioned hash join** otherwise: both sides are split into P buckets by a hash of the
  key (one task per partition, P results each), and one task per bucket joins the bucket's
  pieces of both sides and carries on.

Left-deep chains (a.join(b).join(c)) compose: a later join's left side is the earlier join's
pieces, still unmaterialised. The primary (left-most) table keeps its row ids through every
join; other tables never get any, since a cell's contributors are the primary's rows.

A left join keeps the left rows that match nothing, their right columns (entity columns
included) null; an anti join keeps only those, with the left columns alone. Who counts for
such rows is decided with the disclosure statistics (engine.protection).

A plan without joins is the simplest case: one task per partition of its table, or, when
the partitions outnumber the CPUs that run them, one task per CPU reading consecutive
partitions (`batches`). `run` drives everything through a `Runner`: in-process (a loop) or
Ray (tasks), the same functions either way.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sandbox.catalog.models import ENTITY
from sandbox.common.hashing import U64, K, is_text, is_time, key_hash, mix
from sandbox.engine import compute, protection, prune, simplify
from sandbox.engine.validate import CheckedPlan
from sandbox.language import plan as p

# Right sides reading at most this many rows (catalog row counts, before filters) are
# broadcast; larger ones are hash-partitioned. A constant, not a setting: it is about the
# memory of one worker, not about a deployment's policy.
BROADCAST_MAX_ROWS = 2_000_000
# Buckets of a partitioned join: as many as the larger side has partitions, at most this.
MAX_BUCKETS = 256

READS_KEY = b"rows_by_scan"


# --- pieces -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Read:
    """Partition `index` of the plan's read number `scan`."""

    scan: int
    index: int
    # Predicates on the read's own columns that rows must satisfy (applied later; here they
    # only let the read skip row groups), and whether the read may use the scan cache.
    where: tuple[p.Expr, ...] = ()
    cached: bool = False
    # …and how many bytes of tables the process that reads it keeps (cache.fetch's
    # `keep_bytes`; 0: none).
    keep_bytes: int = 0


@dataclass(frozen=True)
class Input:
    """The task's input number `index`: a table another task computed."""

    index: int


@dataclass(frozen=True)
class Concat:
    inputs: tuple[int, ...]


@dataclass(frozen=True)
class Steps:
    """Filter/derive/select steps, bottom-up, applied to what `base` builds."""

    base: Piece
    steps: tuple[p.Node, ...]


@dataclass(frozen=True)
class JoinPieces:
    left: Piece
    right: Piece
    on: tuple[str, ...]
    # The right side's key is unique (an identifier the catalog recorded as one row each):
    # every left row matches at most one right row, found by a lookup.
    unique_right: bool = False
    how: str = "inner"
    # (left, right) entity-number columns, when the key is the identifier that numbered both
    # sides' people (see `Planner._entity_bounds`): equal keys have equal numbers, so rows are
    # matched on the numbers and only the pairs found compare their keys.
    entities: tuple[str, str] | None = None


Piece = Read | Input | Concat | Steps | JoinPieces
Reads = dict[int, int]  # scan position → rows read from its files


def build(checked: CheckedPlan, piece: Piece, inputs: Sequence[pa.Table]) -> tuple[pa.Table, Reads]:
    """The table one piece describes, and the rows this call read from each scan."""
    if isinstance(piece, Read):
        read = checked.reads[piece.scan]
        path = read.dataset.partitions[piece.index]
        table = compute.read_partition(
            checked, piece.scan, piece.index, piece.where, piece.cached, piece.keep_bytes
        )
        if len(checked.reads) > 1:
            # Arrow's joins, and the key hashes here, take plain values, not dictionaries.
            table = compute.plain_table(table)
        # Metered: every row of the partition, read or skipped — what the quote covers.
        return table, {piece.scan: prune.footer(path).num_rows}
    if isinstance(piece, Input):
        return inputs[piece.index], {}
    if isinstance(piece, Concat):
        tables = [compute.plain_table(inputs[i]) for i in piece.inputs]
        return pa.concat_tables(tables, promote_options="permissive"), {}
    if isinstance(piece, Steps):
        table, reads = build(checked, piece.base, inputs)
        return compute.apply_steps(piece.steps, table), reads
    left, left_reads = build(checked, piece.left, inputs)
    right, right_reads = build(checked, piece.right, inputs)
    joined = join_tables(left, right, piece.on, piece.unique_right, piece.how, piece.entities)
    return joined, _add(left_reads, right_reads)


def _add(a: Reads, b: Reads) -> Reads:
    return {k: a.get(k, 0) + b.get(k, 0) for k in sorted({*a, *b})}


# --- joining two tables -----------------------------------------------------------------


def join_tables(
    left: pa.Table,
    right: pa.Table,
    on: Sequence[str],
    unique_right: bool = False,
    how: str = "inner",
    entities: tuple[str, str] | None = None,
) -> pa.Table:
    """Equality join with SQL's semantics: a null key matches nothing, numbers compare as
    numbers whatever their width. Deterministic (single-threaded), left columns first.
    `unique_right`: the right side has at most one row per key (see `_lookup_join`).
    `how`: "inner", "left" (unmatched left rows kept, right columns null) or "anti" (only
    the unmatched left rows, left columns only). `entities`: see `JoinPieces`."""
    keys = list(on)
    # Bands (bucket()) are dictionaries even here; Arrow's join takes plain values.
    left, right = compute.plain_table(left), compute.plain_table(right)
    right = _non_null_keys(right, keys)
    if how == "inner":
        left = _non_null_keys(left, keys)
    for k in keys:
        lt, rt = left.schema.field(k).type, right.schema.field(k).type
        if lt != rt:
            common = _common_type(lt, rt)
            left = _cast_column(left, k, common)
            right = _cast_column(right, k, common)
    if how == "anti":
        return left.filter(pc.invert(_matched(left, right, keys)))
    if unique_right and len(keys) == 1:
        if entities is not None:
            where = _entity_matches(left, right, keys[0], entities)
            if where is not None:
                return _gathered(left, right, keys[0], where, keep_unmatched=how == "left")
        return _lookup_join(left, right, keys[0], keep_unmatched=how == "left")
    # Arrow's join carries no columns of the null type; they hold nothing, so re-add them.
    empty = [
        (c, side)
        for side in (left, right)
        for c in side.column_names
        if c not in keys and pa.types.is_null(side.schema.field(c).type)
    ]
    left = left.drop_columns([c for c, side in empty if side is left])
    right = right.drop_columns([c for c, side in empty if side is right])
    # Arrow's outer join gives an unmatched left row's key from the left: coalesced keys.
    outer = how == "left"
    if right.num_rows <= left.num_rows:
        joined = left.join(
            right,
            keys=keys,
            join_type="left outer" if outer else "inner",
            use_threads=False,
            coalesce_keys=True,
        )
    else:
        # Arrow builds its hash table on the second table: building on the smaller side is
        # several times faster, as when a partition meets a large broadcast table.
        joined = right.join(
            left,
            keys=keys,
            join_type="right outer" if outer else "inner",
            use_threads=False,
            coalesce_keys=True,
        )
        joined = joined.select(
            [*left.column_names, *(c for c in right.column_names if c not in keys)]
        )
    for c, _ in empty:
        joined = joined.append_column(c, pa.nulls(joined.num_rows))
    return joined


def _lookup_join(
    left: pa.Table, right: pa.Table, key: str, keep_unmatched: bool = False
) -> pa.Table:
    """The join when each key has at most one right row: every left row looks its key up
    among the right keys (one hash table of them) and takes that row's columns. About twice
    as fast as a general hash join here, and the result keeps the left rows' order.
    `keep_unmatched`: a left join, whose unmatched rows take nulls (a null index takes one)."""
    if left.num_rows >= VECTORISED_MIN_ROWS and right.num_rows >= VECTORISED_MIN_RIGHT_ROWS:
        return _vectorised_lookup(left, right, key, keep_unmatched)
    where = pc.index_in(
        left.column(key), value_set=compute.contiguous(right.column(key)), skip_nulls=True
    )
    return _gathered(left, right, key, where, keep_unmatched)


def _entity_matches(
    left: pa.Table, right: pa.Table, key: str, entities: tuple[str, str]
) -> pa.Array | None:
    """Each left row's right row (null: none), found by entity number: the right side's
    numbers index an array over their range, every left number looks itself up there, and
    the pairs found compare their keys, since two values whose hashes collide share a number.
    None when the numbers cannot index the rows: two right rows share one (such a collision),
    or they are too sparse for an array over their range; the caller matches keys instead."""
    numbers = _entity_numbers(right, entities[1])
    if numbers is None:
        return None
    lo = int(numbers.min()) if len(numbers) else 0
    span = int(numbers.max()) - lo + 1 if len(numbers) else 0
    if span > 4 * len(numbers) + 4096:
        return None
    index = np.full(span, -1, np.int64)
    index[numbers - lo] = np.arange(len(numbers))
    if len(numbers) and np.count_nonzero(index >= 0) != len(numbers):
        return None
    wanted = _entity_numbers(left, entities[0])
    if wanted is None:
        return None
    match = np.full(left.num_rows, -1, np.int64)
    inside = np.flatnonzero((wanted >= lo) & (wanted < lo + span))
    match[inside] = index[wanted[inside] - lo]
    found = np.flatnonzero(match >= 0)
    if len(found):
        same = pc.equal(
            left.column(key).take(found) if len(found) < left.num_rows else left.column(key),
            right.column(key).take(match[found]),
        )
        differ = ~compute.contiguous(pc.fill_null(same, False)).to_numpy(zero_copy_only=False)
        match[found[differ]] = -1
    return pa.array(match, mask=match < 0)


def _entity_numbers(table: pa.Table, name: str) -> np.ndarray | None:
    """A table's entity numbers as int64 (None when some are missing: no number to match)."""
    column = compute.contiguous(table.column(name))
    if column.null_count:
        return None
    return np.asarray(column.to_numpy(zero_copy_only=False)).astype(np.int64, copy=False)


def _gathered(
    left: pa.Table, right: pa.Table, key: str, where: pa.Array, keep_unmatched: bool
) -> pa.Table:
    """The lookup's result from `where`, each left row's right row (null: none): the left
    rows that matched (all of them when `keep_unmatched`), then the right side's columns."""
    if keep_unmatched or not where.null_count:
        # Every left row kept (a left join, or every key found): no copy of the left side.
        joined, found = left, where
    else:
        rows = pc.indices_nonzero(pc.is_valid(where))
        joined = left.take(rows)
        found = pc.take(where, rows)
    for name in right.column_names:
        if name != key:
            joined = joined.append_column(name, right.column(name).take(found))
    return joined


# From this many left rows, and this many right rows, a lookup runs in DuckDB (one thread,
# over the two key columns and row positions only). Arrow's `index_in` hashes the right keys
# into one table: fastest while that table is small (200 000 text keys: half DuckDB's time),
# slower once it outgrows the caches (a million: two to four times DuckDB's); for a few
# thousand left rows a query's fixed cost (a few ms) would dominate.
VECTORISED_MIN_ROWS = 50_000
VECTORISED_MIN_RIGHT_ROWS = 300_000

# Fixed text, never operator input: the key columns are renamed to `k` before DuckDB sees them.
# Pairs come in no promised order; `_vectorised_lookup` puts them in the left rows' order.
_PAIRS = "SELECT l.p AS lp, r.p AS rp FROM l JOIN r ON l.k = r.k"
_duck = threading.local()


def _duckdb() -> Any:
    """This thread's DuckDB connection (opening one costs tens of ms; a cursor, nothing)."""
    con = getattr(_duck, "con", None)
    if con is None:
        import duckdb

        con = _duck.con = duckdb.connect(config={"threads": 1})
    return con


def _duckdb_query(sql: str, **tables: pa.Table) -> pa.Table:
    """One of this module's fixed queries over Arrow tables registered under the given names,
    on a cursor of this thread's connection (closed after, which drops the registrations)."""
    cursor = _duckdb().cursor()
    try:
        for name, table in tables.items():
            cursor.register(name, table)
        return cursor.sql(sql).to_arrow_table()
    finally:
        cursor.close()


def _vectorised_lookup(left: pa.Table, right: pa.Table, key: str, keep_unmatched: bool) -> pa.Table:
    """`_lookup_join` with the matching done by DuckDB: pairs of (left, right) positions,
    put in left order, then the same takes. Keys are already of one type, nulls removed from
    the right; a null left key matches nothing, as in SQL."""
    pairs = _duckdb_query(
        _PAIRS,
        l=pa.table({"k": left.column(key), "p": np.arange(left.num_rows)}),
        r=pa.table({"k": right.column(key), "p": np.arange(right.num_rows)}),
    )
    lp = pairs.column("lp").to_numpy()
    # Each left row's match, by scattering the pairs (linear, where sorting them by left
    # position cost a third of the query): at most one each, the right keys being unique.
    match = np.full(left.num_rows, -1, np.int64)
    match[lp] = pairs.column("rp").to_numpy()
    unmatched = match < 0
    if len(lp) != left.num_rows - np.count_nonzero(unmatched):
        raise AssertionError("a lookup join's right keys are not unique")
    return _gathered(left, right, key, pa.array(match, mask=unmatched), keep_unmatched)


def _matched(left: pa.Table, right: pa.Table, keys: list[str]) -> pa.Array:
    """Per left row, whether some right row has equal keys (a null key matches nothing)."""
    if len(keys) == 1:
        values = compute.contiguous(right.column(keys[0]))
        return compute.contiguous(pc.is_in(left.column(keys[0]), value_set=values, skip_nulls=True))
    # A semi join of the keys and each row's position: the positions of the rows that match.
    positions = left.select(keys).append_column(_POSITION, pa.array(np.arange(left.num_rows)))
    found = positions.join(
        right.select(keys), keys=keys, join_type="left semi", use_threads=False
    ).column(_POSITION)
    mask = np.zeros(left.num_rows, bool)
    mask[found.to_numpy()] = True
    return pa.array(mask)


# Not a name a job can give a column (names starting "__" are the engine's).
_POSITION = "__position"


def _cast_column(table: pa.Table, name: str, to: pa.DataType) -> pa.Table:
    return table.set_column(
        table.schema.get_field_index(name), name, pc.cast(table.column(name), to, safe=False)
    )


def _non_null_keys(table: pa.Table, keys: list[str]) -> pa.Table:
    mask = None
    for k in keys:
        if not table.column(k).null_count:
            continue  # filtering by an all-true mask would still copy every column
        valid = pc.is_valid(table.column(k))
        mask = valid if mask is None else pc.and_(mask, valid)
    return table.filter(mask) if mask is not None and table.num_rows else table


def _common_type(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    """The type both sides of a key are compared in (validation allows only these pairs)."""
    if (
        pa.types.is_floating(a)
        or pa.types.is_floating(b)
        or pa.types.is_decimal(a)
        or pa.types.is_decimal(b)
    ):
        return pa.float64()
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        return pa.int64()
    if is_text(a) and is_text(b):
        return (
            pa.large_string()
            if pa.types.is_large_string(a) or pa.types.is_large_string(b)
            else pa.string()
        )
    if is_time(a) and is_time(b):
        return pa.timestamp("us")
    return a


# --- hash partitioning ------------------------------------------------------------------


def bucket_ids(table: pa.Table, on: Sequence[str], buckets: int) -> np.ndarray:
    h = np.zeros(table.num_rows, np.uint64)
    for k in on:
        values = compute.contiguous(table.column(k))
        with np.errstate(over="ignore"):
            h = mix(h * K + _partition_hash(values))
    return (h % U64(buckets)).astype(np.int64)


def _partition_hash(values: pa.Array) -> np.ndarray:
    """A hash per value that both sides of a join give equal values. Text is hashed by
    DuckDB (three times faster than `key_hash` on a million identifiers; a bucket only has
    to agree within one job, so any hash that sees text as its bytes will do). Numbers and
    times keep `key_hash`, which hashes 1 and 1.0 alike, as the join compares them. Whatever
    the size of a table: both sides of a join must hash alike."""
    if not is_text(values.type):
        return key_hash(values)
    hashed = _duckdb_query(_HASHES, t=pa.table({"k": values})).column(0)
    return np.asarray(hashed.to_numpy(), dtype=np.uint64)


# In the rows' order: one thread, a plain projection (DuckDB keeps insertion order).
_HASHES = "SELECT hash(k) FROM t"


def split(
    table: pa.Table, on: Sequence[str], buckets: int, keep_null_keys: bool = False
) -> list[pa.Table]:
    """The rows of `table` with non-null keys in `buckets` parts by key hash, each part in
    the table's row order. `keep_null_keys`: rows with a null key too, in part 0 (they match
    nothing, so any part does): the left side of a left or anti join keeps them."""
    table = compute.plain_table(table)
    if not keep_null_keys:
        table = _non_null_keys(table, list(on))
    ids = bucket_ids(table, on, buckets)
    if keep_null_keys:
        ids[~_all_valid(table, on)] = 0
    return _parts(table, ids, buckets)


# --- task bodies ------------------------------------------------------------------------


def part_task(checked: CheckedPlan, piece: Piece, *inputs: pa.Table) -> tuple[pa.Table, Reads]:
    return build(checked, piece, inputs)


def concat_task(*tables: pa.Table) -> pa.Table:
    if not tables:
        return pa.table({})
    return pa.concat_tables([compute.plain_table(t) for t in tables], promote_options="permissive")


def _all_valid(table: pa.Table, on: Sequence[str]) -> np.ndarray:
    valid = np.ones(table.num_rows, bool)
    for k in on:
        valid &= compute.contiguous(pc.is_valid(table.column(k))).to_numpy(zero_copy_only=False)
    return valid


def entity_split_task(
    checked: CheckedPlan,
    piece: Piece,
    column: str,
    bounds: tuple[tuple[int, int], ...],
    keep_unmatched: bool,
    *inputs: pa.Table,
) -> tuple[Any, ...]:
    table, reads = build(checked, piece, inputs)
    return (*split_by_entity(table, column, bounds, keep_unmatched), reads)


def split_by_entity(
    table: pa.Table, column: str, bounds: Sequence[tuple[int, int]], keep_unmatched: bool
) -> list[pa.Table]:
    """The rows of `table` in one part per range of entity numbers (`bounds`, inclusive, in
    no particular order and disjoint), each part in the table's row order: a row goes with
    the range its number falls in. A row in none matches nothing; it is kept, in part 0,
    only when `keep_unmatched` (the left side of a left join)."""
    numbers = _entity_numbers(table, column)
    if numbers is None:
        raise AssertionError("a primary read's entity numbers are never null")
    # An empty partition's range is empty (lo > hi): no row goes there.
    order = np.array(sorted((lo, i) for i, (lo, hi) in enumerate(bounds) if lo <= hi), np.int64)
    order = order[:, 1] if len(order) else np.zeros(0, np.int64)
    los = np.array([bounds[i][0] for i in order], np.int64)
    his = np.array([bounds[i][1] for i in order], np.int64)
    at = np.searchsorted(los, numbers, side="right") - 1
    valid = at >= 0
    valid[valid] = numbers[valid] <= his[at[valid]]
    ids = np.full(len(numbers), 0 if keep_unmatched else len(bounds), np.int64)
    ids[valid] = order[at[valid]]
    return _parts(table, ids, len(bounds))


def _parts(table: pa.Table, ids: np.ndarray, count: int) -> list[pa.Table]:
    """`table`'s rows in `count` parts by `ids` (a row with id `count` is in none), each part
    in the table's row order."""
    # numpy sorts 16-bit integers stably by radix, several times faster than 64-bit ones.
    order = np.argsort(ids.astype(np.int16) if count < 2**15 else ids, kind="stable")
    sizes = np.bincount(ids, minlength=count + 1)[:count]
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    ordered = table.take(pa.array(order[: bounds[-1]]))
    return [ordered.slice(int(a), int(b - a)) for a, b in zip(bounds[:-1], bounds[1:])]


def split_task(
    checked: CheckedPlan,
    piece: Piece,
    on: tuple[str, ...],
    buckets: int,
    keep_null_keys: bool,
    *inputs: pa.Table,
) -> tuple[Any, ...]:
    table, reads = build(checked, piece, inputs)
    return (*split(table, on, buckets, keep_null_keys), reads)


def partials_task(checked: CheckedPlan, pieces: tuple[Piece, ...]) -> tuple[pa.Table, ...]:
    """`partial_task` of several partitions read one after another in one task."""
    return tuple(partial_task(checked, piece) for piece in pieces)


def batches(parts: list[Part], slots: int) -> list[list[Part]]:
    """The final tasks: one per part, or, when the parts read only their own partitions
    (no inputs) and outnumber the `slots` that run them at once, consecutive parts grouped
    into one task per slot. A Ray task costs several milliseconds between one and the next
    on a worker (its result stored, the next one handed over), as much as a quarter of a
    1 M-row partition's work; grouped, the slots still each get an equal share."""
    if slots <= 0 or len(parts) <= slots or any(part.inputs for part in parts):
        return [[part] for part in parts]
    size, extra = divmod(len(parts), slots)
    out, at = [], 0
    for i in range(slots):
        n = size + (1 if i < extra else 0)
        out.append(parts[at : at + n])
        at += n
    return out


def partial_task(checked: CheckedPlan, piece: Piece, *inputs: pa.Table) -> pa.Table:
    table, reads = build(checked, piece, inputs)
    return compute.partial_of(checked, table).replace_schema_metadata(
        {READS_KEY: json.dumps(reads).encode()}
    )


# --- driving ------------------------------------------------------------------------------


class Runner(Protocol):
    """Runs task bodies: `call` returns a handle (or `returns` handles) to the result."""

    def put(self, value: Any) -> Any: ...
    def call(self, fn: Callable[..., Any], *args: Any, returns: int = 1) -> Any: ...
    def get(self, handles: list[Any]) -> list[Any]: ...


class LocalRunner:
    def put(self, value: Any) -> Any:
        return value

    def call(self, fn: Callable[..., Any], *args: Any, returns: int = 1) -> Any:
        out = fn(*args)
        return list(out) if returns > 1 else out

    def get(self, handles: list[Any]) -> list[Any]:
        return handles


@dataclass(frozen=True)
class Part:
    """One partition of a table still to be built: its piece and the handles of its inputs."""

    piece: Piece
    inputs: tuple[Any, ...] = ()


@dataclass
class Planner:
    """Cuts a plan into parts, starting the tasks that must run before the final ones."""

    checked: CheckedPlan
    runner: Runner
    broadcast_max_rows: int = BROADCAST_MAX_ROWS
    checked_ref: Any = field(init=False)
    reads: list[Any] = field(init=False, default_factory=list)  # handles of rows-read counts
    next_scan: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        # Shipped once, shared by every task.
        self.checked_ref = self.runner.put(self.checked)

    def parts(self, node: p.Node) -> list[Part]:
        above: list[p.Node] = []
        while isinstance(node, (p.Filter, p.Derive, p.Select)):
            above.append(node)
            node = node.input
        # Bottom-up from here on: the order in which the steps apply to the rows.
        steps = tuple(reversed(above))
        if isinstance(node, p.Scan):
            scan = self.next_scan
            self.next_scan += 1
            read = self.checked.reads[scan]
            n = len(read.dataset.partitions)
            types = {c.name: c.type for c in read.dataset.columns if c.name in read.columns}
            steps = tuple(simplify.row_steps(steps, types))
            where = prune.scan_predicates(steps)
            cached = bool(getattr(self.runner, "caches_scans", False))
            keep = int(getattr(self.runner, "keep_bytes", 0))
            base = [Part(Read(scan, i, where, cached, keep)) for i in range(n)]
        elif isinstance(node, p.Join):
            base = self._join(node)
        else:
            raise AssertionError("a checked plan aggregates once, at the top")
        if not steps:
            return base
        return [Part(Steps(part.piece, steps), part.inputs) for part in base]

    def _join(self, node: p.Join) -> list[Part]:
        first_left = self.next_scan
        first_right = self.next_scan + len(p.scans(node.left))
        left = self.parts(node.left)
        right_rows = self._estimate(node.right, first_right)
        unique = self._unique_key(node.right, node.on, first_right)
        right = self.parts(node.right)
        like = JoinPieces(Input(0), Input(0), node.on, unique, node.how)
        if right_rows <= self.broadcast_max_rows:
            return self._broadcast(left, right, like)
        bounds = self._entity_bounds(node, first_left, first_right) if unique else None
        if bounds is not None:
            entities = (protection.entity(first_left), protection.entity(first_right))
            return self._by_entity(left, right, replace(like, entities=entities), bounds)
        return self._partitioned(left, right, like)

    def _unique_key(self, node: p.Node, on: tuple[str, ...], first_scan: int) -> bool:
        """Whether the right side has one row per key value: a single key column that the
        catalog recorded as unique in its dataset, read through filters and selects only
        (which keep it unique) and no derive (which could redefine it)."""
        if len(on) != 1 or _scan_below(node) is None:
            return False
        column = self.checked.reads[first_scan].dataset.column(on[0])
        return column is not None and column.unique is True

    def _entity_bounds(
        self, node: p.Join, first_left: int, first_right: int
    ) -> tuple[tuple[int, int], ...] | None:
        """The range of entity numbers of each right partition, when the join can be cut by
        them instead of by key hashes (None otherwise): an inner or left join on one key that
        is, on both sides, the identifier that numbered its dataset's people (the first
        identifier column: equal values, equal numbers, through the one registry), read
        through filters and selects only (a derive could redefine it, and a join put other
        people's numbers beside it), with every partition's numbers stored, and the right
        partitions' ranges, from their footers' statistics, apart. Ingest numbers people in
        order of first appearance, so a table ingested in one pass has such ranges; the right
        side is then joined where it lies and only the left side's rows move."""
        if (
            node.how not in ("inner", "left")
            or len(node.on) != 1
            or not self.checked.disclosure_stats
        ):
            return None
        key = node.on[0]
        for side, scan in ((node.left, first_left), (node.right, first_right)):
            if _scan_below(side) is None:
                return None
            dataset = self.checked.reads[scan].dataset
            named = dataset.named_by
            if named is None or named.name != key:
                return None
            try:
                stored = all(ENTITY in prune.footer(f).schema.names for f in dataset.partitions)
            except (OSError, pa.ArrowException):
                return None  # the read itself reports a lost file, as a read's error
            if not stored:
                return None
        bounds = [
            prune.column_range(prune.footer(path), ENTITY)
            for path in self.checked.reads[first_right].dataset.partitions
        ]
        if any(b is None for b in bounds):
            return None
        ranges = [b for b in bounds if b is not None]
        spans = sorted(r for r in ranges if r[0] <= r[1])
        if any(a[1] >= b[0] for a, b in zip(spans, spans[1:])):
            return None
        return tuple(ranges)

    def _by_entity(
        self,
        left: list[Part],
        right: list[Part],
        like: JoinPieces,
        bounds: tuple[tuple[int, int], ...],
    ) -> list[Part]:
        """One task per right partition, which reads it and joins it with the left rows whose
        numbers fall in its range (the left partitions are split by those ranges)."""
        assert like.entities is not None
        keep = like.how == "left"
        splits = []
        for part in left:
            out = self.runner.call(
                entity_split_task,
                self.checked_ref,
                part.piece,
                like.entities[0],
                bounds,
                keep,
                *part.inputs,
                returns=len(bounds) + 1,
            )
            self.reads.append(out[-1])
            splits.append(list(out[:-1]))
        nl = len(splits)
        out_parts = []
        for j, part in enumerate(right):
            assert not part.inputs, "a right side read through filters and selects only"
            piece = replace(like, left=Concat(tuple(range(nl))), right=part.piece)
            out_parts.append(Part(piece, tuple(s[j] for s in splits)))
        return out_parts

    def _estimate(self, node: p.Node, first_scan: int) -> float:
        """Rows the right side may have: what its table holds (filters only remove rows), or
        unbounded when it contains a join, which can multiply rows."""
        reads = p.scans(node)
        if len(reads) > 1:
            return float("inf")
        return float(self.checked.reads[first_scan].dataset.row_count)

    def _broadcast(self, left: list[Part], right: list[Part], like: JoinPieces) -> list[Part]:
        tables = []
        for part in right:
            table, reads = self.runner.call(
                part_task, self.checked_ref, part.piece, *part.inputs, returns=2
            )
            tables.append(table)
            self.reads.append(reads)
        shared = self.runner.call(concat_task, *tables)
        return [
            Part(
                replace(like, left=part.piece, right=Input(len(part.inputs))),
                (*part.inputs, shared),
            )
            for part in left
        ]

    def _partitioned(self, left: list[Part], right: list[Part], like: JoinPieces) -> list[Part]:
        buckets = max(1, min(MAX_BUCKETS, max(len(left), len(right))))
        # Unmatched left rows stay in a left or anti join, null keys and all.
        outer = like.how != "inner"
        left_buckets = [self._split(part, like.on, buckets, outer) for part in left]
        right_buckets = [self._split(part, like.on, buckets) for part in right]
        nl = len(left_buckets)
        return [
            Part(
                replace(
                    like,
                    left=Concat(tuple(range(nl))),
                    right=Concat(tuple(range(nl, nl + len(right_buckets)))),
                ),
                (*(b[j] for b in left_buckets), *(b[j] for b in right_buckets)),
            )
            for j in range(buckets)
        ]

    def _split(
        self, part: Part, on: tuple[str, ...], buckets: int, keep_null_keys: bool = False
    ) -> list[Any]:
        out = self.runner.call(
            split_task,
            self.checked_ref,
            part.piece,
            on,
            buckets,
            keep_null_keys,
            *part.inputs,
            returns=buckets + 1,
        )
        self.reads.append(out[-1])
        return list(out[:-1])


def _scan_below(node: p.Node) -> p.Scan | None:
    """The table `node` reads when it reads one through filters and selects only (which keep
    its rows' values as they are: no derive, which could redefine a column, and no join)."""
    while isinstance(node, (p.Filter, p.Select)):
        node = node.input
    return node if isinstance(node, p.Scan) else None


@dataclass(frozen=True)
class Run:
    partials: list[pa.Table]
    rows_by_dataset: dict[str, int]


def run(checked: CheckedPlan, runner: Runner, broadcast_max_rows: int = BROADCAST_MAX_ROWS) -> Run:
    """Partial aggregates of every partition of the plan's joined table, and the rows read
    from each dataset (a table joined with itself counts once: the same rows)."""
    planner = Planner(checked, runner, broadcast_max_rows)
    parts = planner.parts(checked.plan.input)
    handles: list[Any] = []
    for batch in batches(parts, int(getattr(runner, "slots", 0))):
        if len(batch) == 1:
            part = batch[0]
            handles.append(runner.call(partial_task, planner.checked_ref, part.piece, *part.inputs))
            continue
        pieces = tuple(part.piece for part in batch)
        out = runner.call(partials_task, planner.checked_ref, pieces, returns=len(batch))
        handles.extend(out)
    partials = runner.get(handles)
    by_scan: Reads = {}
    for reads in [
        *runner.get(planner.reads),
        *(json.loads((t.schema.metadata or {}).get(READS_KEY, b"{}")) for t in partials),
    ]:
        by_scan = _add(by_scan, {int(k): int(v) for k, v in reads.items()})
    rows: dict[str, int] = {}
    for scan, n in by_scan.items():
        name = checked.reads[scan].dataset.name
        rows[name] = max(rows.get(name, 0), n)
    for ds in checked.datasets:
        rows.setdefault(ds.name, 0)
    return Run(partials, rows)
