"""The job language's reference (`docs/language.md`) and its editor stub
(`docs/sandbox_job.pyi`), both read from the language's own objects.

    python -m sandbox.language.reference            # write both files
    python -m sandbox.language.reference --check    # exit 1 when either is out of date

Every name job code sees (`api.LANGUAGE_NAMES`) and every public method of the language's
classes is found by inspection, so a new one appears here without being listed. What
inspection cannot tell is kept in tables keyed by name: an example for each, and for
aggregates, expressions and table steps the column kinds they take and the uses they make of
a contract's columns. A name missing from those tables, or without a docstring, stops the
generator with the list of what to write, so nothing new reaches operators undocumented.
"""

from __future__ import annotations

import argparse
import builtins
import collections.abc
import inspect
import re
import sys
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.language import api
from sandbox.language import plan as p

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_PATH = ROOT / "docs" / "language.md"
STUB_PATH = ROOT / "docs" / "sandbox_job.pyi"

# The kinds the engine gives columns (`sandbox.engine.validate.kind_of`) and the uses a
# contract grants (`contracts.document.USES`); spelled here because this layer sits below both.
KINDS = ("int", "float", "string", "date", "bool")
USES = ("group_by", "filter", "aggregate", "join")
NUMBERS = ("int", "float")
ANY_KIND = KINDS

# Classes in the order a job meets them.
CLASS_ORDER = ("Table", "Grouped", "Expr", "Aggregate", "Released")
# Dunders are not methods one calls by name; what is not here is not the language's.
HIDDEN = frozenset({"__init__", "__repr__"})


class ReferenceIncomplete(Exception):
    """A public name of the language lacks a docstring, an example, or its kinds and uses."""


@dataclass(frozen=True)
class Needs:
    """What a function, aggregate or table step needs of the columns it is given: their
    kinds, and the uses of them the contract must grant."""

    kinds: tuple[str, ...] = ()
    uses: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Operator:
    """An operator of expressions: how it is written, what it does, and the plan function
    it builds (`plan.FUNCTIONS`)."""

    spelling: str
    doc: str
    function: str | None


OPERATORS: dict[str, Operator] = {
    "__add__": Operator("a + b", "Sum of two numbers.", "add"),
    "__radd__": Operator("1 + a", "Sum, a constant on the left.", "add"),
    "__sub__": Operator("a - b", "Difference of two numbers.", "sub"),
    "__rsub__": Operator("1 - a", "Difference, a constant on the left.", "sub"),
    "__mul__": Operator("a * b", "Product of two numbers.", "mul"),
    "__rmul__": Operator("2 * a", "Product, a constant on the left.", "mul"),
    "__truediv__": Operator("a / b", "Quotient (a float; null where b is 0).", "div"),
    "__rtruediv__": Operator("1 / a", "Quotient, a constant on the left.", "div"),
    "__neg__": Operator("-a", "Negation.", "neg"),
    "__eq__": Operator("a == b", "Equal (a condition).", "eq"),
    "__ne__": Operator("a != b", "Not equal.", "ne"),
    "__lt__": Operator("a < b", "Less than.", "lt"),
    "__le__": Operator("a <= b", "Less than or equal.", "le"),
    "__gt__": Operator("a > b", "Greater than.", "gt"),
    "__ge__": Operator("a >= b", "Greater than or equal.", "ge"),
    "__and__": Operator("a & b", "Both conditions (use & for `and`).", "and"),
    "__rand__": Operator("True & a", "Both, a constant on the left.", "and"),
    "__or__": Operator("a | b", "Either condition (use | for `or`).", "or"),
    "__ror__": Operator("False | a", "Either, a constant on the left.", "or"),
    "__invert__": Operator("~a", "The opposite condition (use ~ for `not`).", "not"),
    "__bool__": Operator(
        "if a: / a and b",
        "Refused: an expression has no truth value in Python; combine with & | ~.",
        None,
    ),
    "__len__": Operator("len(r)", "The number of rows of a released table.", None),
}

