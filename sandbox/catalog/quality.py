"""The data-quality profile of a dataset's new version, and whether its declared rules hold.

Computed batch by batch while a version is pulled (ten million rows come in batches of some
fifty thousand), so memory follows what must be remembered, not the data: a 64-bit hash per
distinct value of identifier and `unique` columns (to count repeats: 8 bytes a row at worst),
fewer than 2 × `DISTINCT_CAP` of any other column (to band its distinct count; past the cap the
column is no longer followed), and counters. Hashes are `key_hash`'s, the ones the engine joins
by; that two different values among ten million share one is a chance of about one in 400 000.

The profile is shown to the bureau and the owning department only, and even so holds counts
and rates, never a value: a report or an error message names columns, rules and numbers.

Only rules the department declared can fail a version. What the profile finds on its own
(repeats in an identifier column, invalid check digits in a column named like an identity
number) is reported, not held against the version: a department may keep masked identifiers
(110105********002X) that no check digit fits.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sandbox.catalog.models import ENTITY, ColumnInfo
from sandbox.common.hashing import is_text, is_time, key_hash
from sandbox.errors import IngestError

CheckKind = Literal["resident_id", "credit_code"]
Status = Literal["passed", "flagged", "refused"]

# Distinct values tracked per column (identifier and `unique` columns aside, which keep all):
# enough to tell a category from a free value, little enough for many columns at once.
DISTINCT_CAP = 1_000_000
# Batches' hashes wait to be merged into a column's sorted set until there are as many of them
# as in the set (so each hash is sorted a logarithmic number of times), and at least this many
# (so that the set of a column of a few categories is not merged again at every batch).
_MERGE_MIN = 1 << 16

# Identifier columns whose names say what they hold get their check digits checked without a
# rule. Names are compared lower-case without '_', '-' and spaces; keep the list to names that
# cannot mean anything else.
_NAMED_CHECKS: dict[str, CheckKind] = {
    "residentid": "resident_id",
    "idnumber": "resident_id",
    "idcardnumber": "resident_id",
    "身份证号": "resident_id",
    "身份证号码": "resident_id",
    "公民身份号码": "resident_id",
    "creditcode": "credit_code",
    "uscc": "credit_code",
    "统一社会信用代码": "credit_code",
}

# ColumnInfo.type of text columns (str of Arrow's types).
_TEXT_TYPES = frozenset({"string", "large_string"})

_CHECK_LABELS: dict[CheckKind, str] = {
    "resident_id": "resident identity numbers per GB 11643",
    "credit_code": "unified social credit codes per GB 32100",
}


class Rules(BaseModel):
    """The constraints a department declares for its dataset, checked at every new version."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    not_null: tuple[str, ...] = ()
    unique: tuple[str, ...] = ()
    max_null_rate: dict[str, float] = Field(default_factory=dict)
    # Numeric columns whose declared bounds (ColumnInfo.lower/upper) every value must respect.
    within_bounds: tuple[str, ...] = ()
    check_digits: dict[str, CheckKind] = Field(default_factory=dict)
    min_rows: int | None = Field(None, ge=0)
    on_failure: Literal["refuse", "flag"] = "flag"


def parse_rules(raw: object, columns: Sequence[ColumnInfo]) -> Rules:
    """The rules in `raw` (a JSON object; None for none), checked against the dataset's columns."""
    if raw is None:
        return Rules()
    try:
        rules = Rules.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "rules"
        hint = (
            f" (the rules are: {', '.join(Rules.model_fields)})"
            if err["type"] == "extra_forbidden"
            else ""
        )
        raise IngestError(f"quality rules: {where}: {err['msg']}{hint}") from None
    check_rules(rules, columns)
    return rules


