"""Checking a plan against the catalog before anything is read.

Produces a `CheckedPlan`: the plan, its dataset, the scan columns it needs, the output types,
and `usage` (dataset → column → uses) that the contract check compares with its grants.
Derived columns carry their source columns (lineage), so a use of a derived column counts as
a use of every column it was computed from: `derive(x=col("resident_id"))` cannot launder an
identifier into a group key.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from contracts.document import Use
from sandbox.catalog.models import ColumnInfo, DatasetInfo
from sandbox.errors import DisclosureRefused, PlanError
from sandbox.language import plan as p

NUMERIC = frozenset({"int", "float"})

# A quasi-identifier with more distinct values than this may only be grouped by in a
# coarsened form (year(), month(), bucket(), a comparison…), never raw.
MAX_RAW_QUASI_GROUPS = 100

# Functions whose result has few distinct values whatever their input. Not case(): its
# result is one of its values, which may be as fine as the column they come from.
COARSENING = frozenset(
    {
        "bucket",
        "year",
        "month",
        # Whole years between two dates: an age, as coarse as a year of birth.
        "years_until",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "and",
        "or",
        "not",
        "isin",
        "between",
        "is_null",
        "startswith",
        "endswith",
    }
)

# Roles whose single values may be released by min()/max(): an extreme is one person's value.
EXTREME_ROLES = frozenset({"attribute"})
# Aggregates whose value is one row's value (or between two): coarsened on sensitive columns.
COARSENED_ON_SENSITIVE = frozenset({"quantile"})
ORDERED = frozenset({"int", "float", "string", "date"})


def kind_of(arrow_type: str) -> str:
    t = arrow_type.lower()
    if t.startswith(("int", "uint")):
        return "int"
    if t.startswith(("float", "double", "halffloat", "decimal")):
        return "float"
    if t in ("string", "large_string", "utf8", "large_utf8"):
        return "string"
    if t.startswith(("date", "timestamp")):
        return "date"
    if t == "bool":
        return "bool"
    return "other"


# A column of one table read by the plan: (position of its scan in `plan.scans(...)`, name).
# Positions, not dataset names, so the two reads of a table joined with itself stay apart.
Source = tuple[int, str]

# Kinds a join key may have; keys join within one kind, or numbers with numbers.
JOINABLE = frozenset({"int", "float", "string", "date", "bool"})


@dataclass(frozen=True)
class Field:
    kind: str
    sources: frozenset[Source]
    coarse: bool = True  # False: grouping by it could single out rare quasi-identifier values
    raw: bool = False  # a table's own column, as read (not computed by derive())
    # The right-side reads of left joins whose match it depends on: null where none matched.
    matched: frozenset[int] = frozenset()


@dataclass
class _Usage:
    uses: dict[Source, set[Use]] = field(default_factory=dict)

    def add(self, sources: frozenset[Source], use: Use | None) -> None:
        """Note a use of each source (None: read, for no use in particular)."""
        for s in sources:
            uses = self.uses.setdefault(s, set())
            if use is not None:
                uses.add(use)


@dataclass(frozen=True)
class ScanInfo:
    """One table the plan reads and the columns read from it (catalog order, no more than
    the plan uses)."""

    dataset: DatasetInfo
    columns: tuple[str, ...]


@dataclass(frozen=True)
class CheckedPlan:
    plan: p.Aggregate
    dataset: DatasetInfo  # the primary (left-most) table: its rows are the contributors
    scan_columns: tuple[str, ...]  # columns read from `dataset`
    output_kinds: tuple[tuple[str, str], ...]
    usage: dict[str, dict[str, frozenset[Use]]]
    # Set for a differentially private release: per aggregate, the [lower, upper] its values
    # are clamped to before summing (None for count). None: an exact release, as always.
    clamp: tuple[tuple[float, float] | None, ...] | None = None
    # Output columns released only coarsened (2 significant figures): quantiles of sensitive
    # columns, whose exact value is one person's value.
    coarsen: tuple[str, ...] = ()
    # Every table read, in the order of `plan.scans(plan)`; empty means `dataset` alone.
    scans: tuple[ScanInfo, ...] = ()
    # Set for an exact release that disclosure control must check: the engine then also
    # reports each cell's contributing rows and its largest contributions (engine.protection).
    disclosure_stats: bool = False
    # Aggregates whose contributors are the rows whose value comes from sensitive data: their
    # argument is an expression over a sensitive column, and a row whose value stays the same
    # when that column's value changes (constant padding, a branch that ignores it) is not
    # a contribution. Per read, the sensitive columns the engine evaluates perturbed for it.
    tainted: frozenset[int] = frozenset()
    shadowed: tuple[tuple[str, ...], ...] = ()
    # The keys of joins with no key recorded unique on either side (see _Checker).
    many_to_many: tuple[tuple[str, ...], ...] = ()
    # Per aggregate, for magnitudes (sum, mean, var, std, quantile): what they measure, named
    # by the columns their values come from ("population.income"); the release audit keeps
    # the people who contribute to each such measure apart (None: counts).
    measures: tuple[str | None, ...] = ()
    # Set for an exact release: a quantile is released as the mean of this many order
    # statistics around its position, never as one person's value (0: exact, as computed).
    quantile_window: int = 0
    # Left and anti joins: (a right-side read, the primary read of its join's left side). A
    # row that matched nothing there has no right-side person; its left one stands in, as
    # for a filter, so that a cell is not suppressed for how few rows matched.
    unmatched: tuple[tuple[int, int], ...] = ()
    # Per aggregate, the right-side reads of left joins whose columns its value comes from:
    # only the rows that matched there count for it (the others' values are padding).
    matched_only: tuple[frozenset[int], ...] = ()

    @property
    def unique(self) -> bool:
        """One table read, whose rows are each a different person: counting rows counts
        people."""
        if len(self.reads) != 1:
            return False
        named = self.dataset.named_by
        return named is None or bool(named.unique)

    @property
    def reads(self) -> tuple[ScanInfo, ...]:
        return self.scans or (ScanInfo(self.dataset, self.scan_columns),)

    @property
    def datasets(self) -> tuple[DatasetInfo, ...]:
        """The distinct datasets read, primary first."""
        out: dict[str, DatasetInfo] = {}
        for read in self.reads:
            out.setdefault(read.dataset.name, read.dataset)
        return tuple(out.values())


def _lit_kind(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    return "string"


def _iso_date(value: object) -> bool:
    try:
        dt.date.fromisoformat(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


def _comparable(a: str, b: str) -> bool:
    if "null" in (a, b):
        return True
    if a in NUMERIC and b in NUMERIC:
        return True
    # ISO date strings compare with dates: col("birth_date") >= "1960-01-01".
    return a == b or {a, b} == {"date", "string"}


class _Typer:
    def __init__(self, schema: dict[str, Field]) -> None:
        self.schema = schema

    def sources(self, e: p.Expr) -> frozenset[Source]:
        if isinstance(e, p.Col):
            return self.schema[e.name].sources if e.name in self.schema else frozenset()
        if isinstance(e, p.Call):
            return frozenset().union(*(self.sources(a) for a in e.args))
        return frozenset()

    def matched(self, e: p.Expr) -> frozenset[int]:
        if isinstance(e, p.Col):
            return self.schema[e.name].matched if e.name in self.schema else frozenset()
        if isinstance(e, p.Call):
            return frozenset().union(*(self.matched(a) for a in e.args))
        return frozenset()

    def coarse(self, e: p.Expr) -> bool:
        if isinstance(e, p.Col):
            return self.schema[e.name].coarse if e.name in self.schema else True
        if isinstance(e, p.Call):
            if e.fn == "case":  # as coarse as its values; the conditions only choose
                values = [*e.args[1:-1:2], e.args[-1]]
                return all(self.coarse(v) for v in values)
            return e.fn in COARSENING or all(self.coarse(a) for a in e.args)
        return True

    def kind(self, e: p.Expr) -> str:
        if isinstance(e, p.Col):
            if e.name not in self.schema:
                raise PlanError(
                    f"no column {e.name!r} here; available: {', '.join(sorted(self.schema))}"
                )
            return self.schema[e.name].kind
        if isinstance(e, p.Lit):
            if isinstance(e.value, tuple):
                raise PlanError("a list can only be used with isin() or bucket()")
            return _lit_kind(e.value)
        return self._call(e)

    def _fail(self, e: p.Call, kinds: list[str], need: str) -> PlanError:
        return PlanError(f"{p.describe_expr(e)}: {e.fn} needs {need}, got {' and '.join(kinds)}")

    def _call(self, e: p.Call) -> str:
        fn = e.fn
        if fn in ("isin", "bucket"):
            return self._list_call(e)
        kinds = [self.kind(a) for a in e.args]
        if fn in ("add", "sub", "mul", "div", "neg"):
            if not all(k in NUMERIC or k == "null" for k in kinds):
                raise self._fail(e, kinds, "numbers")
            return "float" if fn == "div" or "float" in kinds else "int"
        if fn in ("eq", "ne", "lt", "le", "gt", "ge"):
            if not _comparable(*kinds):
                raise self._fail(e, kinds, "two values of comparable types")
            return "bool"
        if fn == "between":
            if not (_comparable(kinds[0], kinds[1]) and _comparable(kinds[0], kinds[2])):
                raise self._fail(e, kinds, "values of comparable types")
            return "bool"
        if fn in ("and", "or", "not"):
            if not all(k in ("bool", "null") for k in kinds):
                raise self._fail(e, kinds, "conditions (booleans)")
            return "bool"
        if fn == "is_null":
            return "bool"
        if fn in ("year", "month"):
            if kinds[0] != "date":
                raise self._fail(e, kinds, "a date column")
            return "int"
        if fn == "years_until":
            return self._years(e, kinds)
        if fn in ("startswith", "endswith"):
            if kinds != ["string", "string"] or not isinstance(e.args[1], p.Lit):
                raise self._fail(e, kinds, "a string column and a literal string")
            return "bool"
        if fn == "cast":
            return self._cast(e, kinds)
        if fn in ("abs", "round"):
            if kinds[0] not in NUMERIC and kinds[0] != "null":
                raise self._fail(e, kinds[:1], "a number")
            if fn == "round" and not (isinstance(e.args[1], p.Lit) and kinds[1] == "int"):
                raise self._fail(e, kinds, "a number and a whole number of digits")
            return kinds[0]
        if fn == "case":
            return self._case(e, kinds)
        raise PlanError(f"unknown function '{fn}'")

    def _years(self, e: p.Call, kinds: list[str]) -> str:
        """Both ends dates: a date column or expression, or an ISO date literal."""
        for arg, kind in zip(e.args, kinds):
            if kind == "date":
                continue
            if kind == "string" and isinstance(arg, p.Lit) and _iso_date(arg.value):
                continue
            raise self._fail(e, kinds, "two dates (a date column, or 'YYYY-MM-DD')")
        if all(isinstance(a, p.Lit) for a in e.args):
            raise self._fail(e, kinds, "at least one date column")
        return "int"

    def _cast(self, e: p.Call, kinds: list[str]) -> str:
        target = e.args[1].value if isinstance(e.args[1], p.Lit) else None
        if target not in p.CAST_KINDS:
            raise self._fail(e, kinds, "a value and one of 'int', 'float', 'string'")
        if target != "string" and kinds[0] not in (*NUMERIC, "string", "bool", "null"):
            raise self._fail(e, kinds[:1], f"a number, string or boolean to become {target}")
        return str(target)

    def _case(self, e: p.Call, kinds: list[str]) -> str:
        conditions, values = kinds[:-1:2], [*kinds[1:-1:2], kinds[-1]]
        if not all(k in ("bool", "null") for k in conditions):
            raise self._fail(e, conditions, "conditions (booleans) in each (condition, value)")
        present = {k for k in values if k != "null"}
        if present <= NUMERIC and len(present) == 2:
            return "float"
        if len(present) > 1:
            raise self._fail(e, sorted(present), "values of one type (and the default too)")
        return present.pop() if present else "null"

    def _list_call(self, e: p.Call) -> str:
        target, values = e.args
        kind = self.kind(target)
        if not isinstance(values, p.Lit) or not isinstance(values.value, tuple):
            raise PlanError(f"{e.fn}() takes a list of literal values")
        if e.fn == "isin":
            for v in values.value:
                if not _comparable(kind, _lit_kind(v)):
                    raise self._fail(e, [kind, _lit_kind(v)], "list values of the column's type")
            return "bool"
        edges = values.value
        if kind not in NUMERIC or not all(_lit_kind(v) in NUMERIC for v in edges):
            raise self._fail(e, [kind], "a numeric column and numeric edges")
        if any(b <= a for a, b in zip(edges, edges[1:])):  # type: ignore[operator]
            raise PlanError(
                f"{p.describe_expr(e)}: bucket() edges must be strictly increasing, "
                "e.g. [18, 35, 60]"
            )
        return "string"


def check_group_key(ds: DatasetInfo, column: str) -> None:
    """Refuse a raw group key that disclosure rules never allow (the same rules the full
    plan check applies, for a key named directly in the code)."""
    c = ds.column(column)
    if c is None:
        return
    schema = {column: Field(kind_of(c.type), frozenset({(0, column)}), _raw_is_coarse(c))}
    plan = p.Aggregate(p.Scan(ds.name), (column,), (("n", p.Agg("count")),))
    _check_aggregate(plan, schema, _Typer(schema), _Usage(), _roles((ds,)))


def _raw_is_coarse(c: ColumnInfo) -> bool:
    if c.role != "quasi_identifier":
        return True
    return c.distinct is not None and c.distinct <= MAX_RAW_QUASI_GROUPS


def _roles(read: tuple[DatasetInfo, ...] | list[DatasetInfo]) -> Callable[[Source], str]:
    def role(src: Source) -> str:
        c = read[src[0]].column(src[1])
        return c.role if c else "attribute"

    return role


@dataclass
class _Checker:
    """Walks a plan bottom-up, typing each table it builds and noting what it reads."""

    available: dict[str, DatasetInfo]
    read: list[DatasetInfo] = field(default_factory=list)
    usage: _Usage = field(default_factory=_Usage)
    used: set[Source] = field(default_factory=set)
    # Joins in which no key is a column the catalog records unique on either side: each row
    # may match many rows of the other table, and one person's rows many times over.
    many_to_many: list[tuple[str, ...]] = field(default_factory=list)
    # See CheckedPlan.unmatched.
    unmatched: list[tuple[int, int]] = field(default_factory=list)

    def _unique(self, f: Field) -> bool:
        if not f.raw or len(f.sources) != 1:
            return False
        ((i, column),) = f.sources
        c = self.read[i].column(column)
        return c is not None and bool(c.unique)

    def relation(self, node: p.Node) -> dict[str, Field]:
        if isinstance(node, p.Scan):
            return self._scan(node)
        if isinstance(node, p.Join):
            return self._join(node)
        if isinstance(node, p.Aggregate):
            raise PlanError("a collected aggregate cannot be aggregated again in one plan")
        schema = self.relation(node.input)
        typer = _Typer(schema)
        if isinstance(node, p.Filter):
            if typer.kind(node.predicate) not in ("bool", "null"):
                raise PlanError(f"filter({p.describe_expr(node.predicate)}) needs a condition")
            src = typer.sources(node.predicate)
            self.usage.add(src, "filter")
            self.used |= src
            return schema
        if isinstance(node, p.Derive):
            new = dict(schema)
            for name, e in node.columns:
                new[name] = Field(
                    typer.kind(e), typer.sources(e), typer.coarse(e), matched=typer.matched(e)
                )
                # Even a derived column no one uses may only read columns the contract grants.
                self.usage.add(typer.sources(e), None)
            return new
        missing = [c for c in node.columns if c not in schema]
        if missing:
            raise PlanError(
                f"select(): no column {missing[0]!r}; available: {', '.join(sorted(schema))}"
            )
        return {c: schema[c] for c in node.columns}

    def _scan(self, node: p.Scan) -> dict[str, Field]:
        ds = self.available.get(node.dataset)
        if ds is None:
            raise PlanError(
                f"dataset {node.dataset!r} is not available to this job; "
                f"available: {', '.join(sorted(self.available)) or 'none'}"
            )
        i = len(self.read)
        self.read.append(ds)
        return {
            c.name: Field(kind_of(c.type), frozenset({(i, c.name)}), _raw_is_coarse(c), raw=True)
            for c in ds.columns
        }

    def _join(self, node: p.Join) -> dict[str, Field]:
        first = len(self.read)
        left = self.relation(node.left)
        middle = len(self.read)
        right = self.relation(node.right)
        right_reads = frozenset(range(middle, len(self.read)))
        if node.how != "inner":
            # After joins inside the right side: an outer join's entry overrides theirs.
            self.unmatched += [(j, first) for j in sorted(right_reads)]
        for side, schema in (("left", left), ("right", right)):
            missing = [k for k in node.on if k not in schema]
            if missing:
                raise PlanError(
                    f"join(): no column {missing[0]!r} in the {side} table; "
                    f"available: {', '.join(sorted(schema))}"
                )
        both = sorted((set(left) & set(right)) - set(node.on))
        if both:
            raise PlanError(
                f"join(): column {both[0]!r} is in both tables but is not a join key, so it "
                f"would be ambiguous; before joining, select() only the columns you need from "
                f"one side, or derive() it under another name there, e.g. "
                f"derive({both[0]}_2=col({both[0]!r})) and select() that"
            )
        if not any(self._unique(side[k]) for side in (left, right) for k in node.on):
            self.many_to_many.append(node.on)
        out = dict(left)
        for k in node.on:
            lk, rk = left[k].kind, right[k].kind
            if not (lk in JOINABLE and rk in JOINABLE and (lk == rk or {lk, rk} <= NUMERIC)):
                raise PlanError(
                    f"join(): key {k!r} is {lk} in the left table and {rk} in the right table; "
                    "keys must be of one kind (numbers may join numbers): convert one side "
                    f"first, e.g. derive({k}=col({k!r}).cast('string'))"
                )
            for side, f in (("left", left[k]), ("right", right[k])):
                if not f.sources:
                    # A key computed from literals alone matches every row with every row:
                    # one side filtered to one person then "contributes" to every cell.
                    raise DisclosureRefused(
                        f"join(): key {k!r} of the {side} table is not computed from any "
                        "column of it; join on columns of both tables (e.g. an identifier "
                        "or a code both tables hold)"
                    )
            src = left[k].sources | right[k].sources
            self.usage.add(left[k].sources, "join")
            self.usage.add(right[k].sources, "join")
            self.used |= src
            out[k] = Field(
                "float" if lk != rk else lk,
                src,
                left[k].coarse and right[k].coarse,
                matched=left[k].matched | right[k].matched,
            )
        if node.how == "anti":
            # The right table only takes rows away: what remains is the left's rows as read.
            return dict(left)
        if node.how == "left" and not self._one_match(node.right, right, node.on):
            raise DisclosureRefused(
                f"join(how='left', on={', '.join(repr(k) for k in node.on)}): the right table "
                "must hold each key at most once (a column the catalog records as a unique "
                "identifier, read through filter/derive/select only), or a few people's rows "
                "would be repeated onto everyone's; join on such an identifier, and join "
                "further tables onto the result rather than inside the right table"
            )
        # A left join's right columns are null where nothing matched (every kind may be null:
        # evaluation is total), literals derived there too.
        outer = right_reads if node.how == "left" else frozenset()
        out.update(
            {c: replace(f, matched=f.matched | outer) for c, f in right.items() if c not in node.on}
        )
        return out

    def _one_match(self, node: p.Node, schema: dict[str, Field], on: tuple[str, ...]) -> bool:
        """Whether each left row matches at most one row of `node`: one table, read through
        row steps that never add rows, with a key column the catalog records unique."""
        while isinstance(node, (p.Filter, p.Derive, p.Select)):
            node = node.input
        return isinstance(node, p.Scan) and any(self._unique(schema[k]) for k in on)


def check_plan(plan: p.Node, datasets: dict[str, DatasetInfo]) -> CheckedPlan:
    if not isinstance(plan, p.Aggregate):
        raise PlanError("only aggregated tables can be collected")
    checker = _Checker(dict(datasets))
    schema = checker.relation(plan.input)
    typer = _Typer(schema)
    role = _roles(checker.read)
    kinds = _check_aggregate(plan, schema, typer, checker.usage, role)
    coarsen = _coarsened(plan, typer, role)
    for k in plan.keys:
        checker.used |= schema[k].sources
    for _, a in plan.aggs:
        if a.arg is not None:
            checker.used |= typer.sources(a.arg)
    reads = tuple(
        ScanInfo(ds, tuple(c.name for c in ds.columns if (i, c.name) in checker.used))
        for i, ds in enumerate(checker.read)
    )
    usage: dict[str, dict[str, set[Use]]] = {}
    for (i, column), uses in checker.usage.uses.items():
        usage.setdefault(checker.read[i].name, {}).setdefault(column, set()).update(uses)
    for ds in checker.read:
        usage.setdefault(ds.name, {})
    tainted, shadowed = _tainted(plan, schema, typer, checker.read)
    return CheckedPlan(
        plan=plan,
        dataset=reads[0].dataset,
        scan_columns=reads[0].columns,
        output_kinds=tuple(kinds),
        usage={
            name: {c: frozenset(u) for c, u in sorted(cols.items())}
            for name, cols in sorted(usage.items())
        },
        coarsen=coarsen,
        scans=reads,
        tainted=tainted,
        shadowed=shadowed,
        many_to_many=tuple(checker.many_to_many),
        measures=tuple(_measure(a, typer, checker.read) for _, a in plan.aggs),
        unmatched=tuple(checker.unmatched),
        matched_only=tuple(
            typer.matched(a.arg) if a.arg is not None else frozenset() for _, a in plan.aggs
        ),
    )


def _measure(a: p.Agg, typer: _Typer, read: list[DatasetInfo]) -> str | None:
    """What a magnitude aggregate measures: its sensitive source columns, or failing those
    all its source columns, as "dataset.column" names (None for counts)."""
    if a.fn not in p.MAGNITUDES or a.arg is None:
        return None
    sources = sorted({(read[j].name, column) for j, column in typer.sources(a.arg)})
    sensitive = [
        (d, c)
        for d, c in sources
        if (info := next(r for r in read if r.name == d).column(c)) is not None
        and info.role == "sensitive"
    ]
    return ",".join(f"{d}.{c}" for d, c in (sensitive or sources)) or "constant"


def _tainted(
    step: p.Aggregate, schema: dict[str, Field], typer: _Typer, read: list[DatasetInfo]
) -> tuple[frozenset[int], tuple[tuple[str, ...], ...]]:
    """The aggregates whose contributions must be traced to sensitive data, and per read the
    numeric sensitive columns that tracing perturbs. A sensitive column aggregated as it is
    needs none: every row with a value contributes it."""
    tainted: set[int] = set()
    shadowed: list[set[str]] = [set() for _ in read]
    for i, (_, a) in enumerate(step.aggs):
        if a.arg is None or a.fn in p.CONDITIONAL:
            # A condition's contributors are the rows it selects, as a filter's are.
            continue
        sensitive = set()
        for j, column in typer.sources(a.arg):
            c = read[j].column(column)
            if c is not None and c.role == "sensitive" and kind_of(c.type) in NUMERIC:
                sensitive.add((j, column))
        bare = isinstance(a.arg, p.Col) and schema[a.arg.name].raw
        if sensitive and not bare:
            tainted.add(i)
            for j, column in sensitive:
                shadowed[j].add(column)
    return frozenset(tainted), tuple(tuple(sorted(cols)) for cols in shadowed)


def _check_aggregate(
    step: p.Aggregate,
    schema: dict[str, Field],
    typer: _Typer,
    usage: _Usage,
    role: Callable[[Source], str],
) -> list[tuple[str, str]]:
    kinds: list[tuple[str, str]] = []
    for key in step.keys:
        if key not in schema:
            raise PlanError(
                f"group_by(): no column {key!r}; available: {', '.join(sorted(schema))}"
            )
        ident = sorted(s[1] for s in schema[key].sources if role(s) == "identifier")
        if ident:
            raise DisclosureRefused(
                f"column {key!r} is (or is derived from) the identifier column {ident[0]!r}; "
                "identifiers can never be grouped by or released"
            )
        if not schema[key].coarse:
            quasi = sorted(s[1] for s in schema[key].sources if role(s) == "quasi_identifier")
            raise DisclosureRefused(
                f"column {key!r} is (or is derived from) the quasi-identifier "
                f"{(quasi or [key])[0]!r}, which has too many distinct values to group by "
                f"as it is; group by a coarsened form, e.g. col({(quasi or [key])[0]!r}).year() "
                "or .bucket([...])"
            )
        usage.add(schema[key].sources, "group_by")
        kinds.append((key, schema[key].kind))
    for name, a in step.aggs:
        if a.arg is None:
            kinds.append((name, "int" if a.within is None else "float"))
            continue
        k = typer.kind(a.arg)
        src = typer.sources(a.arg)
        if a.fn in p.CONDITIONAL:
            # A condition selects rows, as a filter does; it releases no value of its columns.
            if k not in ("bool", "null"):
                raise PlanError(
                    f"{a.fn}({p.describe_expr(a.arg)}) needs a condition, e.g. "
                    f"{a.fn}(col('age') >= 65), got {k}"
                )
            usage.add(src, "filter")
        else:
            _check_agg_arg(a, k, src, role)
            usage.add(src, "aggregate")
        kinds.append((name, "float" if a.within is not None else _agg_kind(a.fn, k)))
    return kinds


def _agg_kind(fn: str, arg_kind: str) -> str:
    if fn in ("count_distinct", "count_if"):
        return "int"
    if fn in ("mean", "var", "std", "quantile", "mean_of"):
        return "float"
    return arg_kind


def _check_agg_arg(
    a: p.Agg, kind: str, src: frozenset[Source], role: Callable[[Source], str]
) -> None:
    assert a.arg is not None
    what = f"{a.fn}({p.describe_expr(a.arg)})"
    ident = sorted(s[1] for s in src if role(s) == "identifier")
    if a.fn == "count_distinct":
        # Counting distinct values releases a count, never a value: any role and type will
        # do, but an identifier only as it is (the number of distinct people). Mixed into an
        # expression (case(income > t, resident_id, 'x')) it counts one person's condition.
        if kind == "other":
            raise PlanError(f"{what} needs a number, string, date or boolean column")
        if ident and not isinstance(a.arg, p.Col):
            raise DisclosureRefused(
                f"{what}: the identifier column {ident[0]!r} may be counted only as it is, "
                f"count_distinct({ident[0]!r}), not inside an expression"
            )
        return
    if ident:
        raise DisclosureRefused(f"{a.fn}() over the identifier column {ident[0]!r} is not allowed")
    if a.fn in ("min", "max"):
        if kind not in ORDERED:
            raise PlanError(f"{what} needs a number, string or date column, got {kind}")
        private = sorted((s[1], role(s)) for s in src if role(s) not in EXTREME_ROLES)
        if private:
            column, r = private[0]
            raise DisclosureRefused(
                f"{a.fn}() over column {column!r} is not allowed: it is a {r.replace('_', '-')} "
                f"column, and its smallest or largest value is one individual's value; use "
                f"quantile({column!r}, 0.05) or a bucketed count instead"
            )
        return
    if kind not in NUMERIC:
        raise PlanError(f"{what} needs a numeric column, got {kind}")


def _coarsened(step: p.Aggregate, typer: _Typer, role: Callable[[Source], str]) -> tuple[str, ...]:
    return tuple(
        name
        for name, a in step.aggs
        if a.fn in COARSENED_ON_SENSITIVE
        and a.arg is not None
        and any(role(s) == "sensitive" for s in typer.sources(a.arg))
    )