# Plan functions reached other than through an operator: by the expression method, or the
# name, of the same key.
FUNCTION_OF: dict[str, str] = {
    "Expr.isin": "isin",
    "Expr.between": "between",
    "Expr.is_null": "is_null",
    "Expr.year": "year",
    "Expr.month": "month",
    "Expr.years_until": "years_until",
    "Expr.age_at": "years_until",
    "Expr.startswith": "startswith",
    "Expr.endswith": "endswith",
    "Expr.bucket": "bucket",
    "Expr.cast": "cast",
    "Expr.abs": "abs",
    "Expr.round": "round",
    "case": "case",
}

_ORDERED = ("int", "float", "string", "date")
_COMPARABLE = "two values of one kind (numbers compare with numbers)"

NEEDS: dict[str, Needs] = {
    # Aggregates: the columns (or expressions) they are given are used to `aggregate`.
    "count": Needs((), (), "no column: counts rows"),
    "sum": Needs(NUMBERS, ("aggregate",)),
    "mean": Needs(NUMBERS, ("aggregate",)),
    "count_distinct": Needs(
        ANY_KIND, ("aggregate",), "an identifier only as it is, never inside an expression"
    ),
    "var": Needs(NUMBERS, ("aggregate",)),
    "std": Needs(NUMBERS, ("aggregate",)),
    "min": Needs(_ORDERED, ("aggregate",), "attribute columns only"),
    "max": Needs(_ORDERED, ("aggregate",), "attribute columns only"),
    "quantile": Needs(NUMBERS, ("aggregate",), "on sensitive columns released to 2 figures"),
    # Conditional counts select rows as a filter does, and release no value of their columns.
    "count_if": Needs(("bool",), ("filter",), "a condition"),
    "mean_of": Needs(("bool",), ("filter",), "a condition"),
    "count_nonnull": Needs(ANY_KIND, ("filter",), "a column or expression, tested for null"),
    "share": Needs((), (), "of count(), sum(…) or count_if(…); within= names group keys"),
    "case": Needs(("bool",), (), "conditions, then values of one kind (numbers may mix)"),
    # Table steps: the use each makes of the columns it names or reads.
    "Table.filter": Needs(("bool",), ("filter",), "a condition"),
    "Table.derive": Needs(ANY_KIND, (), "columns used as their expressions are used later"),
    "Table.select": Needs(ANY_KIND, ()),
    "Table.join": Needs(
        KINDS, ("join",), "keys of one kind on both sides, numbers with numbers; unique keys"
    ),
    "Table.group_by": Needs(ANY_KIND, ("group_by",), "never identifiers; fine ones coarsened"),
    "Table.agg": Needs(ANY_KIND, ("aggregate",), "as each aggregate needs"),
    "Table.histogram": Needs(NUMBERS, ("group_by",), "numeric edges, strictly increasing"),
    "Table.with_totals": Needs(
        (), (), f"after agg(), naming group keys; at most {p.MAX_MARGIN_KEYS} keys"
    ),
    "Table.collect": Needs((), (), "an aggregated table"),
    "Grouped.agg": Needs(ANY_KIND, ("aggregate",), "as each aggregate needs"),
    # Expressions: their columns count as used by the step that uses the expression.
    "Expr.isin": Needs(ANY_KIND, (), "literal values of the column's kind"),
    "Expr.between": Needs(_ORDERED, (), _COMPARABLE),
    "Expr.is_null": Needs(ANY_KIND, ()),
    "Expr.year": Needs(("date",), ()),
    "Expr.month": Needs(("date",), ()),
    "Expr.years_until": Needs(("date",), (), "a date column or 'YYYY-MM-DD' at either end"),
    "Expr.age_at": Needs(("date",), (), "a date column or 'YYYY-MM-DD' at either end"),
    "Expr.startswith": Needs(("string",), (), "a literal prefix"),
    "Expr.endswith": Needs(("string",), (), "a literal suffix"),
    "Expr.bucket": Needs(NUMBERS, (), "numeric edges, strictly increasing"),
    "Expr.cast": Needs(("int", "float", "string", "bool"), (), "any kind to 'string'"),
    "Expr.abs": Needs(NUMBERS, ()),
    "Expr.round": Needs(NUMBERS, (), "a whole number of digits"),
    "Expr.__add__": Needs(NUMBERS, ()),
    "Expr.__radd__": Needs(NUMBERS, ()),
    "Expr.__sub__": Needs(NUMBERS, ()),
    "Expr.__rsub__": Needs(NUMBERS, ()),
    "Expr.__mul__": Needs(NUMBERS, ()),
    "Expr.__rmul__": Needs(NUMBERS, ()),
    "Expr.__truediv__": Needs(NUMBERS, ()),
    "Expr.__rtruediv__": Needs(NUMBERS, ()),
    "Expr.__neg__": Needs(NUMBERS, ()),
    "Expr.__eq__": Needs(ANY_KIND, (), _COMPARABLE),
    "Expr.__ne__": Needs(ANY_KIND, (), _COMPARABLE),
    "Expr.__lt__": Needs(ANY_KIND, (), _COMPARABLE),
    "Expr.__le__": Needs(ANY_KIND, (), _COMPARABLE),
    "Expr.__gt__": Needs(ANY_KIND, (), _COMPARABLE),
    "Expr.__ge__": Needs(ANY_KIND, (), _COMPARABLE),
    "Expr.__and__": Needs(("bool",), ()),
    "Expr.__rand__": Needs(("bool",), ()),
    "Expr.__or__": Needs(("bool",), ()),
    "Expr.__ror__": Needs(("bool",), ()),
    "Expr.__invert__": Needs(("bool",), ()),
    "Expr.__bool__": Needs((), ()),
}

