"""What can be found wrong in a job's code before it runs, from its source and the language
itself: a method or attribute the language's objects do not have (`order_by` on a table), an
aggregate of a condition, `emit()` or `collect()` inside a loop.

Types are followed only where they are certain: a chain that starts at `table(…)`, `col(…)`,
`lit(…)` or `case(…)`, and names bound exactly once, by a plain assignment, to such a chain.
Methods and their return types are read from the language's classes (`sandbox.language.api`),
so this check knows exactly what the job's process will offer. An error here is a failure the
job would certainly meet at run time; a warning is one it may meet.
"""

from __future__ import annotations

import ast
import functools
import inspect
import typing
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

from sandbox.language import api

Severity = Literal["error", "warning"]
# The language's classes operator code can hold, by the names of the functions making them.
_MAKERS: dict[str, type] = {
    "table": api.Table,
    "col": api.Expr,
    "lit": api.Expr,
    "case": api.Expr,
}
# Aggregates of numbers only (engine.validate): a condition there is refused when it runs.
_AGGREGATES = frozenset({"sum", "mean", "var", "std", "quantile"})
_CLASSES = (api.Table, api.Grouped, api.Released, api.Expr, api.Aggregate)
_LOOPS = (ast.For, ast.While, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


@dataclass(frozen=True)
class Problem:
    line: int | None
    severity: Severity
    message: str
    # What the problem says about the code, for detection (`sandbox.language.signs`).
    sign: str | None = None

    def to_json(self) -> dict[str, Any]:
        code = "code_rejected" if self.severity == "error" else "code_warning"
        return {"line": self.line, "severity": self.severity, "message": self.message, "code": code}


@functools.cache
def members(cls: type) -> dict[str, type | None]:
    """The public members of one of the language's classes: each method with the language
    class it returns (None: a plain value), each property as None."""
    out: dict[str, type | None] = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_"):
            continue
        returned: Any = None
        if inspect.isfunction(member):
            hints = typing.get_type_hints(member, vars(api))
            returned = hints.get("return")
        out[name] = returned if returned in _CLASSES else None
    return out


def _public_name(cls: type) -> str:
    names = {api.Released: "released table", api.Grouped: "grouped table (group_by(…))"}
    return {**names, api.Expr: "expression"}.get(cls, cls.__name__.lower())


def problems(tree: ast.Module) -> list[Problem]:
    """Everything wrong that the source shows, in source order."""
    found: list[Problem] = []
    known = _single_assignments(tree)
    rebound = frozenset(_bindings(tree))
    types: dict[str, type] = {}
    conditions: set[str] = set()
    # Assignments are read in source order, so a name's chain is typed before it is used.
    for node in sorted(ast.walk(tree), key=_position):
        if isinstance(node, ast.Assign) and id(node) in known:
            kind = _type_of(node.value, types)
            if kind is not None:
                types[known[id(node)]] = kind
            if _is_condition(node.value, types, conditions):
                conditions.add(known[id(node)])
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
            _check_attribute(node, types, found)
        if isinstance(node, ast.Call):
            _check_aggregate(node, types, conditions, found)
            _check_arguments(node, types, rebound, found)
    _check_loops(tree, found)
    return sorted(found, key=lambda p: (p.line or 0, p.severity))


@functools.cache
def _functions() -> dict[str, Any]:
    """The language's functions as job code calls them (the namespace of a job)."""
    return dict(api.namespace(_NoChannel(), {}))


class _NoChannel:
    def collect(self, plan: Any) -> dict[str, Any]:
        raise AssertionError("the check never runs code")

    def emit(self, name: str, value: Any) -> None:
        raise AssertionError("the check never runs code")


def _callee(node: ast.Call, types: dict[str, type], rebound: frozenset[str]) -> Any:
    """The language function or method a call certainly reaches, or None."""
    f = node.func
    if isinstance(f, ast.Name) and f.id not in rebound:
        function = _functions().get(f.id)
        return function if callable(function) else None
    if isinstance(f, ast.Attribute):
        owner = _type_of(f.value, types)
        if owner is not None and f.attr in members(owner):
            member = getattr(owner, f.attr)
            return member if inspect.isfunction(member) else None
    return None


def _check_arguments(
    node: ast.Call, types: dict[str, type], rebound: frozenset[str], found: list[Problem]
) -> None:
    """A call to the language with arguments its signature does not take (an unknown
    keyword, one too many): the call fails whatever the data, so it fails here, free."""
    if any(isinstance(a, ast.Starred) for a in node.args) or any(
        k.arg is None for k in node.keywords
    ):
        return  # *args or **kwargs: what they hold is known only when the job runs
    callee = _callee(node, types, rebound)
    if callee is None:
        return
    signature = inspect.signature(callee)
    method = isinstance(node.func, ast.Attribute)
    given = [None] * (len(node.args) + (1 if method else 0))
    try:
        signature.bind(*given, **{k.arg: None for k in node.keywords if k.arg})
    except TypeError as exc:
        params = [n for n in signature.parameters if n != "self"]
        name = node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id  # type: ignore[attr-defined]
        found.append(
            Problem(
                node.lineno,
                "error",
                f"{name}(): {_reason(exc)}; it takes: {', '.join(params) or 'no arguments'}",
            )
        )


def _reason(exc: TypeError) -> str:
    text = str(exc)
    return text.replace("'self' ", "") if text else "these arguments do not fit"


def _position(node: ast.AST) -> tuple[int, int]:
    return getattr(node, "lineno", 0), getattr(node, "col_offset", 0)


def _single_assignments(tree: ast.Module) -> dict[int, str]:
    """Assignments `name = …` of names bound nowhere else (no other assignment, loop target,
    augmented assignment, deletion, function or its parameter, `except … as`, pattern…):
    their type is their value's wherever the name is read."""
    bound = Counter(_bindings(tree))
    return {
        id(n): n.targets[0].id
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign)
        and len(n.targets) == 1
        and isinstance(n.targets[0], ast.Name)
        and bound[n.targets[0].id] == 1
    }


