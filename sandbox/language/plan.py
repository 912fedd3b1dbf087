"""Plan nodes: the pure data that operator code builds and the engine executes.

A plan crosses a process boundary as JSON (from the jail to the job driver), so the
driver must treat it as untrusted input: `plan_from_json` validates every field and
every node validates itself in ``__post_init__``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sandbox.errors import PlanError

Scalar = None | bool | int | float | str

# name -> (min args, max args); every argument is an Expr.
FUNCTIONS: dict[str, tuple[int, int]] = {
    "add": (2, 2),
    "sub": (2, 2),
    "mul": (2, 2),
    "div": (2, 2),
    "neg": (1, 1),
    "eq": (2, 2),
    "ne": (2, 2),
    "lt": (2, 2),
    "le": (2, 2),
    "gt": (2, 2),
    "ge": (2, 2),
    "and": (2, 2),
    "or": (2, 2),
    "not": (1, 1),
    "isin": (2, 2),
    "between": (3, 3),
    "is_null": (1, 1),
    "year": (1, 1),
    "month": (1, 1),
    # years_until(start, end): whole years from one date to another (an age at a date).
    "years_until": (2, 2),
    "startswith": (2, 2),
    "endswith": (2, 2),
    "bucket": (2, 2),
    # cast(x, "int"|"float"|"string"); abs(x); round(x, ndigits).
    "cast": (2, 2),
    "abs": (1, 1),
    "round": (2, 2),
    # case(cond1, value1, cond2, value2, …, default): an odd count, at least one pair.
    "case": (3, 2 * 64 + 1),
}

CAST_KINDS = ("int", "float", "string")

AGGREGATES: dict[str, bool] = {  # name -> takes an argument
    "count": False,
    "sum": True,
    "mean": True,
    "count_distinct": True,
    "var": True,
    "std": True,
    "min": True,
    "max": True,
    "quantile": True,
    # Conditional counts: the argument is a condition; the rows where it holds count.
    "count_if": True,
    "mean_of": True,
}

# Aggregates of a condition: its rows are selected as a filter selects them, and the people
# for whom it holds are released as a set of their own (the audit compares it with the
# group's: a condition true for all but one is that one person's condition).
CONDITIONAL = frozenset({"count_if", "mean_of"})

# Aggregates whose cells add up along a line: what a share or a total is taken of.
ADDITIVE = frozenset({"count", "sum", "count_if"})

# Aggregates of magnitudes, which one large contribution can dominate (counts are not).
MAGNITUDES = frozenset({"sum", "mean", "var", "std", "quantile"})

# Aggregates that take a number besides their column: quantile(col, q) with q in [0, 1].
PARAM_AGGREGATES = frozenset({"quantile"})

MAX_PLAN_DEPTH = 64
MAX_PLAN_NODES = 5_000
# Datasets one plan may read (a chain of joins reads one more per join).
MAX_PLAN_SCANS = 8
MAX_LIST_VALUES = 10_000
NAME_MAX = 128
INT_MIN, INT_MAX = -(2**63), 2**63 - 1


def check_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or len(name) > NAME_MAX:
        raise PlanError(
            f"{what} must be a non-empty string of at most {NAME_MAX} characters",
            sign=None if isinstance(name, str) else "probe",
        )
    if name.startswith("__"):
        raise PlanError(f"{what} may not start with '__' (reserved for the engine)", sign="escape")
    return name


def _check_scalar(value: object) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise PlanError("literal numbers must be finite")
    # Arrow computes in 64-bit integers; a larger literal cannot be compared or added.
    if isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
        raise PlanError("literal integers must fit in 64 bits; use a float for larger numbers")
    if value is not None and not isinstance(value, (bool, int, float, str)):
        raise PlanError(
            f"literal of type {type(value).__name__} is not supported; use numbers, strings, "
            "booleans or None",
            sign="probe",
        )


@dataclass(frozen=True)
class Col:
    name: str

    def __post_init__(self) -> None:
        check_name(self.name, "column name")


@dataclass(frozen=True)
class Lit:
    """A literal; a tuple value is a list of scalars (for `isin` and `bucket`)."""

    value: Scalar | tuple[Scalar, ...]

    def __post_init__(self) -> None:
        if isinstance(self.value, tuple):
            if len(self.value) > MAX_LIST_VALUES:
                raise PlanError(f"lists in expressions hold at most {MAX_LIST_VALUES} values")
            for v in self.value:
                _check_scalar(v)
        else:
            _check_scalar(self.value)


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple[Expr, ...]

    def __post_init__(self) -> None:
        if self.fn not in FUNCTIONS:
            raise PlanError(f"unknown function '{self.fn}'")
        lo, hi = FUNCTIONS[self.fn]
        if not lo <= len(self.args) <= hi:
            raise PlanError(f"function '{self.fn}' takes {lo} argument(s), got {len(self.args)}")
        if self.fn == "case" and len(self.args) % 2 == 0:
            raise PlanError("case() takes (condition, value) pairs and a default")


Expr = Col | Lit | Call


# Digits an aggregate may be rounded to at the source: from millions to 1e-15.
ROUND_DIGITS = (-6, 15)


@dataclass(frozen=True)
class Agg:
    fn: str
    arg: Expr | None = None
    param: float | None = None
    # Released rounded to this many decimal digits (half away from zero), when set.
    digits: int | None = None
    # Set for a share: the cell released as a fraction of the total of the cells sharing
    # these keys' values (() for the whole table's total).
    within: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.within is not None:
            if self.fn not in ADDITIVE:
                raise PlanError(
                    f"share() takes count(), sum(…) or count_if(…), whose cells add up to a "
                    f"total; {self.fn}() does not"
                )
            for name in self.within:
                check_name(name, "share() within column name")
            if len(set(self.within)) != len(self.within):
                raise PlanError("share(within=…) columns must be distinct")
        lo, hi = ROUND_DIGITS
        if self.digits is not None and (
            isinstance(self.digits, bool)
            or not isinstance(self.digits, int)
            or not lo <= self.digits <= hi
        ):
            raise PlanError(f"round() of an aggregate takes a whole number of digits, {lo} to {hi}")
        if self.fn not in AGGREGATES:
            raise PlanError(f"unknown aggregate '{self.fn}'; available: {', '.join(AGGREGATES)}")
        if self.fn in PARAM_AGGREGATES:
            q = self.param
            if (
                isinstance(q, bool)
                or not isinstance(q, (int, float))
                or not math.isfinite(q)
                or not 0 <= q <= 1
            ):
                raise PlanError(
                    f"aggregate '{self.fn}' needs a number between 0 and 1, "
                    "e.g. quantile('income', 0.5) for the median"
                )
        elif self.param is not None:
            raise PlanError(f"aggregate '{self.fn}' takes only a column or expression")
        if AGGREGATES[self.fn] and self.arg is None:
            raise PlanError(f"aggregate '{self.fn}' needs a column or expression")
        if not AGGREGATES[self.fn] and self.arg is not None:
            raise PlanError(f"aggregate '{self.fn}' takes no argument")


@dataclass(frozen=True)
class Scan:
    dataset: str

    def __post_init__(self) -> None:
        check_name(self.dataset, "dataset name")


@dataclass(frozen=True)
class Filter:
    input: Node
    predicate: Expr


@dataclass(frozen=True)
class Derive:
    input: Node
    columns: tuple[tuple[str, Expr], ...]

    def __post_init__(self) -> None:
        if not self.columns:
            raise PlanError("derive() needs at least one name=expression")
        for name, _ in self.columns:
            check_name(name, "derived column name")


@dataclass(frozen=True)
class Select:
    input: Node
    columns: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.columns:
            raise PlanError("select() needs at least one column")
        for name in self.columns:
            check_name(name, "column name")


# Group keys an aggregation with totals or shares may have: margins are taken over every
# combination of them, which doubles with each key.
MAX_MARGIN_KEYS = 3


@dataclass(frozen=True)
class Aggregate:
    input: Node
    keys: tuple[str, ...]
    aggs: tuple[tuple[str, Agg], ...]
    # Set by with_totals(): the keys whose totals are released too, as rows of their own
    # (the margins of a cross-tabulation). None: no totals.
    totals: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.aggs:
            raise PlanError("agg() needs at least one name=aggregate, e.g. agg(n=count())")
        names = [*self.keys, *(n for n, _ in self.aggs)]
        for name in names:
            check_name(name, "output column name")
        if len(set(names)) != len(names):
            raise PlanError("output column names of an aggregation must be distinct")
        if self.totals is not None:
            self._check_keys(self.totals, "with_totals()")
            if len(set(self.totals)) != len(self.totals):
                raise PlanError("with_totals() columns must be distinct")
        for name, a in self.aggs:
            if a.within is not None:
                self._check_keys(a.within, f"share() of {name!r}: within=")
        if margin_sets(self) and len(self.keys) > MAX_MARGIN_KEYS:
            raise PlanError(
                f"totals and shares are taken over at most {MAX_MARGIN_KEYS} group keys; "
                "group by fewer columns"
            )

    def _check_keys(self, names: tuple[str, ...], what: str) -> None:
        for name in names:
            if name not in self.keys:
                raise PlanError(
                    f"{what} names {name!r}, which is not a group key; "
                    f"the keys are: {', '.join(self.keys) or 'none'}"
                )


def margin_sets(node: Aggregate) -> tuple[tuple[str, ...], ...]:
    """The groupings besides the plan's own whose cells a release needs, largest first: for
    with_totals(T), every grouping that leaves out some of T's keys (down to the grand
    total); for a share within W, every grouping between W and all the keys (the totals the
    share is taken of, and those linking them to the cells)."""
    keys = node.keys
    wanted: set[tuple[str, ...]] = set()
    subsets = [
        tuple(k for j, k in enumerate(keys) if mask >> j & 1) for mask in range(2 ** len(keys))
    ]
    if node.totals is not None:
        kept = set(keys) - set(node.totals)
        wanted |= {s for s in subsets if kept <= set(s)}
    for _, a in node.aggs:
        if a.within is not None:
            wanted |= {s for s in subsets if set(a.within) <= set(s)}
    wanted.discard(keys)
    return tuple(sorted(wanted, key=lambda s: (-len(s), [keys.index(k) for k in s])))


def shown_margins(node: Aggregate) -> frozenset[tuple[str, ...]]:
    """The margin groupings released as rows (with_totals()); the others only serve shares."""
    if node.totals is None:
        return frozenset()
    kept = set(node.keys) - set(node.totals)
    return frozenset(s for s in margin_sets(node) if kept <= set(s))


# "inner" first: the default, which a plan's JSON leaves out.
JOIN_KINDS = ("inner", "left", "anti")


@dataclass(frozen=True)
class Join:
    """Equality join: rows of `left` and `right` whose `on` columns are all equal (a null key
    matches nothing, as in SQL). `how`: "inner" keeps the matches; "left" also keeps each
    left row that matches nothing, its right columns null; "anti" keeps only the left rows
    that match nothing, with the left columns alone. Otherwise the result has the left
    columns, then the right columns other than the keys; `left` is the primary side, whose
    rows are the contributors."""

    left: Node
    right: Node
    on: tuple[str, ...]
    how: str = "inner"

    def __post_init__(self) -> None:
        if self.how not in JOIN_KINDS:
            raise PlanError(
                f"join(how=...) must be one of {', '.join(repr(k) for k in JOIN_KINDS)}, "
                "e.g. how='left' to keep the left rows that match nothing"
            )
        if not self.on:
            raise PlanError("join() needs the column(s) to join on, e.g. on='resident_id'")
        for name in self.on:
            check_name(name, "join column name")
        if len(set(self.on)) != len(self.on):
            raise PlanError("join() columns must be distinct")
        if len(scans(self)) > MAX_PLAN_SCANS:
            raise PlanError(
                f"one plan may read at most {MAX_PLAN_SCANS} tables; "
                "join fewer tables per collect()"
            )


Node = Scan | Filter | Derive | Select | Join | Aggregate


def scans(node: Node) -> tuple[Scan, ...]:
    """Every table a plan reads, left to right: the first is the primary (left-most) one.

    A table joined with itself appears twice, once per read."""
    out: list[Scan] = []
    stack: list[Node] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Scan):
            out.append(n)
        elif isinstance(n, Join):
            stack += [n.right, n.left]
        else:
            stack.append(n.input)
    return tuple(out)


def scan_of(node: Node) -> Scan:
    """The primary (left-most) table of a plan."""
    return scans(node)[0]


def bucket_edges(node: Node, column: str) -> tuple[Scalar, ...] | None:
    """The edges of `bucket()` that made `column` as `node` gives it, or None when the column
    is not banded there: its bands are released in edge order and with their bounds, not
    sorted as the text of their labels."""
    stack: list[Node] = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, Derive):
            made = dict(n.columns)
            if column in made:
                e = made[column]
                if (
                    isinstance(e, Call)
                    and e.fn == "bucket"
                    and isinstance(e.args[1], Lit)
                    and isinstance(e.args[1].value, tuple)
                ):
                    return e.args[1].value
                return None
            stack.append(n.input)
        elif isinstance(n, Join):
            stack += [n.right, n.left]
        elif isinstance(n, Scan):
            continue
        else:
            stack.append(n.input)
    return None


def bucket_bounds(edges: tuple[Scalar, ...]) -> list[list[Scalar]]:
    """Each band's [low, high) for `edges`, in order: below the first edge, between each
    pair, from the last (None where a band is open)."""
    ends: list[Scalar] = [None, *edges, None]
    return [[lo, hi] for lo, hi in zip(ends, ends[1:])]


# --- JSON form -------------------------------------------------------------------------


def expr_to_json(e: Expr) -> Any:
    if isinstance(e, Col):
        return {"col": e.name}
    if isinstance(e, Lit):
        return {"lit": list(e.value) if isinstance(e.value, tuple) else e.value}
    return {"fn": e.fn, "args": [expr_to_json(a) for a in e.args]}


def plan_to_json(n: Node) -> Any:
    if isinstance(n, Scan):
        return {"op": "scan", "dataset": n.dataset}
    if isinstance(n, Join):
        return {
            "op": "join",
            "left": plan_to_json(n.left),
            "right": plan_to_json(n.right),
            "on": list(n.on),
            # Left out for an inner join: plans written before `how` keep their JSON (and hash).
            **({"how": n.how} if n.how != "inner" else {}),
        }
    base = plan_to_json(n.input)
    if isinstance(n, Filter):
        return {"op": "filter", "input": base, "predicate": expr_to_json(n.predicate)}
    if isinstance(n, Derive):
        return {
            "op": "derive",
            "input": base,
            "columns": [[k, expr_to_json(v)] for k, v in n.columns],
        }
    if isinstance(n, Select):
        return {"op": "select", "input": base, "columns": list(n.columns)}
    out = {
        "op": "aggregate",
        "input": base,
        "keys": list(n.keys),
        "aggs": [[k, _agg_to_json(a)] for k, a in n.aggs],
    }
    if n.totals is not None:
        out["totals"] = list(n.totals)
    return out


def _agg_to_json(a: Agg) -> dict[str, Any]:
    d: dict[str, Any] = {"fn": a.fn, "arg": None if a.arg is None else expr_to_json(a.arg)}
    if a.param is not None:
        d["param"] = a.param
    if a.digits is not None:
        d["digits"] = a.digits
    if a.within is not None:
        d["within"] = list(a.within)
    return d


def _names(x: Any) -> tuple[str, ...] | None:
    """An optional list of column names from a JSON plan."""
    if x is None:
        return None
    if not isinstance(x, list) or not all(isinstance(v, str) for v in x):
        raise PlanError("malformed plan")
    return tuple(x)


def _obj(x: Any, keys: set[str]) -> dict[str, Any]:
    if not isinstance(x, dict) or set(x) != keys:
        raise PlanError("malformed plan")
    return x


def expr_from_json(x: Any, depth: int = 0) -> Expr:
    if depth > MAX_PLAN_DEPTH:
        raise PlanError(f"expressions may nest at most {MAX_PLAN_DEPTH} deep")
    if isinstance(x, dict) and set(x) == {"col"}:
        return Col(x["col"])
    if isinstance(x, dict) and set(x) == {"lit"}:
        v = x["lit"]
        return Lit(tuple(v) if isinstance(v, list) else v)
    d = _obj(x, {"fn", "args"})
    if not isinstance(d["fn"], str) or not isinstance(d["args"], list):
        raise PlanError("malformed plan")
    return Call(d["fn"], tuple(expr_from_json(a, depth + 1) for a in d["args"]))


def _too_large(x: Any) -> bool:
    """Whether a JSON plan has more than MAX_PLAN_NODES objects and lists, counted without
    recursion (the plan is untrusted)."""
    stack, seen = [x], 0
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        else:
            continue
        seen += 1
        if seen > MAX_PLAN_NODES:
            return True
    return False


def plan_from_json(x: Any, depth: int = 0) -> Node:
    if depth == 0 and _too_large(x):
        # Validating and evaluating cost time in proportion; a plan this large is an attack
        # on the driver (an expression doubled many times), not an analysis.
        raise PlanError(
            f"a plan may have at most {MAX_PLAN_NODES} parts (columns, literals, "
            "functions, steps); simplify the expressions of this collect()",
            sign="exhaustion",
        )
    if depth > MAX_PLAN_DEPTH:
        raise PlanError(f"plans may chain at most {MAX_PLAN_DEPTH} operations")
    op = x.get("op") if isinstance(x, dict) else None
    if op == "scan":
        return Scan(_obj(x, {"op", "dataset"})["dataset"])
    if op == "filter":
        d = _obj(x, {"op", "input", "predicate"})
        return Filter(plan_from_json(d["input"], depth + 1), expr_from_json(d["predicate"]))
    if op == "derive":
        d = _obj(x, {"op", "input", "columns"})
        cols = d["columns"]
        if not isinstance(cols, list) or not all(isinstance(c, list) and len(c) == 2 for c in cols):
            raise PlanError("malformed plan")
        return Derive(
            plan_from_json(d["input"], depth + 1), tuple((c[0], expr_from_json(c[1])) for c in cols)
        )
    if op == "select":
        d = _obj(x, {"op", "input", "columns"})
        if not isinstance(d["columns"], list):
            raise PlanError("malformed plan")
        return Select(plan_from_json(d["input"], depth + 1), tuple(d["columns"]))
    if op == "join":
        d = _obj(x, {"op", "left", "right", "on"} | ({"how"} & set(x)))
        how = d.get("how", "inner")
        if not isinstance(d["on"], list) or not isinstance(how, str):
            raise PlanError("malformed plan")
        return Join(
            plan_from_json(d["left"], depth + 1),
            plan_from_json(d["right"], depth + 1),
            tuple(d["on"]),
            how,
        )
    if op == "aggregate":
        given = set(x) & {"totals"}
        d = _obj(x, {"op", "input", "keys", "aggs"} | given)
        if not isinstance(d["keys"], list) or not isinstance(d["aggs"], list):
            raise PlanError("malformed plan")
        aggs = []
        for item in d["aggs"]:
            if not isinstance(item, list) or len(item) != 2:
                raise PlanError("malformed plan")
            given = set(item[1]) if isinstance(item[1], dict) else set()
            a = _obj(item[1], {"fn", "arg"} | (given & {"param", "digits", "within"}))
            if not isinstance(a["fn"], str):
                raise PlanError("malformed plan")
            arg = None if a["arg"] is None else expr_from_json(a["arg"])
            aggs.append(
                (
                    item[0],
                    Agg(a["fn"], arg, a.get("param"), a.get("digits"), _names(a.get("within"))),
                )
            )
        return Aggregate(
            plan_from_json(d["input"], depth + 1),
            tuple(d["keys"]),
            tuple(aggs),
            _names(d.get("totals")),
        )
    raise PlanError("malformed plan")


def describe_expr(e: Expr) -> str:
    """A readable rendering for error messages: column names and literals of the code only."""
    if isinstance(e, Col):
        return f"col({e.name!r})"
    if isinstance(e, Lit):
        return repr(list(e.value)) if isinstance(e.value, tuple) else repr(e.value)
    return f"{e.fn}({', '.join(describe_expr(a) for a in e.args)})"


def shape(node: Node) -> tuple[Any, list[Any]]:
    """A plan with its literals taken out, and the literals in order: two plans of one shape
    differ only in constants (a filter's bound, a parameter), which is how a search over
    values looks (the release gate's detection compares shapes across jobs)."""
    literals: list[Any] = []

    def strip(x: Any) -> Any:
        if isinstance(x, dict):
            if set(x) == {"lit"}:
                literals.append(x["lit"])
                return {"lit": "?"}
            return {k: strip(v) for k, v in x.items()}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x

    return strip(plan_to_json(node)), literals