# One short example per name: job code, with `pop = table("population")` and
# `res = pop.group_by("district").agg(n=count()).collect()` in scope.
EXAMPLES: dict[str, str] = {
    "table": 'pop = table("population")',
    "col": 'pop.filter(col("gender") == "女")',
    "lit": 'pop.derive(source=lit("census"))',
    "count": 'pop.group_by("district").agg(n=count())',
    "sum": 'pop.group_by("district").agg(total=sum("income"))',
    "mean": 'pop.agg(avg_income=mean("income"))',
    "count_distinct": 'pop.group_by("district").agg(kinds=count_distinct("hukou_type"))',
    "var": 'pop.agg(v=var("income"))',
    "std": 'pop.agg(sd=std("income"))',
    "min": 'pop.agg(first=min("birth_date"))',
    "max": 'pop.agg(last=max("birth_date"))',
    "quantile": 'pop.group_by("district").agg(median=quantile("income", 0.5))',
    "count_if": 'pop.group_by("district").agg(women=count_if(col("gender") == "女"))',
    "mean_of": 'pop.group_by("district").agg(local=mean_of(col("hukou_type").startswith("本地")))',
    "count_nonnull": 'pop.agg(with_income=count_nonnull("income"))',
    "share": 'pop.group_by("district", "gender").agg(part=share(count(), within="district"))',
    "case": 'pop.derive(band=case((col("income") < 3000, "low"), default="other"))',
    "emit": 'emit("by_district", res)',
    "emit_table": 'emit_table("share", ["district", "n"], [[r[0], r[1]] for r in res.rows])',
    "params": 'pop.filter(col("birth_date").year() <= params["year"])',
    "Table.filter": 'pop.filter(col("birth_date").year() <= 1959)',
    "Table.derive": 'pop.derive(born=col("birth_date").year())',
    "Table.select": 'pop.select("district", "income")',
    "Table.join": 'pop.join(table("insured").select("resident_id", "scheme"), '
    'on="resident_id", how="left")',
    "Table.group_by": 'pop.group_by("district", "gender")',
    "Table.agg": "pop.agg(n=count())",
    "Table.histogram": 'pop.histogram("income", [0, 1000, 5000])',
    "Table.with_totals": 'pop.group_by("district", "gender").agg(n=count()).with_totals()',
    "Table.collect": 'pop.group_by("district").agg(n=count()).collect()',
    "Grouped.agg": 'pop.group_by("district").agg(n=count(), avg=mean("income"))',
    "Expr.isin": 'col("district").isin(["城关区", "北山区"])',
    "Expr.between": 'col("income").between(1000, 5000)',
    "Expr.is_null": 'col("income").is_null()',
    "Expr.year": 'col("birth_date").year()',
    "Expr.month": 'col("birth_date").month()',
    "Expr.years_until": 'col("birth_date").years_until("2025-12-31")',
    "Expr.age_at": 'col("birth_date").age_at("2025-12-31")',
    "Expr.startswith": 'col("district").startswith("城")',
    "Expr.endswith": 'col("district").endswith("区")',
    "Expr.bucket": 'col("income").bucket([0, 1000, 5000])',
    "Expr.cast": 'col("income").cast("int")',
    "Expr.abs": '(col("income") - 3000).abs()',
    "Expr.round": '(col("income") / 12).round(2)',
    "Expr.__add__": 'col("income") + 100',
    "Expr.__radd__": '100 + col("income")',
    "Expr.__sub__": 'col("income") - 100',
    "Expr.__rsub__": '10000 - col("income")',
    "Expr.__mul__": 'col("income") * 12',
    "Expr.__rmul__": '12 * col("income")',
    "Expr.__truediv__": 'col("income") / 1000',
    "Expr.__rtruediv__": '1 / col("income")',
    "Expr.__neg__": '-col("income")',
    "Expr.__eq__": 'col("gender") == "女"',
    "Expr.__ne__": 'col("gender") != "女"',
    "Expr.__lt__": 'col("income") < 3000',
    "Expr.__le__": 'col("income") <= 3000',
    "Expr.__gt__": 'col("income") > 3000',
    "Expr.__ge__": 'col("income") >= 3000',
    "Expr.__and__": '(col("income") > 0) & (col("gender") == "女")',
    "Expr.__rand__": 'True & (col("income") > 0)',
    "Expr.__or__": '(col("income") < 1000) | (col("income") > 9000)',
    "Expr.__ror__": 'False | (col("income") > 0)',
    "Expr.__invert__": '~col("income").is_null()',
    "Expr.__bool__": 'pop.filter((col("income") > 0) & (col("gender") == "女"))',
    "Aggregate.round": 'pop.agg(avg=mean("income").round(-2))',
    "Released.columns": "res.columns",
    "Released.rows": "res.rows",
    "Released.suppressed": "res.suppressed",
    "Released.column": 'res.column("n")',
    "Released.row": "res.row(0)",
    "Released.lookup": 'res.lookup(district="城关区")',
    "Released.margins": "res.margins",
    "Released.__len__": "len(res)",
    "Released.sort": 'res.sort("n", descending=True)',
    "Released.head": "res.head(3)",
    "Released.pivot": 'res.pivot("district", "gender", "n")',
    "Released.lag": 'res.lag("n", by="district")',
    "Released.pct_change": 'res.pct_change("n", by="district")',
}

