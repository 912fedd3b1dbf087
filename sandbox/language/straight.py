"""Straight-line jobs: their requests read from the code's syntax, without running it.

Most jobs build a plan or two from the language's own names with literal arguments, collect
them and emit what came back: `t = table("x").filter(col("a") > 1)…collect(); emit("r", t)`.
Such a program can send only one sequence of requests, and that sequence is read here by
evaluating its syntax tree over a small fragment of Python: assignments to names, calls of the
language's functions and of the public methods of its tables, groupings and expressions,
literals, and the operators that build expressions (`2024 - col("y")`, `col("a") >= 65`). What
an evaluation touches is the language's own objects, built from literals, never the code's.

Anything else — a loop, a condition, a function or lambda, a subscript other than
`params["name"]`, arithmetic on plain values, any other name or attribute, `print`, a released
table used for anything but emit() (sorted by one of its columns or cut with head() first, at
most), a refusal by the language — makes `requests` return None, and the job runs in its jail
process as before, which reports what is wrong with the same words and line numbers it always
did. The driver answers the requests read here as it answers a job process's (`jail.process`).
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.language import plan as p
from sandbox.language.api import (
    LANGUAGE_NAMES,
    Aggregate,
    Expr,
    Grouped,
    Released,
    Table,
    namespace,
)
from sandbox.language.policy import check_source, compile_checked


@dataclass(frozen=True)
class Collect:
    plan: Any  # the plan's JSON form, as Table.collect() sends it


# A released table's reordering before it is emitted: ("sort", {"column": …, "descending": …})
# or ("head", {"n": …}), applied by the language's own `Released` methods.
Step = tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class Emit:
    name: str
    collect: int | None  # the collect() whose released table is emitted, or None for `value`
    value: Any = None  # a plain value (None, bool, int, float, str)
    steps: tuple[Step, ...] = ()  # applied to the released table, in order


@dataclass(frozen=True)
class _Reordered:
    """A released table sorted or cut (`sort()`, `head()`), to be emitted."""

    collect: int
    steps: tuple[Step, ...]


def reordered(body: dict[str, Any], steps: tuple[Step, ...]) -> dict[str, Any]:
    """`body` with `steps` applied, as the job process's `Released` methods apply them."""
    for name, arguments in steps:
        body = getattr(Released(body), name)(**arguments)._body()
    return body


Request = Collect | Emit


class _Unsupported(Exception):
    """The code leaves the fragment: the job runs in its jail."""


def _public_methods(cls: type) -> frozenset[str]:
    return frozenset(n for n, v in vars(cls).items() if not n.startswith("_") and callable(v))


# The names a straight-line job may call: the language's, less `params` (read only by its
# subscript, `params["name"]`) and `emit_table` (it builds tables from released values).
_FUNCTIONS = frozenset(LANGUAGE_NAMES) - {"params", "emit_table"}
_METHODS: dict[type, frozenset[str]] = {
    cls: _public_methods(cls) for cls in (Table, Grouped, Expr, Aggregate)
}
_LANGUAGE = (Table, Grouped, Expr, Aggregate)
_PLAIN = (str, int, float, bool, type(None))
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


def requests(code: str, params: Mapping[str, Any]) -> tuple[Request, ...] | None:
    """The requests `code` sends with `params`, in order, when it is a straight-line plan
    program; None when it is not (or when the language refuses it: the jail then says why)."""
    return _requests(code, json.dumps(params, sort_keys=True, ensure_ascii=False))


@functools.lru_cache(maxsize=256)
def _requests(code: str, params: str) -> tuple[Request, ...] | None:
    # Kept per source text and parameters: the same job is submitted again and again.
    try:
        # What the job process would refuse to compile is left to it, to refuse.
        tree = check_source(code)
        compile_checked(code)
        return _Reader(json.loads(params)).program(tree)
    except Exception:  # noqa: BLE001 - whatever it is, the jail runs the job and reports it
        return None


