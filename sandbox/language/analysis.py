"""What can be known about a job before it runs, from its source alone.

Used to quote a job (an upper bound needs the datasets it may scan and how often it may
collect) and to refuse early a job that names a dataset or column its contract does not grant.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass


@dataclass(frozen=True)
class CodeFacts:
    datasets: frozenset[str] | None  # None: some table() name is computed at run time
    columns: frozenset[str]  # literal column names: col("x"), group_by("x"), sum("x")…
    uses: dict[str, frozenset[str]]  # literal column → uses certain from the source alone
    defined: frozenset[str]  # names the code gives new columns (derive/agg keywords)
    collects: int  # call sites of .collect()
    emits: int  # call sites of emit() and emit_table()


_COLUMN_METHODS = {"group_by", "select", "histogram"}
# Aggregates whose first argument is a column (or an expression over columns).
_AGGREGATE_FUNCS = {"sum", "mean", "count_distinct", "var", "std", "min", "max", "quantile"}
# Aggregates of a condition (or of whether a column is null): their columns are filtered on.
_CONDITION_FUNCS = {"count_if", "mean_of", "count_nonnull"}
_COLUMN_FUNCS = {"col", "count_nonnull", *_AGGREGATE_FUNCS}


def _literal_strings(args: list[ast.expr]) -> list[str]:
    return [a.value for a in args if isinstance(a, ast.Constant) and isinstance(a.value, str)]


def _col_literals(node: ast.AST) -> set[str]:
    return {
        n.args[0].value
        for n in ast.walk(node)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Name)
        and n.func.id == "col"
        and n.args
        and isinstance(n.args[0], ast.Constant)
        and isinstance(n.args[0].value, str)
    }


def _join_keys(node: ast.Call) -> list[str]:
    """The literal column names of a join(other, on=…) call: a name or a list of names."""
    on = [k.value for k in node.keywords if k.arg == "on"] or node.args[1:2]
    if not on:
        return []
    if isinstance(on[0], (ast.List, ast.Tuple)):
        return _literal_strings(on[0].elts)
    return _literal_strings(on[:1])


def _uses(tree: ast.Module) -> dict[str, frozenset[str]]:
    """Uses a literal column certainly gets: inside filter(…) it is filtered on, named in
    group_by(…) or histogram(…) it is grouped by, inside an aggregate such as sum(…) or
    quantile(…) it is aggregated, named in join(…, on=…) it is joined on. Columns used through
    derived names are left to the run-time check, which follows lineage."""
    uses: dict[str, set[str]] = {}

    def add(names: set[str] | list[str], use: str) -> None:
        for name in names:
            uses.setdefault(name, set()).add(use)

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr == "filter":
            for arg in node.args:
                add(_col_literals(arg), "filter")
        elif isinstance(f, ast.Attribute) and f.attr == "group_by":
            add(_literal_strings(node.args), "group_by")
        elif isinstance(f, ast.Attribute) and f.attr == "histogram":
            add(_literal_strings(node.args[:1]), "group_by")
        elif isinstance(f, ast.Attribute) and f.attr == "join":
            add(_join_keys(node), "join")
        elif isinstance(f, ast.Name) and f.id in _AGGREGATE_FUNCS and node.args:
            add(_literal_strings(node.args[:1]) + sorted(_col_literals(node.args[0])), "aggregate")
        elif isinstance(f, ast.Name) and f.id in _CONDITION_FUNCS and node.args:
            add(_literal_strings(node.args[:1]) + sorted(_col_literals(node.args[0])), "filter")
    return {k: frozenset(v) for k, v in uses.items()}


def analyse(tree: ast.Module) -> CodeFacts:
    datasets: set[str] = set()
    dynamic = False
    columns: set[str] = set()
    defined: set[str] = set()
    collects = emits = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name):
            if f.id == "table":
                names = _literal_strings(node.args)
                dynamic |= len(names) != len(node.args) or not node.args
                datasets.update(names)
            elif f.id in _COLUMN_FUNCS:
                columns.update(_literal_strings(node.args[:1]))
            elif f.id in ("emit", "emit_table"):
                emits += 1
        elif isinstance(f, ast.Attribute):
            if f.attr == "collect":
                collects += 1
            elif f.attr in _COLUMN_METHODS:
                columns.update(_literal_strings(node.args))
                if f.attr == "histogram":
                    defined.update({"bin", "n"})
            elif f.attr == "join":
                columns.update(_join_keys(node))
            elif f.attr in ("derive", "agg"):
                defined.update(k.arg for k in node.keywords if k.arg)
    return CodeFacts(
        None if dynamic else frozenset(datasets),
        frozenset(columns),
        _uses(tree),
        frozenset(defined),
        collects,
        emits,
    )