# Names that are values, not callables: their type and what they hold.
VALUES: dict[str, tuple[str, str]] = {
    "params": (
        "dict[str, Any]",
        "The job's parameters as submitted (JSON values), e.g. params['year'].",
    ),
}

CLASS_NOTES: dict[str, str] = {
    "Expr": (
        "An expression's columns count as used by the step that uses it: `filter` in "
        "filter(), `group_by` as a group key, `aggregate` inside an aggregate, `join` as a key."
    ),
    "Released": "Released tables hold plain values only: their methods read no data.",
}


# --- what the language offers ----------------------------------------------------------------


class _NoChannel:
    """What the names are bound to for inspection: nothing is ever collected or emitted."""

    def collect(self, plan: Any) -> dict[str, Any]:
        raise AssertionError("the reference only inspects the language")

    def emit(self, name: str, value: Any) -> None:
        raise AssertionError("the reference only inspects the language")


@dataclass(frozen=True)
class Member:
    """One documented thing: a name job code sees, or a member of a language class."""

    key: str  # "mean", "Table.filter", "Expr.__add__"
    name: str  # what is written: "mean", "filter", "__add__"
    owner: str | None  # the class, for members
    obj: Any

    @property
    def is_property(self) -> bool:
        return isinstance(self.obj, property)

    @property
    def is_operator(self) -> bool:
        return self.name.startswith("__")

    @property
    def function(self) -> Callable[..., Any] | None:
        target = self.obj.fget if self.is_property else self.obj
        return target if callable(target) and not isinstance(target, dict) else None

    @property
    def doc(self) -> str:
        if self.is_operator:
            return OPERATORS[self.name].doc if self.name in OPERATORS else ""
        if self.key in VALUES:
            return VALUES[self.key][1]
        return inspect.getdoc(self.obj) or ""


