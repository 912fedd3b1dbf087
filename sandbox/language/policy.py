"""Compiling operator code: RestrictedPython plus our own stricter checks.

RestrictedPython rewrites attribute, item and iteration access into guard calls and refuses
underscore names. It still compiles `import`, classes and generators, which the job language
does not need, and it leaves unknown names to fail at run time; we refuse all of those before
anything runs, with the line number, so an operator learns at submission what is wrong.
"""

from __future__ import annotations

import ast
import builtins
import operator
from typing import Any

from RestrictedPython.compile import compile_restricted_exec
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safer_getattr,
)
from RestrictedPython.PrintCollector import PrintCollector
from RestrictedPython.transformer import RestrictingNodeTransformer

from sandbox.errors import CompileError
from sandbox.language.api import LANGUAGE_NAMES

MAX_SOURCE_BYTES = 64 * 1024
MAX_SOURCE_NODES = 50_000
# Levels of nesting of the syntax tree. Compiling recurses per level, so without a fixed bound
# whether deep code compiles would depend on the interpreter's recursion limit, which a
# library may have raised, and on how deep the stack already is. Far beyond what an analysis
# writes (a chain of twenty method calls with their arguments is some fifty levels).
MAX_NESTING = 100
FILENAME = "<job>"

_SAFE_BUILTIN_NAMES = (
    "None",
    "True",
    "False",
    "abs",
    "all",
    "any",
    "bool",
    "dict",
    "divmod",
    "enumerate",
    "float",
    "int",
    "isinstance",
    "len",
    "list",
    "max",
    "min",
    "range",
    "repr",
    "reversed",
    "round",
    "sorted",
    "str",
    "tuple",
    "zip",
    "ArithmeticError",
    "Exception",
    "IndexError",
    "KeyError",
    "LookupError",
    "TypeError",
    "ValueError",
    "ZeroDivisionError",
)

_FORBIDDEN_NODES: dict[type, str] = {
    ast.Import: "imports are not available in job code; everything you need is built in "
    "(table, col, count, sum, mean, emit, params)",
    ast.ImportFrom: "imports are not available in job code; everything you need is built in",
    ast.ClassDef: "classes are not available in job code; use functions and plain values",
    ast.Global: "'global' is not available in job code",
    ast.Nonlocal: "'nonlocal' is not available in job code",
    ast.Yield: "generators are not available in job code; build a list instead",
    ast.YieldFrom: "generators are not available in job code; build a list instead",
    ast.GeneratorExp: "generator expressions are not available in job code; use a list "
    "comprehension [ … ] instead",
    ast.AsyncFunctionDef: "async code is not available in job code",
    ast.Await: "async code is not available in job code",
    ast.AsyncFor: "async code is not available in job code",
    ast.AsyncWith: "async code is not available in job code",
    ast.With: "'with' is not available in job code",
    # A class pattern reads attributes by name without going through the attribute guard.
    ast.MatchClass: "class patterns in 'match' are not available in job code; compare "
    "values with == instead",
}


def allowed_names() -> frozenset[str]:
    return frozenset((*_SAFE_BUILTIN_NAMES, *LANGUAGE_NAMES, "print"))