def _bindings(tree: ast.Module) -> list[str]:
    """Every name the code binds, once per place it binds it."""
    names: list[str] = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
            names.append(n.id)
        elif isinstance(n, ast.arg):
            names.append(n.arg)
        elif isinstance(n, (ast.FunctionDef, ast.ClassDef)):
            names.append(n.name)
        elif isinstance(n, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and n.name:
            names.append(n.name)
        elif isinstance(n, ast.MatchMapping) and n.rest:
            names.append(n.rest)
    return names


def _type_of(node: ast.expr, types: dict[str, type]) -> type | None:
    if isinstance(node, ast.Name):
        return types.get(node.id)
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Name):
            return _MAKERS.get(node.func.id)
        if isinstance(node.func, ast.Attribute):
            owner = _type_of(node.func.value, types)
            if owner is not None:
                return members(owner).get(node.func.attr)
    if isinstance(node, (ast.BinOp, ast.Compare, ast.UnaryOp)):
        parts = [node.left, node.right] if isinstance(node, ast.BinOp) else []
        if isinstance(node, ast.Compare):
            parts = [node.left, *node.comparators]
        if isinstance(node, ast.UnaryOp):
            parts = [node.operand]
        if any(_type_of(x, types) is api.Expr for x in parts):
            return api.Expr
    return None


def _check_attribute(node: ast.Attribute, types: dict[str, type], found: list[Problem]) -> None:
    owner = _type_of(node.value, types)
    if owner is None or node.attr.startswith("_") or node.attr in members(owner):
        return
    offered = ", ".join(sorted(members(owner)))
    found.append(
        Problem(
            node.lineno,
            "error",
            f"a {_public_name(owner)} has no '{node.attr}'; it has: {offered}",
            # As reading a missing attribute at run time is (signs.runtime_sign).
            sign="probe",
        )
    )


def _is_condition(node: ast.expr, types: dict[str, type], conditions: set[str]) -> bool:
    if isinstance(node, ast.Name):
        return node.id in conditions
    if isinstance(node, ast.Compare):
        return _type_of(node, types) is api.Expr
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr)):
        return _type_of(node, types) is api.Expr
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
        return _type_of(node, types) is api.Expr
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        conditions = {"isin", "between", "is_null", "startswith", "endswith"}
        return node.func.attr in conditions and _type_of(node.func.value, types) is api.Expr
    return False


def _check_aggregate(
    node: ast.Call, types: dict[str, type], conditions: set[str], found: list[Problem]
) -> None:
    f = node.func
    if not (isinstance(f, ast.Name) and f.id in _AGGREGATES and node.args):
        return
    if _is_condition(node.args[0], types, conditions):
        found.append(
            Problem(
                node.lineno,
                "error",
                f"{f.id}() of a condition: a condition is true or false, not a number; to "
                "count the rows where it holds, count_if(condition); for the share of rows, "
                "mean_of(condition)",
            )
        )


def _check_loops(tree: ast.Module, found: list[Problem]) -> None:
    seen: set[int] = set()
    for loop in ast.walk(tree):
        if not isinstance(loop, _LOOPS):
            continue
        for node in ast.walk(loop):
            if node is loop or id(node) in seen or not isinstance(node, ast.Call):
                continue
            f = node.func
            what = None
            if isinstance(f, ast.Name) and f.id in ("emit", "emit_table"):
                what = f"{f.id}()"
            elif isinstance(f, ast.Attribute) and f.attr == "collect":
                what = "collect()"
            if what is None:
                continue
            seen.add(id(node))
            found.append(
                Problem(
                    node.lineno,
                    "warning",
                    f"{what} inside a loop: a job is quoted for one {what} per place it is "
                    "written, so a second pass through the loop is refused (after what it read "
                    "is paid for); collect once with group_by(), and emit the whole table",
                )
            )