def names() -> list[Member]:
    """Every name job code sees, in the language's order."""
    bound = api.namespace(_NoChannel(), {})
    return [Member(n, n, None, bound[n]) for n in api.LANGUAGE_NAMES]


def classes() -> list[type]:
    """The language's classes, those a job meets first first."""
    found = sorted(api.LANGUAGE_TYPES, key=lambda n: (n not in CLASS_ORDER, _order(n), n))
    return [getattr(api, n) for n in found]


def _order(name: str) -> int:
    return CLASS_ORDER.index(name) if name in CLASS_ORDER else len(CLASS_ORDER)


def members(cls: type) -> list[Member]:
    """The public methods and properties of one class, in source order, operators last."""
    out: list[Member] = []
    for name, obj in vars(cls).items():
        if name in HIDDEN or (name.startswith("_") and not name.startswith("__")):
            continue
        if name.startswith("__") and not inspect.isfunction(obj):
            continue
        if inspect.isfunction(obj) or isinstance(obj, property):
            out.append(Member(f"{cls.__name__}.{name}", name, cls.__name__, obj))
    return sorted(out, key=lambda m: m.is_operator)


def everything() -> list[Member]:
    return [*names(), *(m for cls in classes() for m in members(cls))]


def _needs_kinds(member: Member) -> bool:
    if member.owner is None:
        return member.key in p.AGGREGATES or member.key in FUNCTION_OF
    return member.owner in ("Expr", "Table", "Grouped")


def missing() -> list[str]:
    """What the tables and docstrings lack, one line each; empty when complete."""
    gaps: list[str] = []
    members_ = everything()
    for m in members_:
        if not m.doc.strip():
            where = "OPERATORS" if m.is_operator else "its docstring (sandbox/language/api.py)"
            gaps.append(f"{m.key}: no description; write {where}")
        if m.key not in EXAMPLES:
            gaps.append(f"{m.key}: no example in EXAMPLES")
        if _needs_kinds(m) and m.key not in NEEDS:
            gaps.append(f"{m.key}: no entry in NEEDS (the column kinds and uses it needs)")
        if m.function is None and m.key not in VALUES:
            gaps.append(f"{m.key}: a value without a type and description in VALUES")
    keys = {m.key for m in members_}
    for fn in p.AGGREGATES:
        if fn not in keys:
            gaps.append(f"aggregate {fn}: not a name of the language (api.LANGUAGE_NAMES)")
    reached = set(FUNCTION_OF.values()) | {o.function for o in OPERATORS.values()}
    gaps.extend(
        f"function {fn}: no entry in FUNCTION_OF" for fn in p.FUNCTIONS if fn not in reached
    )
    for table in (EXAMPLES, NEEDS):
        gaps.extend(f"{k}: documented but not in the language" for k in table if k not in keys)
    return gaps


def check_complete() -> None:
    gaps = missing()
    if gaps:
        raise ReferenceIncomplete(
            "the language reference is incomplete; add to sandbox/language/reference.py:\n  "
            + "\n  ".join(gaps)
        )


# --- signatures ------------------------------------------------------------------------------


def _annotation(value: Any) -> str:
    # Annotations are strings: the language's modules use `from __future__ import annotations`.
    if value is inspect.Parameter.empty:
        return ""
    return value if isinstance(value, str) else str(inspect.formatannotation(value))


def _parameter(param: inspect.Parameter) -> str:
    stars: dict[inspect._ParameterKind, str] = {param.VAR_POSITIONAL: "*", param.VAR_KEYWORD: "**"}
    prefix = stars.get(param.kind, "")
    text = prefix + param.name
    if (annotation := _annotation(param.annotation)) != "":
        text += f": {annotation}"
    if param.default is not inspect.Parameter.empty:
        sep = " = " if annotation else "="
        text += f"{sep}{param.default!r}"
    return text