class _Recorder:
    """The channel of the reading: collect() returns an empty table of its own, by which an
    emit() of it is traced back to its collect()."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.bodies: list[dict[str, Any]] = []
        # Each collect()'s released columns: its keys, then its aggregates, as released.
        self.columns: list[frozenset[str]] = []

    def collect(self, plan: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"kind": "table", "columns": [], "rows": [], "suppressed": []}
        node = p.plan_from_json(plan)
        assert isinstance(node, p.Aggregate)  # Table.collect() sends aggregates only
        self.requests.append(Collect(plan))
        self.bodies.append(body)
        self.columns.append(frozenset([*node.keys, *(name for name, _ in node.aggs)]))
        return body

    def index(self, value: Released) -> int:
        return next(i for i, b in enumerate(self.bodies) if b is value._body())

    def emit(self, name: Any, value: Any) -> None:
        if not isinstance(name, str):
            raise _Unsupported
        if isinstance(value, Released):
            self.requests.append(Emit(name, self.index(value)))
        elif isinstance(value, _Reordered):
            self.requests.append(Emit(name, value.collect, steps=value.steps))
        elif isinstance(value, _PLAIN):
            self.requests.append(Emit(name, None, value))
        else:
            raise _Unsupported


class _Reader:
    def __init__(self, params: Mapping[str, Any]) -> None:
        self.channel = _Recorder()
        names = namespace(self.channel, {})
        self.functions = {n: names[n] for n in _FUNCTIONS}
        self.params = params
        self.variables: dict[str, Any] = {}

    def program(self, tree: ast.Module) -> tuple[Request, ...]:
        for statement in tree.body:
            if (
                isinstance(statement, ast.Assign)
                and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)
            ):
                self.variables[statement.targets[0].id] = self.value(statement.value)
            elif isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Call):
                self.value(statement.value)
            elif isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                continue  # a docstring
            else:
                raise _Unsupported
        return tuple(self.channel.requests)

    def value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant):
            return _constant(node.value)
        if isinstance(node, ast.Name):
            if node.id in self.variables:
                return self.variables[node.id]
            raise _Unsupported
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [self.argument(e) for e in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Call):
            return self.call(node)
        if isinstance(node, ast.Subscript):
            return self.parameter(node)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node)
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _on_expressions(
                _BINARY[type(node.op)], self.value(node.left), self.value(node.right)
            )
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            left, right = self.value(node.left), self.value(node.comparators[0])
            return _on_expressions(_COMPARE[type(node.ops[0])], left, right)
        raise _Unsupported

    def parameter(self, node: ast.Subscript) -> Any:
        """`params["name"]`: the job's parameter, when it is a plain value or a list of them."""
        if not (
            isinstance(node.value, ast.Name)
            and node.value.id == "params"
            and "params" not in self.variables
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
            and node.slice.value in self.params
        ):
            raise _Unsupported
        value = self.params[node.slice.value]
        if isinstance(value, list) and all(isinstance(v, _PLAIN) for v in value):
            return [_constant(v) for v in value]
        return _constant(value)

    def argument(self, node: ast.expr) -> Any:
        value = self.value(node)
        if isinstance(value, (Released, _Reordered)):
            raise _Unsupported  # a released table is only ever emitted
        return value

    def unary(self, node: ast.UnaryOp) -> Any:
        operand = self.value(node.operand)
        if isinstance(node.op, ast.USub) and isinstance(operand, (int, float)):
            if not isinstance(operand, bool):
                return -operand
        if isinstance(operand, Expr) and isinstance(node.op, (ast.USub, ast.Invert)):
            return -operand if isinstance(node.op, ast.USub) else ~operand
        raise _Unsupported

    def call(self, node: ast.Call) -> Any:
        if any(k.arg is None for k in node.keywords) or any(
            isinstance(a, ast.Starred) for a in node.args
        ):
            raise _Unsupported
        function = self.callee(node.func)
        emitting = isinstance(node.func, ast.Name) and node.func.id == "emit"
        # emit()'s value may be a released table; nothing else takes one.
        args = [
            self.value(a) if emitting and i == 1 else self.argument(a)
            for i, a in enumerate(node.args)
        ]
        kwargs = {k.arg: self.argument(k.value) for k in node.keywords if k.arg is not None}
        result = function(*args, **kwargs)
        if result is not None and not isinstance(result, (*_LANGUAGE, Released, _Reordered)):
            raise _Unsupported  # min()/max()/sum() of plain values: Python's, left to the jail
        return result

    def callee(self, node: ast.expr) -> Callable[..., Any]:
        if isinstance(node, ast.Name):
            if node.id in self.variables or node.id not in self.functions:
                raise _Unsupported
            return self.functions[node.id]  # type: ignore[no-any-return]
        if isinstance(node, ast.Attribute):
            owner = self.value(node.value)
            if isinstance(owner, (Released, _Reordered)):
                return self.reordering(owner, node.attr)
            allowed = _METHODS.get(type(owner), frozenset())
            if node.attr not in allowed:
                raise _Unsupported
            return getattr(owner, node.attr)  # type: ignore[no-any-return]
        raise _Unsupported

    def reordering(self, table: Released | _Reordered, method: str) -> Callable[..., Any]:
        """`sort()` or `head()` of a released table, whose arguments are checked here against
        what they can meet (the table's columns are its plan's), so that applying them to the
        released table cannot fail: anything else is left to the job process."""
        if method not in _REORDERINGS:
            raise _Unsupported
        collect, steps = (
            (self.channel.index(table), ())
            if isinstance(table, Released)
            else (table.collect, table.steps)
        )
        columns = self.channel.columns[collect]

        def step(*args: Any, **kwargs: Any) -> _Reordered:
            bound = _REORDERINGS[method].bind(None, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(list(bound.arguments.items())[1:])
            if method == "sort" and not (
                isinstance(arguments["column"], str)
                and arguments["column"] in columns
                and isinstance(arguments["descending"], bool)
            ):
                raise _Unsupported
            n = arguments.get("n")
            if method == "head" and (isinstance(n, bool) or not isinstance(n, int) or n < 0):
                raise _Unsupported
            return _Reordered(collect, (*steps, (method, arguments)))

        return step


_REORDERINGS = {name: inspect.signature(getattr(Released, name)) for name in ("sort", "head")}


def _constant(value: Any) -> Any:
    # Finite numbers only: a job process cannot send an infinity (its frames are strict JSON).
    if isinstance(value, float) and not math.isfinite(value):
        raise _Unsupported
    if not isinstance(value, _PLAIN):
        raise _Unsupported  # bytes, complex, Ellipsis
    return value


def _on_expressions(op: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    """An operator that builds an expression: one side must be one (operators on plain values
    are Python's, and left to the jail)."""
    if not (isinstance(left, Expr) or isinstance(right, Expr)):
        raise _Unsupported
    if isinstance(left, (Released, _Reordered)) or isinstance(right, (Released, _Reordered)):
        raise _Unsupported
    return op(left, right)
