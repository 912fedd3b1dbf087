"""What operator code sees: `table`, `col`, `lit`, aggregates, `emit`, `emit_table`, `params`.

These proxies only build plan nodes. `collect()` hands the plan to a `Channel` (in the jail,
a pipe to the job driver) and gets back a released aggregate as plain JSON values, wrapped in
`Released`. Nothing here touches data, so nothing here can leak it.
"""

from __future__ import annotations

import builtins
import dataclasses
from typing import Any, Protocol

from sandbox.errors import PlanError
from sandbox.language import derived
from sandbox.language import plan as p


class Channel(Protocol):
    def collect(self, plan: Any) -> dict[str, Any]: ...
    def emit(self, name: str, value: Any) -> None: ...


def _expr(value: Any) -> p.Expr:
    if isinstance(value, Expr):
        return value._node
    if isinstance(value, (list, tuple)):
        return p.Lit(tuple(value))
    return p.Lit(value)


class Expr:
    """A column expression. Combine with arithmetic, comparisons and `& | ~`."""

    __slots__ = ("_node",)

    def __init__(self, node: p.Expr) -> None:
        self._node = node

    def _call(self, fn: str, *others: Any) -> Expr:
        return Expr(p.Call(fn, (self._node, *(_expr(o) for o in others))))

    def _rcall(self, fn: str, other: Any) -> Expr:
        return Expr(p.Call(fn, (_expr(other), self._node)))

    def __add__(self, o: Any) -> Expr:
        return self._call("add", o)

    def __radd__(self, o: Any) -> Expr:
        return self._rcall("add", o)

    def __sub__(self, o: Any) -> Expr:
        return self._call("sub", o)

    def __rsub__(self, o: Any) -> Expr:
        return self._rcall("sub", o)

    def __mul__(self, o: Any) -> Expr:
        return self._call("mul", o)

    def __rmul__(self, o: Any) -> Expr:
        return self._rcall("mul", o)

    def __truediv__(self, o: Any) -> Expr:
        return self._call("div", o)

    def __rtruediv__(self, o: Any) -> Expr:
        return self._rcall("div", o)

    def __neg__(self) -> Expr:
        return Expr(p.Call("neg", (self._node,)))

    def __eq__(self, o: Any) -> Expr:  # type: ignore[override]
        return self._call("eq", o)

    def __ne__(self, o: Any) -> Expr:  # type: ignore[override]
        return self._call("ne", o)

    def __lt__(self, o: Any) -> Expr:
        return self._call("lt", o)

    def __le__(self, o: Any) -> Expr:
        return self._call("le", o)

    def __gt__(self, o: Any) -> Expr:
        return self._call("gt", o)

    def __ge__(self, o: Any) -> Expr:
        return self._call("ge", o)

    def __and__(self, o: Any) -> Expr:
        return self._call("and", o)

    def __rand__(self, o: Any) -> Expr:
        return self._rcall("and", o)

    def __or__(self, o: Any) -> Expr:
        return self._call("or", o)

    def __ror__(self, o: Any) -> Expr:
        return self._rcall("or", o)

    def __invert__(self) -> Expr:
        return Expr(p.Call("not", (self._node,)))

    __hash__ = None  # type: ignore[assignment]

    def __bool__(self) -> bool:
        raise PlanError(
            "an expression has no truth value in Python; combine conditions with & | ~ "
            "instead of and/or/not, and use filter() to apply them",
            sign="probe",
        )

    def isin(self, values: Any) -> Expr:
        """True where the value is one of `values` (a list of literals)."""
        if not isinstance(values, (list, tuple)):
            raise PlanError("isin() takes a list of values")
        return self._call("isin", list(values))

    def between(self, low: Any, high: Any) -> Expr:
        """True where `low <= value <= high` (both ends included)."""
        return self._call("between", low, high)

    def is_null(self) -> Expr:
        """True where the value is missing (null)."""
        return self._call("is_null")

    def year(self) -> Expr:
        """The year of a date, as an integer."""
        return self._call("year")

    def month(self) -> Expr:
        """The month of a date, 1 to 12."""
        return self._call("month")

    def years_until(self, other: Any) -> Expr:
        """Whole years from this date to `other` (a date column or "YYYY-MM-DD")."""
        return self._call("years_until", other)

    def age_at(self, date: Any) -> Expr:
        """Age in whole years at `date` ("YYYY-MM-DD" or a date column) of this birth date."""
        return self._call("years_until", date)

    def startswith(self, prefix: str) -> Expr:
        """True where a string begins with the literal `prefix`."""
        return self._call("startswith", prefix)

    def endswith(self, suffix: str) -> Expr:
        """True where a string ends with the literal `suffix`."""
        return self._call("endswith", suffix)

    def bucket(self, edges: Any) -> Expr:
        """Coarsen a number into labelled bands, e.g. [18, 35) for edges [18, 35, 60]."""
        if not isinstance(edges, (list, tuple)) or len(edges) < 1:
            raise PlanError("bucket() takes a non-empty list of increasing edges")
        return self._call("bucket", list(edges))

    def cast(self, kind: str) -> Expr:
        """Convert to "int" (floats round to the nearest, halves to even), "float" or "string"."""
        if kind not in p.CAST_KINDS:
            raise PlanError(f"cast() takes one of {', '.join(map(repr, p.CAST_KINDS))}")
        return self._call("cast", kind)

    def abs(self) -> Expr:
        """The absolute value of a number."""
        return self._call("abs")

    def round(self, ndigits: int = 0) -> Expr:
        """Round half away from zero, as SQL does (Python's round() rounds half to even)."""
        if isinstance(ndigits, bool) or not isinstance(ndigits, int):
            raise PlanError("round() takes a whole number of digits, e.g. round(2)")
        return self._call("round", ndigits)

    def __repr__(self) -> str:
        return f"<expr {p.describe_expr(self._node)}>"