def parameters(fn: Callable[..., Any], with_self: bool) -> list[str]:
    """The parameters as written in a signature, `*` before keyword-only ones included."""
    params = list(inspect.signature(fn).parameters.values())
    if not with_self and params and params[0].name == "self":
        params = params[1:]
    out: list[str] = []
    for i, param in enumerate(params):
        star_needed = param.kind is param.KEYWORD_ONLY and all(
            q.kind not in (q.VAR_POSITIONAL, q.KEYWORD_ONLY) for q in params[:i]
        )
        if star_needed:
            out.append("*")
        out.append(_parameter(param))
    return out


def returns(fn: Callable[..., Any]) -> str:
    return _annotation(inspect.signature(fn).return_annotation)


def signature(member: Member) -> str:
    """How the member is written in a job, with its argument and result types."""
    if member.key in VALUES:
        return f"{member.name}: {VALUES[member.key][0]}"
    fn = member.function
    assert fn is not None
    owner = member.owner.lower() if member.owner else None
    if member.is_property:
        return f"{owner}.{member.name} -> {returns(fn)}"
    args = ", ".join(parameters(fn, with_self=False))
    prefix = f"{owner}." if owner else ""
    return f"{prefix}{member.name}({args}) -> {returns(fn)}"


# --- the reference ---------------------------------------------------------------------------


def render() -> str:
    """`docs/language.md`."""
    check_complete()
    lines = [
        "# The job language",
        "",
        "<!-- Generated by `python -m sandbox.language.reference` from the language itself "
        "(sandbox/language/api.py); edit the docstrings and sandbox/language/reference.py, "
        "not this file. -->",
        "",
        "Job code is Python with these names, basic builtins (`len`, `range`, …) and no "
        "imports. Tables are lazy: "
        "nothing is read until `collect()` of an aggregated table, which returns what the "
        "disclosure rules release.",
        "",
        f"**Column kinds**: {', '.join(f'`{k}`' for k in KINDS)} (dates and timestamps are "
        "`date`). **Uses** a contract grants per column: "
        f"{', '.join(f'`{u}`' for u in USES)}; a job may use a column only as granted, and a "
        "column derived from others counts as a use of each of them.",
        "",
        "## Names",
        "",
        *_section(names()),
    ]
    for cls in classes():
        lines += [f"## {cls.__name__}", "", inspect.getdoc(cls) or "", ""]
        if note := CLASS_NOTES.get(cls.__name__):
            lines += [note, ""]
        found = members(cls)
        lines += _section([m for m in found if not m.is_operator])
        lines += _operators([m for m in found if m.is_operator])
    return "\n".join(lines).rstrip() + "\n"


def _section(found: list[Member]) -> list[str]:
    lines: list[str] = []
    for m in found:
        lines += [f"### `{signature(m)}`", "", m.doc, ""]
        if needs := NEEDS.get(m.key):
            lines += _needs(needs)
        lines += ["```python", EXAMPLES[m.key], "```", ""]
    return lines


def _needs(needs: Needs) -> list[str]:
    kinds = ", ".join(f"`{k}`" for k in needs.kinds) or "none"
    uses = ", ".join(f"`{u}`" for u in needs.uses) or "none of its own"
    note = f" ({needs.note})" if needs.note else ""
    return [f"- Column kinds: {kinds}{note}", f"- Uses: {uses}", ""]


def _cell(text: str) -> str:
    """Text inside a Markdown table cell, where a bare | would end the cell."""
    return text.replace("|", "\\|")


def _operators(found: list[Member]) -> list[str]:
    if not found:
        return []
    lines = [
        "### Operators",
        "",
        "| written | means | column kinds | example |",
        "|---|---|---|---|",
    ]
    for m in found:
        op = OPERATORS[m.name]
        needs = NEEDS.get(m.key)
        kinds = ", ".join(f"`{k}`" for k in needs.kinds) if needs and needs.kinds else ""
        cells = (_cell(op.spelling), _cell(op.doc), kinds, _cell(EXAMPLES[m.key]))
        lines.append("| `{}` | {} | {} | `{}` |".format(*cells))
    return [*lines, ""]