def bound_names(tree: ast.AST) -> set[str]:
    """Names the code itself binds: assignments, functions, arguments, handlers, patterns."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
            names.add(node.name)
        elif isinstance(node, ast.MatchMapping) and node.rest:
            names.add(node.rest)
        elif isinstance(node, (ast.FunctionDef, ast.Lambda)):
            if isinstance(node, ast.FunctionDef):
                names.add(node.name)
            a = node.args
            for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg):
                if arg is not None:
                    names.add(arg.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


def nesting(tree: ast.AST) -> int:
    """The levels of the deepest path from `tree` to a leaf, found without recursing."""
    deepest, todo = 0, [(tree, 1)]
    while todo:
        node, depth = todo.pop()
        deepest = max(deepest, depth)
        todo.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _position(node: ast.AST) -> tuple[int, int]:
    return getattr(node, "lineno", 0), getattr(node, "col_offset", 0)


def check_source(source: str) -> ast.Module:
    """Parse and apply the job-language rules that RestrictedPython leaves to run time."""
    if len(source.encode("utf-8")) > MAX_SOURCE_BYTES:
        raise CompileError(
            f"job code is larger than {MAX_SOURCE_BYTES // 1024} KiB", sign="exhaustion"
        )
    try:
        tree = ast.parse(source, FILENAME)
    except SyntaxError as e:
        raise CompileError(f"syntax error: {e.msg}", e.lineno) from None
    except (ValueError, RecursionError, MemoryError):
        raise CompileError(
            "job code could not be parsed (too deeply nested or invalid)", sign="exhaustion"
        ) from None
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_SOURCE_NODES:
        # Compiling costs time in proportion, in the API process and again in the job's.
        raise CompileError(
            f"job code has {nodes} syntax elements, more than the "
            f"{MAX_SOURCE_NODES} allowed; simplify it",
            sign="exhaustion",
        )
    depth = nesting(tree)
    if depth > MAX_NESTING:
        raise CompileError(
            f"job code is nested too deeply ({depth} levels, at most {MAX_NESTING}: a very "
            "long chained expression?); split it into several statements",
            sign="exhaustion",
        )
    known = allowed_names() | bound_names(tree)
    # ast.walk is breadth-first; report the violation that comes first in the source.
    for node in sorted(ast.walk(tree), key=_position):
        why = _FORBIDDEN_NODES.get(type(node))
        if why:
            raise CompileError(why, getattr(node, "lineno", None))
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in known:
            raise CompileError(
                f"name '{node.id}' is not available in job code; available: "
                + ", ".join(sorted(LANGUAGE_NAMES))
                + " and basic builtins (len, range, …)",
                node.lineno,
            )
    return tree


def compile_job(source: str) -> Any:
    """Return a code object for `run_compiled`, or raise CompileError with a line number."""
    check_source(source)
    return compile_checked(source)


def compile_checked(source: str) -> Any:
    """`compile_job` for a source `check_source` already passed: RestrictedPython's own
    compilation, without walking the tree through the language rules a second time."""
    try:
        result = compile_restricted_exec(source, FILENAME, policy=RestrictingNodeTransformer)
    except (RecursionError, MemoryError):
        # RestrictedPython's transformer recurses per nesting level: a long chain such as
        # 1+1+…+1 exhausts the stack before Python's own limits are reached.
        raise CompileError(
            "job code is nested too deeply to compile (a very long chained "
            "expression?); split it into several statements",
            sign="exhaustion",
        ) from None
    if result.errors:
        message = result.errors[0]
        line = None
        if message.startswith("Line "):
            head, _, rest = message.partition(": ")
            line = int(head[5:]) if head[5:].isdigit() else None
            message = rest
        raise CompileError(message, line)
    return result.code


def _inplace(op: str, x: Any, y: Any) -> Any:
    ops = {
        "+=": operator.add,
        "-=": operator.sub,
        "*=": operator.mul,
        "/=": operator.truediv,
        "//=": operator.floordiv,
        "%=": operator.mod,
        "**=": operator.pow,
    }
    if op not in ops:
        raise CompileError(f"operator {op} is not available in job code")
    return ops[op](x, y)


_MISSING = object()


def guarded_getattr(obj: Any, name: str, default: Any = _MISSING) -> Any:
    """`safer_getattr`, but a missing attribute is an error that lists what exists, instead of
    a silent None that fails later as "'NoneType' object is not callable"."""
    value = safer_getattr(obj, name, _MISSING)
    if value is not _MISSING:
        return value
    if default is not _MISSING:
        return default
    public = sorted(a for a in dir(type(obj)) if not a.startswith("_"))
    raise AttributeError(
        f"{type(obj).__name__} has no attribute {name!r}"
        + (f"; available: {', '.join(public)}" if len(public) <= 40 else "")
    )


def restricted_globals(language: dict[str, Any]) -> dict[str, Any]:
    safe = {name: getattr(builtins, name) for name in _SAFE_BUILTIN_NAMES}
    return {
        "__builtins__": safe,
        "__name__": "job",
        "__metaclass__": type,
        "_getattr_": guarded_getattr,
        "_getitem_": lambda obj, key: obj[key],
        "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": full_write_guard,
        "_inplacevar_": _inplace,
        "_print_": PrintCollector,
        "_apply_": lambda f, *a, **kw: f(*a, **kw),
        **language,
    }