class Aggregate:
    """An aggregate to use inside agg(...)."""

    __slots__ = ("_agg",)

    def __init__(self, agg: p.Agg) -> None:
        self._agg = agg

    def round(self, ndigits: int = 0) -> Aggregate:
        """Released rounded to `ndigits` decimal digits (half away from zero; negative: tens,
        hundreds…): the exact value never reaches the job."""
        if isinstance(ndigits, bool) or not isinstance(ndigits, int):
            raise PlanError("round() takes a whole number of digits, e.g. mean('income').round(1)")
        return Aggregate(dataclasses.replace(self._agg, digits=ndigits))

    def __repr__(self) -> str:
        return f"<aggregate {self._agg.fn}>"


def col(name: str) -> Expr:
    """The column `name` of the table the expression is used on."""
    return Expr(p.Col(name))


def lit(value: Any) -> Expr:
    """A constant as an expression, e.g. to derive a column holding one value."""
    return Expr(_expr(value))


def _agg_arg(x: Any) -> p.Expr:
    return p.Col(x) if isinstance(x, str) else _expr(x)


def count() -> Aggregate:
    """The number of rows (in each group)."""
    return Aggregate(p.Agg("count"))


def sum_(x: Any, start: Any = 0) -> Any:
    """sum('col') is an aggregate; sum(list) is Python's sum, for released values."""
    if isinstance(x, (list, tuple)):
        return builtins.sum(x, start)
    return Aggregate(p.Agg("sum", _agg_arg(x)))


def mean(x: Any) -> Aggregate:
    """The arithmetic mean of the non-null values of a numeric column or expression."""
    return Aggregate(p.Agg("mean", _agg_arg(x)))


def count_distinct(x: Any) -> Aggregate:
    """The number of distinct non-null values (exact)."""
    return Aggregate(p.Agg("count_distinct", _agg_arg(x)))


def var(x: Any) -> Aggregate:
    """Sample variance (n - 1 in the denominator); None for fewer than two values."""
    return Aggregate(p.Agg("var", _agg_arg(x)))


def std(x: Any) -> Aggregate:
    """Sample standard deviation (n - 1 in the denominator)."""
    return Aggregate(p.Agg("std", _agg_arg(x)))


def quantile(x: Any, q: Any) -> Aggregate:
    """The q-quantile (0 ≤ q ≤ 1), linearly interpolated between the two nearest values."""
    return Aggregate(p.Agg("quantile", _agg_arg(x), q))


def _condition(fn: str, cond: Any) -> p.Expr:
    if not isinstance(cond, Expr):
        raise PlanError(
            f"{fn}() takes a condition, e.g. {fn}(col('age') >= 65) or {fn}(col('hukou') == '本地')"
        )
    return cond._node