def check_rules(rules: Rules, columns: Sequence[ColumnInfo]) -> None:
    """Raise IngestError, saying how to fix it, when `rules` do not fit the dataset's columns."""
    by_name = {c.name: c for c in columns}
    named = (
        ("not_null", rules.not_null),
        ("unique", rules.unique),
        ("max_null_rate", tuple(rules.max_null_rate)),
        ("within_bounds", rules.within_bounds),
        ("check_digits", tuple(rules.check_digits)),
    )
    for rule, names in named:
        for name in names:
            if name not in by_name:
                raise IngestError(
                    f"quality rules: {rule} names column {name!r}, which the dataset does not "
                    f"have; its columns are: {', '.join(by_name)}"
                )
    for name, rate in rules.max_null_rate.items():
        if not 0.0 <= rate <= 1.0:  # NaN fails too
            raise IngestError(
                f"quality rules: max_null_rate for column {name!r} is {rate}, outside 0..1; give "
                "the highest share of nulls allowed, e.g. 0.05 for 5%"
            )
    for name in rules.within_bounds:
        if by_name[name].lower is None and by_name[name].upper is None:
            raise IngestError(
                f"quality rules: within_bounds names column {name!r}, which has no declared "
                "bounds; declare its lower and/or upper bound in the dataset's policy, or take "
                "it out of within_bounds"
            )
    for name in rules.check_digits:
        if by_name[name].type not in _TEXT_TYPES:
            raise IngestError(
                f"quality rules: check_digits names column {name!r} of type "
                f"{by_name[name].type}; check digits apply to text columns only (an identifier "
                "stored as a number has lost its leading zeros and its letters)"
            )


# --- the report ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColumnQuality:
    name: str
    nulls: int
    null_rate: float  # nulls / rows; 0.0 when there are no rows
    outside_bounds: int | None  # None: the column has no declared bounds
    invalid_check_digits: int | None  # None: not checked
    duplicates: int | None  # non-null values repeating an earlier one; None: not counted
    distinct_band: str | None  # "0", "1", "2-9"… ">= 1000000"; None: a type with no hash

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "nulls": self.nulls,
            "null_rate": self.null_rate,
            "outside_bounds": self.outside_bounds,
            "invalid_check_digits": self.invalid_check_digits,
            "duplicates": self.duplicates,
            "distinct_band": self.distinct_band,
        }


@dataclass(frozen=True)
class Failure:
    rule: str  # a field of Rules
    column: str | None  # None for rules about the whole version (min_rows)
    message: str  # plain words, counts only

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "column": self.column, "message": self.message}


@dataclass(frozen=True)
class QualityReport:
    rows: int
    columns: tuple[ColumnQuality, ...]
    failures: tuple[Failure, ...]
    status: Status  # passed when nothing failed; otherwise as the rules' on_failure says

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "status": self.status,
            "columns": [c.to_json() for c in self.columns],
            "failures": [f.to_json() for f in self.failures],
        }


def distinct_band(count: int | None) -> str | None:
    """The decade `count` falls in ("0", "1", "2-9", "10-99"… ">= 1000000"): what tells an
    owner whether a column holds categories or free values, and stays put from one version to
    the next unless the column changes in kind."""
    if count is None:
        return None
    if count >= DISTINCT_CAP:
        return f">= {DISTINCT_CAP}"
    if count <= 1:
        return str(count)
    low = 10 ** (len(str(count)) - 1)
    return f"{max(low, 2)}-{low * 10 - 1}"


# --- check digits ----------------------------------------------------------------------------

_ID_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2], dtype=np.int64)
_ID_CHECK_CHARS = np.frombuffer(b"10X98765432", dtype=np.uint8)
_DAYS_IN_MONTH = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
# No one alive was born before; an earlier "birth date" is a damaged number.
_EARLIEST_BIRTH_YEAR = 1800
_CREDIT_ALPHABET = b"0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_WEIGHTS = np.array(
    [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28], dtype=np.int64
)
_CREDIT_VALUES = np.full(256, -1, dtype=np.int64)  # byte -> value in the alphabet, -1 outside
_CREDIT_VALUES[np.frombuffer(_CREDIT_ALPHABET, np.uint8)] = np.arange(len(_CREDIT_ALPHABET))
_CODE_LENGTH = 18