# --- the editor stub -------------------------------------------------------------------------


def render_stub() -> str:
    """`docs/sandbox_job.pyi`: the same names and signatures, for editors and type checkers."""
    check_complete()
    body: list[str] = []
    for cls in classes():
        body += ["", f"class {cls.__name__}:", *_docstring(inspect.getdoc(cls) or "", 4)]
        for m in members(cls):
            body += _stub_member(m, 4)
    body.append("")
    for m in names():
        if m.key in VALUES:
            body += [f"{m.name}: {VALUES[m.key][0]}", *_docstring(m.doc, 0)]
        else:
            body += _stub_member(m, 0)
    header = [
        '"""The job language, for editors and type checkers: generated by `python -m '
        "sandbox.language.reference` from sandbox/language/api.py.",
        "",
        "As __builtins__.pyi at the root of a folder of jobs, Pyright and Pylance complete",
        "`table`, `col`, the aggregates and the table methods with no import; as sandbox_job.pyi,",
        'a copy of a job beginning `from sandbox_job import *` type-checks under mypy."""',
        "",
        *_imports("\n".join(body)),
    ]
    return "\n".join([*header, *body]).rstrip() + "\n"


def _imports(text: str) -> list[str]:
    """Only what the annotations name, so the stub has no unused import."""
    signatures = [line.partition("(")[2] for line in text.splitlines() if "def " in line]
    values = [line.partition(":")[2] for line in text.splitlines() if re.match(r"\w+: ", line)]
    words = set(re.findall(r"\b[A-Za-z_]\w*\b", " ".join([*signatures, *values])))
    lines = []
    for module in (collections.abc, typing):
        wanted = sorted(n for n in words & set(module.__all__) if not hasattr(builtins, n))
        if wanted:
            lines.append(f"from {module.__name__} import {', '.join(wanted)}")
    return lines


def _docstring(doc: str, indent: int) -> list[str]:
    if not doc:
        return []
    pad = " " * indent
    text = doc.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    doc_lines = text.splitlines()
    if len(doc_lines) == 1:
        return [f'{pad}"""{text}"""']
    return [
        f'{pad}"""{doc_lines[0]}',
        *(f"{pad}{x}" if x else "" for x in doc_lines[1:]),
        f'{pad}"""',
    ]


def _stub_member(m: Member, indent: int) -> list[str]:
    fn = m.function
    assert fn is not None
    pad = " " * indent
    args = ", ".join(parameters(fn, with_self=m.owner is not None))
    ignore = _type_ignore(fn)
    lines = [f"{pad}@property"] if m.is_property else []
    lines.append(f"{pad}def {m.name}({args}) -> {returns(fn)}:{ignore}")
    doc = _docstring(m.doc, indent + 4)
    return [*lines, *(doc or [f"{pad}    ..."])]


def _type_ignore(fn: Callable[..., Any]) -> str:
    """The `# type: ignore[…]` of the definition (e.g. `__eq__` returning an expression)."""
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return ""
    first = next((line for line in source.splitlines() if line.strip().startswith("def ")), "")
    match = re.search(r"#\s*type:\s*ignore\[[\w\-, ]+\]", first)
    return f"  {match[0]}" if match else ""


# --- command line ----------------------------------------------------------------------------


def outputs() -> Iterator[tuple[Path, str]]:
    yield REFERENCE_PATH, render()
    yield STUB_PATH, render_stub()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail when a file is out of date")
    args = parser.parse_args(argv)
    try:
        written = list(outputs())
    except ReferenceIncomplete as exc:
        print(exc, file=sys.stderr)
        return 1
    stale = [path for path, text in written if _read(path) != text]
    if args.check:
        for path in stale:
            print(
                f"{path.relative_to(ROOT)} is out of date; run python -m "
                "sandbox.language.reference",
                file=sys.stderr,
            )
        return 1 if stale else 0
    for path, text in written:
        path.write_text(text, encoding="utf-8")
    return 0


def _read(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


if __name__ == "__main__":
    sys.exit(main())