def count_if(cond: Any) -> Aggregate:
    """The number of rows where `cond` holds (a null condition does not hold). The condition
    selects rows as filter() does: its columns need the contract's filter use."""
    return Aggregate(p.Agg("count_if", _condition("count_if", cond)))


def mean_of(cond: Any) -> Aggregate:
    """The share of rows where `cond` holds, from 0 to 1 (a null condition does not hold)."""
    return Aggregate(p.Agg("mean_of", _condition("mean_of", cond)))


def count_nonnull(x: Any) -> Aggregate:
    """The number of rows where the column (or expression) is not null: after a left join,
    the rows that found a match. The same as count_if(~col(x).is_null())."""
    if not isinstance(x, (str, Expr)):
        raise PlanError("count_nonnull() takes a column name or expression, e.g. 'scheme'")
    node = p.Call("not", (p.Call("is_null", (_agg_arg(x),)),))
    return Aggregate(p.Agg("count_if", node))


def share(of: Any, within: Any = None) -> Aggregate:
    """`of` (count(), sum(…) or count_if(…)) as a fraction of its total over the cells that
    share the `within` keys' values (a key name or a list; None: the whole table's total).
    share(count(), within='district') gives each group's part of its district."""
    if not isinstance(of, Aggregate):
        raise PlanError("share() takes an aggregate, e.g. share(count(), within='district')")
    keys = [] if within is None else [within] if isinstance(within, str) else within
    if not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys):
        raise PlanError("share(within=…) takes a group key's name or a list of them")
    return Aggregate(dataclasses.replace(of._agg, within=tuple(keys)))