def resident_id_valid(values: pa.Array) -> np.ndarray:
    """Per value: a GB 11643-1999 citizen identity number (17 digits whose 7th-14th are a real
    birth date, then the ISO 7064 MOD 11-2 check character, an upper-case X for 10), or null.

    A lower-case x counts as invalid: it hashes differently from X, so the same person would be
    two entities to the catalog. The birth date is not compared with today, so that a
    version's profile does not change with the day it is computed."""
    fits, chars = _fixed_width(values, _CODE_LENGTH)
    digits = chars - np.uint8(ord("0"))  # wraps round below "0": above 9 is not a digit
    ok = digits[:, :17].max(axis=1, initial=0) <= 9
    body = digits[:, :17].astype(np.int64)
    ok &= chars[:, 17] == _ID_CHECK_CHARS[(body @ _ID_WEIGHTS) % 11]
    year = body[:, 6:10] @ np.array([1000, 100, 10, 1])
    month = body[:, 10:12] @ np.array([10, 1])
    day = body[:, 12:14] @ np.array([10, 1])
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    days = _DAYS_IN_MONTH[np.clip(month, 0, 12)] + (leap & (month == 2))
    ok &= (year >= _EARLIEST_BIRTH_YEAR) & (month >= 1) & (month <= 12) & (day >= 1) & (day <= days)
    return _per_value(values, fits, ok)


def credit_code_valid(values: pa.Array) -> np.ndarray:
    """Per value: a GB 32100-2015 unified social credit code (18 characters of
    "0123456789ABCDEFGHJKLMNPQRTUWXY", the last the MOD 31 check character of the others), or
    null. The embedded organisation code's own check (GB 11714) is not checked: codes of
    bodies registered without one carry a placeholder there."""
    fits, chars = _fixed_width(values, _CODE_LENGTH)
    code = _CREDIT_VALUES[chars]
    ok = (code >= 0).all(axis=1)
    ok &= code[:, 17] == (31 - (code[:, :17] @ _CREDIT_WEIGHTS) % 31) % 31
    return _per_value(values, fits, ok)


_CHECKS = {"resident_id": resident_id_valid, "credit_code": credit_code_valid}


def _text(values: pa.Array) -> pa.Array:
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if not is_text(values.type):
        values = values.cast(pa.string())
    return values


def _fixed_width(values: pa.Array, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Which non-null values are `width` bytes long in UTF-8, and their bytes, one row each:
    read from Arrow's buffers, not converted value by value."""
    text = _text(values)
    n = len(text)
    if n == 0:
        return np.zeros(0, bool), np.zeros((0, width), np.uint8)
    offset_type = np.int64 if pa.types.is_large_string(text.type) else np.int32
    offsets = np.frombuffer(text.buffers()[1], offset_type)[text.offset : text.offset + n + 1]
    offsets = offsets.astype(np.int64)
    starts: np.ndarray = offsets[:-1]
    fits = np.diff(offsets) == width
    if text.null_count:
        fits &= text.is_valid().to_numpy(zero_copy_only=False)
    data_buffer = text.buffers()[2]
    data = (
        np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    )
    if fits.all():  # the usual column of codes: its bytes are the rows, end to end
        return fits, data[offsets[0] : offsets[-1]].reshape(n, width)
    return fits, data[starts[fits, None] + np.arange(width)]


def _per_value(values: pa.Array, fits: np.ndarray, ok: np.ndarray) -> np.ndarray:
    valid = np.zeros(len(values), bool)
    valid[fits] = ok
    if values.null_count:
        valid |= values.is_null().to_numpy(zero_copy_only=False)
    return valid


def _named_check(column: ColumnInfo) -> CheckKind | None:
    if column.role != "identifier" or column.type not in _TEXT_TYPES:
        return None
    key = column.name.lower().replace("_", "").replace("-", "").replace(" ", "")
    return _NAMED_CHECKS.get(key)


# --- the profile -----------------------------------------------------------------------------


class _HashSet:
    """The distinct hashes of a column's values: a sorted array, and batches not yet merged in.
    The two together never hold more hashes than the column had non-null values."""

    def __init__(self, cap: int | None) -> None:
        self._cap = cap
        self._sorted = np.zeros(0, np.uint64)
        self._pending: list[np.ndarray] = []
        self._pending_size = 0
        self.overflowed = False

    def add(self, hashes: np.ndarray) -> None:
        if self.overflowed or not len(hashes):
            return
        batch = np.unique(hashes)
        self._pending.append(batch)
        self._pending_size += len(batch)
        if self._pending_size >= max(len(self._sorted), _MERGE_MIN):
            self._merge()

    def count(self) -> int | None:
        """How many distinct hashes; None once past the cap."""
        self._merge()
        return None if self.overflowed else len(self._sorted)

    def _merge(self) -> None:
        if not self._pending:
            return
        merged = np.concatenate([self._sorted, *self._pending])
        self._sorted, self._pending, self._pending_size = np.zeros(0, np.uint64), [], 0
        merged.sort()
        first = np.ones(len(merged), bool)
        np.not_equal(merged[1:], merged[:-1], out=first[1:])
        self._sorted = merged[first]
        if self._cap is not None and len(self._sorted) >= self._cap:
            self.overflowed, self._sorted = True, np.zeros(0, np.uint64)


@dataclass
class _Column:
    info: ColumnInfo
    check: CheckKind | None
    counts_duplicates: bool
    hashes: _HashSet
    nulls: int = 0
    outside_bounds: int = 0
    invalid: int = 0
    hashable: bool = True  # False once a batch brought a type key_hash cannot hash

    @property
    def bounded(self) -> bool:
        return self.info.lower is not None or self.info.upper is not None

    def add(self, values: pa.Array) -> None:
        self.nulls += values.null_count
        if pa.types.is_null(values.type):  # nothing but nulls, of no type
            return
        if self.bounded:
            self.outside_bounds += _outside(values, self.info)
        if self.check is not None:
            self.invalid += int(len(values) - np.count_nonzero(_CHECKS[self.check](values)))
        present = values.drop_null() if values.null_count else values
        hashable = _hashable(present)
        if hashable is None:
            self.hashable = False
        elif self.hashable:
            self.hashes.add(key_hash(hashable))

    def quality(self, rows: int) -> ColumnQuality:
        distinct = self.hashes.count() if self.hashable else None
        if not self.hashable:
            band = None
        elif distinct is None:
            band = f">= {DISTINCT_CAP}"
        else:
            band = distinct_band(distinct)
        return ColumnQuality(
            name=self.info.name,
            nulls=self.nulls,
            null_rate=self.nulls / rows if rows else 0.0,
            outside_bounds=self.outside_bounds if self.bounded else None,
            invalid_check_digits=self.invalid if self.check is not None else None,
            duplicates=(
                rows - self.nulls - distinct
                if self.counts_duplicates and distinct is not None
                else None
            ),
            distinct_band=band,
        )


def _outside(values: pa.Array, info: ColumnInfo) -> int:
    """Values below the declared lower bound or above the upper; NaN lies within no bounds."""
    t = values.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
        raise IngestError(
            f"column {info.name!r} has declared bounds but arrived as type {t}; bounds apply to "
            "numeric columns only: correct the source's column type or the dataset's policy"
        )
    numbers = values.cast(pa.float64(), safe=False)
    inside = pc.invert(pc.is_nan(numbers))
    if info.lower is not None:
        inside = pc.and_(inside, pc.greater_equal(numbers, info.lower))
    if info.upper is not None:
        inside = pc.and_(inside, pc.less_equal(numbers, info.upper))
    return int(len(values) - values.null_count - (pc.sum(inside).as_py() or 0))


def _hashable(values: pa.Array) -> pa.Array | None:
    """`values` in a type key_hash takes, equal where the values are; None for nested types."""
    t = values.type
    if pa.types.is_dictionary(t):
        return _hashable(values.dictionary_decode())
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
        return values
    if pa.types.is_decimal(t) or is_time(t) or is_text(t):
        return values
    if pa.types.is_binary(t):  # hashed by bytes, like text
        return values.view(pa.string())
    if pa.types.is_large_binary(t):
        return values.view(pa.large_string())
    if pa.types.is_fixed_size_binary(t):
        return values.cast(pa.binary()).view(pa.string())
    if pa.types.is_time(t) or pa.types.is_duration(t):
        return values.cast(pa.int64())
    return None


class Profile:
    """The quality profile of one version, fed batch by batch (`add`), read at the end (`report`)."""

    def __init__(self, columns: Sequence[ColumnInfo], rules: Rules | None = None) -> None:
        self.rules = rules if rules is not None else Rules()
        check_rules(self.rules, columns)
        self.rows = 0
        self._columns: dict[str, _Column] = {}
        for info in columns:
            counts_duplicates = info.role == "identifier" or info.name in self.rules.unique
            self._columns[info.name] = _Column(
                info,
                self.rules.check_digits.get(info.name) or _named_check(info),
                counts_duplicates,
                _HashSet(None if counts_duplicates else DISTINCT_CAP),
            )

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Count one batch in. Its columns are found by name and must be the dataset's
        (`__entity`, the catalog's own, is passed over)."""
        names = [n for n in batch.schema.names if n != ENTITY]
        extra = [n for n in names if n not in self._columns]
        if extra:
            raise IngestError(
                f"a batch has column {extra[0]!r}, which the dataset does not declare; its "
                f"columns are: {', '.join(self._columns)}"
            )
        missing = [n for n in self._columns if n not in names]
        if missing:
            raise IngestError(
                f"a batch lacks column {missing[0]!r}, which the dataset declares; every batch "
                "must carry all of the dataset's columns"
            )
        for name, column in self._columns.items():
            for chunk in _chunks(batch.column(name)):
                column.add(chunk)
        self.rows += batch.num_rows

    def report(self) -> QualityReport:
        """The profile of the batches added so far (more may be added after)."""
        columns = tuple(c.quality(self.rows) for c in self._columns.values())
        failures = tuple(self._failures({c.name: c for c in columns}))
        status: Status = (
            "passed"
            if not failures
            else "refused"
            if self.rules.on_failure == "refuse"
            else "flagged"
        )
        return QualityReport(self.rows, columns, failures, status)

    def _failures(self, quality: dict[str, ColumnQuality]) -> Iterable[Failure]:
        rules, rows = self.rules, self.rows
        if rules.min_rows is not None and rows < rules.min_rows:
            yield Failure(
                "min_rows",
                None,
                f"the version has {rows} rows, fewer than the {rules.min_rows} the rules require",
            )
        for name in rules.not_null:
            if quality[name].nulls:
                yield Failure(
                    "not_null",
                    name,
                    f"column {name!r} has {_values(quality[name].nulls, 'null value')} of {rows}; "
                    "the rules allow none",
                )
        for name in rules.unique:
            duplicates = quality[name].duplicates
            if duplicates is None:
                yield Failure(
                    "unique",
                    name,
                    f"column {name!r} could not be checked for repeated values: its type has "
                    "no hash",
                )
            elif duplicates:
                yield Failure(
                    "unique",
                    name,
                    f"column {name!r} has {_values(duplicates, 'non-null value')} repeating an "
                    "earlier one; the rules require each to be unique",
                )
        for name, highest in rules.max_null_rate.items():
            q = quality[name]
            if q.null_rate > highest:
                yield Failure(
                    "max_null_rate",
                    name,
                    f"column {name!r} has {q.null_rate:.2%} null values ({q.nulls} of {rows}), "
                    f"more than the {highest:.2%} the rules allow",
                )
        for name in rules.within_bounds:
            outside = quality[name].outside_bounds
            if outside:
                yield Failure(
                    "within_bounds",
                    name,
                    f"column {name!r} has {_values(outside, 'value')} outside its declared bounds",
                )
        for name, kind in rules.check_digits.items():
            invalid = quality[name].invalid_check_digits
            if invalid:
                yield Failure(
                    "check_digits",
                    name,
                    f"column {name!r} has {_values(invalid, 'value')} of "
                    f"{rows - quality[name].nulls} that are not valid {_CHECK_LABELS[kind]}: wrong "
                    "length, characters or check digit",
                )


def _values(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _chunks(column: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(column.chunks) if isinstance(column, pa.ChunkedArray) else [column]