def _is_column(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return len(args) == 1 and not kwargs and isinstance(args[0], (str, Expr))


def min_(*args: Any, **kwargs: Any) -> Any:
    """min('col') is an aggregate; min(list) or min(a, b) is Python's min, for released values."""
    if _is_column(args, kwargs):
        return Aggregate(p.Agg("min", _agg_arg(args[0])))
    return builtins.min(*args, **kwargs)


def max_(*args: Any, **kwargs: Any) -> Any:
    """max('col') is an aggregate; max(list) or max(a, b) is Python's max, for released values."""
    if _is_column(args, kwargs):
        return Aggregate(p.Agg("max", _agg_arg(args[0])))
    return builtins.max(*args, **kwargs)


def case(*pairs: Any, default: Any = None) -> Expr:
    """case((cond, value), …, default=value): the value of the first true condition."""
    if not pairs or not all(isinstance(c, tuple) and len(c) == 2 for c in pairs):
        raise PlanError(
            "case() takes (condition, value) pairs, e.g. "
            "case((col('age') >= 65, 'senior'), default='other')"
        )
    args = [_expr(x) for pair in pairs for x in pair]
    return Expr(p.Call("case", (*args, _expr(default))))


def _aggs(named: dict[str, Any]) -> tuple[tuple[str, p.Agg], ...]:
    out = []
    for name, a in named.items():
        if not isinstance(a, Aggregate):
            raise PlanError(
                f"agg({name}=…) needs an aggregate such as count(), sum('col'), mean('col') "
                "or quantile('col', 0.5)"
            )
        out.append((name, a._agg))
    return tuple(out)


class Table:
    """A lazy table. Nothing is read until collect() of an aggregated table."""

    __slots__ = ("_node", "_channel")

    def __init__(self, node: p.Node, channel: Channel) -> None:
        self._node = node
        self._channel = channel

    def _then(self, node: p.Node) -> Table:
        return Table(node, self._channel)

    def filter(self, predicate: Expr) -> Table:
        """The rows where `predicate` is true (null counts as false)."""
        if not isinstance(predicate, Expr):
            raise PlanError("filter() takes a condition such as col('age') >= 65")
        return self._then(p.Filter(self._node, predicate._node))

    def derive(self, **columns: Any) -> Table:
        """The table with new columns, each computed by an expression: derive(age=…)."""
        return self._then(p.Derive(self._node, tuple((k, _expr(v)) for k, v in columns.items())))

    def select(self, *columns: str) -> Table:
        """The table with only the named columns, in that order."""
        return self._then(p.Select(self._node, tuple(columns)))

    def join(self, other: Table, on: Any = None, how: str = "inner") -> Table:
        """Rows of both tables whose `on` columns are equal (null keys match nothing). `on`
        is a column name or a list of names present on both sides; every other column may be
        on one side only. `how`: "inner" (the matches), "left" (every row of this table, the
        other's columns null where nothing matched) or "anti" (the rows of this table that
        match nothing, with this table's columns only). This table stays the primary one:
        cells count its rows."""
        if not isinstance(how, str) or how not in p.JOIN_KINDS:
            raise PlanError(
                "join() takes how='inner' (rows that match), how='left' (every row of this "
                "table, the other's columns null where nothing matches) or how='anti' (the "
                "rows of this table that match nothing)"
            )
        if not isinstance(other, Table):
            raise PlanError(
                "join() takes another table, e.g. "
                "insured.join(table('population'), on='resident_id')"
            )
        keys = [on] if isinstance(on, str) else on
        if (
            not isinstance(keys, (list, tuple))
            or not keys
            or not all(isinstance(k, str) for k in keys)
        ):
            raise PlanError(
                "join() needs on= a column name or a list of column names present "
                "in both tables, e.g. on='resident_id'"
            )
        return self._then(p.Join(self._node, other._node, tuple(keys), how))

    def group_by(self, *keys: str) -> Grouped:
        """Groups of rows with equal values of `keys`; follow with .agg(…)."""
        if not keys or not all(isinstance(k, str) for k in keys):
            raise PlanError("group_by() takes one or more column names")
        return Grouped(self, tuple(keys))

    def agg(self, **aggregates: Any) -> Table:
        """One row of aggregates over the whole table: agg(n=count(), avg=mean('income'))."""
        return self._then(p.Aggregate(self._node, (), _aggs(aggregates)))

    def histogram(self, column: str, edges: Any) -> Table:
        """Row counts per band of `column`: a table with columns `bin` and `n`, the same as
        derive(bin=col(column).bucket(edges)).group_by("bin").agg(n=count())."""
        if not isinstance(column, str):
            raise PlanError(
                "histogram() takes a column name and a list of edges, "
                "e.g. histogram('income', [0, 1000, 5000])"
            )
        binned = self.derive(bin=col(column).bucket(edges))
        return binned.group_by("bin").agg(n=count())

    def with_totals(self, *keys: str) -> Table:
        """An aggregated table with its totals as rows of their own: over each named key
        (all keys when none is named), every combination down to the grand total. A total
        row holds None in the keys it adds up over; Released.margins lists those rows."""
        node = self._node
        if not isinstance(node, p.Aggregate):
            raise PlanError(
                "with_totals() comes after agg(), e.g. "
                "t.group_by('district', 'sex').agg(n=count()).with_totals()"
            )
        if not all(isinstance(k, str) for k in keys):
            raise PlanError("with_totals() takes group key names, e.g. with_totals('sex')")
        return self._then(dataclasses.replace(node, totals=tuple(keys) or node.keys))

    def collect(self) -> Released:
        """Run the aggregated plan and receive what the disclosure rules release: plain values,
        None in each suppressed cell."""
        if not isinstance(self._node, p.Aggregate):
            raise PlanError(
                "collect() releases aggregates only; rows never leave the sandbox. "
                "Aggregate first, e.g. .group_by('district').agg(n=count()) or .agg(n=count())",
                sign="probe",
            )
        return Released(self._channel.collect(p.plan_to_json(self._node)))

    def __repr__(self) -> str:
        return f"<table from {', '.join(repr(s.dataset) for s in p.scans(self._node))}>"


class Grouped:
    """A table grouped by keys (group_by(…)); aggregate it with agg(…)."""

    __slots__ = ("_table", "_keys")

    def __init__(self, table: Table, keys: tuple[str, ...]) -> None:
        self._table = table
        self._keys = keys

    def agg(self, **aggregates: Any) -> Table:
        """One row per group: its keys, then each named aggregate, e.g. agg(n=count())."""
        t = self._table
        return t._then(p.Aggregate(t._node, self._keys, _aggs(aggregates)))


class Released:
    """A released aggregate: column names, rows of plain values, suppressed cells as None."""

    __slots__ = ("_body_json", "_columns", "_rows", "_suppressed")

    def __init__(self, body: dict[str, Any]) -> None:
        self._body_json = body
        self._columns: list[str] = [c["name"] for c in body["columns"]]
        self._rows: list[list[Any]] = body["rows"]
        self._suppressed = body.get("suppressed", [])

    @property
    def columns(self) -> list[str]:
        """The column names, in order."""
        return list(self._columns)

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        """The rows as tuples of plain values (None where suppressed)."""
        return [tuple(r) for r in self._rows]

    @property
    def suppressed(self) -> list[tuple[int, str]]:
        """The suppressed cells as (row index, column name)."""
        return [(int(i), str(c)) for i, c in self._suppressed]

    def column(self, name: str) -> list[Any]:
        """The values of one column, top to bottom."""
        if name not in self._columns:
            raise PlanError(f"no column {name!r}; columns: {', '.join(self._columns)}")
        i = self._columns.index(name)
        return [r[i] for r in self._rows]

    def row(self, i: int) -> dict[str, Any]:
        """Row `i` as a dict of column name to value."""
        return dict(zip(self._columns, self._rows[i]))

    def lookup(self, **keys: Any) -> dict[str, Any] | None:
        """The first row whose columns equal the given values, as a dict, or None."""
        for r in self._rows:
            d = dict(zip(self._columns, r))
            if all(d.get(k) == v for k, v in keys.items()):
                return d
        return None

    @property
    def margins(self) -> list[int]:
        """The rows that are totals (with_totals()): None in a key there means "all"."""
        return [int(i) for i in self._body_json.get("margins", [])]

    def __len__(self) -> int:
        """The number of rows."""
        return len(self._rows)

    def sort(self, column: str, descending: bool = False) -> Released:
        """The rows ordered by `column`; suppressed (None) cells last."""
        return Released(derived.sort(self._body_json, column, descending))

    def head(self, n: int = 5) -> Released:
        """The first `n` rows."""
        return Released(derived.head(self._body_json, n))

    def pivot(self, index: str, columns: str, values: str) -> Released:
        """One row per `index` value, one column per `columns` value, holding `values`."""
        return Released(derived.pivot(self._body_json, index, columns, values))

    def lag(
        self, column: str, periods: int = 1, name: str | None = None, by: str | None = None
    ) -> Released:
        """A new column with `column` from `periods` rows earlier (within each `by` group)."""
        return Released(derived.lag(self._body_json, column, periods, name, by))

    def pct_change(
        self, column: str, periods: int = 1, name: str | None = None, by: str | None = None
    ) -> Released:
        """A new column with the fractional change of `column` from `periods` rows earlier
        (within each `by` group)."""
        return Released(derived.pct_change(self._body_json, column, periods, name, by))

    def _body(self) -> dict[str, Any]:
        return self._body_json

    def __repr__(self) -> str:
        return f"<released table: {len(self._rows)} rows × {len(self._columns)} columns>"


def namespace(channel: Channel, params: dict[str, Any]) -> dict[str, Any]:
    """The job language's names, bound to one job's channel."""

    def table(name: str) -> Table:
        """The dataset `name` as a lazy table (nothing is read until collect())."""
        if not isinstance(name, str):
            raise PlanError("table() takes a dataset name, e.g. table('population')", sign="probe")
        return Table(p.Scan(name), channel)

    def emit(name: str, value: Any) -> None:
        """Release `value` (a collected table or a plain value) as the job's output `name`."""
        channel.emit(name, value)

    def emit_table(name: str, columns: Any = None, rows: Any = None) -> None:
        """Emit a table written in the job from released values (marked derived)."""
        channel.emit(name, Released(derived.build(columns, rows)))

    return {
        "table": table,
        "col": col,
        "lit": lit,
        "count": count,
        "sum": sum_,
        "mean": mean,
        "count_distinct": count_distinct,
        "var": var,
        "std": std,
        "min": min_,
        "max": max_,
        "quantile": quantile,
        "count_if": count_if,
        "mean_of": mean_of,
        "count_nonnull": count_nonnull,
        "share": share,
        "case": case,
        "emit": emit,
        "emit_table": emit_table,
        "params": params,
    }


# The language's own classes: an error naming one came from treating it as something else.
LANGUAGE_TYPES = frozenset({"Expr", "Aggregate", "Table", "Grouped", "Released"})

LANGUAGE_NAMES = (
    "table",
    "col",
    "lit",
    "count",
    "sum",
    "mean",
    "count_distinct",
    "var",
    "std",
    "min",
    "max",
    "quantile",
    "count_if",
    "mean_of",
    "count_nonnull",
    "share",
    "case",
    "emit",
    "emit_table",
    "params",
)
