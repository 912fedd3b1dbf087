"""Plan nodes and their JSON form, which the driver reads as untrusted input."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from sandbox.errors import PlanError
from sandbox.language import plan as p
from sandbox.language.plan import (
    AGGREGATES,
    FUNCTIONS,
    MAX_LIST_VALUES,
    MAX_PLAN_DEPTH,
    plan_from_json,
    plan_to_json,
)

AGE, DISTRICT = p.Col("age"), p.Col("区县")


def _args_for(fn: str) -> tuple[p.Expr, ...]:
    if fn == "isin":
        return (DISTRICT, p.Lit(("城关区", "湖滨区")))
    if fn == "bucket":
        return (AGE, p.Lit((18, 35.5, 60)))
    if fn == "case":
        return (p.Call("ge", (AGE, p.Lit(65))), p.Lit("老"), p.Lit("少"))
    if fn == "cast":
        return (AGE, p.Lit("float"))
    lo, _ = FUNCTIONS[fn]
    return (AGE, p.Lit(65), p.Lit(None))[:lo]


def _through_json(node: p.Node) -> p.Node:
    """What the driver receives: the plan serialised and parsed as it is on the wire."""
    return plan_from_json(json.loads(json.dumps(plan_to_json(node), ensure_ascii=False)))


@pytest.mark.parametrize("fn", sorted(FUNCTIONS))
def test_every_function_round_trips(fn: str) -> None:
    node = p.Aggregate(
        p.Filter(p.Scan("人口"), p.Call(fn, _args_for(fn))), (), (("n", p.Agg("count")),)
    )
    assert _through_json(node) == node


@pytest.mark.parametrize("fn", sorted(AGGREGATES))
def test_every_aggregate_round_trips(fn: str) -> None:
    param = 0.25 if fn in p.PARAM_AGGREGATES else None
    agg = p.Agg(fn, p.Call("mul", (AGE, p.Lit(2.5))), param) if AGGREGATES[fn] else p.Agg(fn)
    node = p.Aggregate(p.Scan("population"), ("区县",), (("v", agg),))
    assert _through_json(node) == node


def test_every_node_round_trips_in_one_chain() -> None:
    node: p.Node = p.Scan("population")
    node = p.Filter(
        node,
        p.Call(
            "and",
            (p.Call("ge", (AGE, p.Lit(18))), p.Call("not", (p.Call("is_null", (DISTRICT,)),))),
        ),
    )
    node = p.Derive(
        node,
        (
            ("band", p.Call("bucket", (AGE, p.Lit((18, 60))))),
            ("flag", p.Lit(True)),
            ("empty", p.Lit(())),
            ("s", p.Lit("文字")),
        ),
    )
    node = p.Select(node, ("band", "区县", "age"))
    node = p.Aggregate(
        node,
        ("band", "区县"),
        (("n", p.Agg("count")), ("total", p.Agg("sum", AGE)), ("avg", p.Agg("mean", AGE))),
    )
    back = _through_json(node)
    assert back == node
    assert plan_to_json(back) == plan_to_json(node)


def _valid() -> dict[str, Any]:
    return plan_to_json(
        p.Aggregate(
            p.Derive(
                p.Filter(p.Scan("population"), p.Call("ge", (AGE, p.Lit(65)))),
                (("x", p.Call("add", (AGE, p.Lit(1)))),),
            ),
            ("区县",),
            (("n", p.Agg("count")), ("s", p.Agg("sum", AGE))),
        )
    )


def _mutated(path: list[Any], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(_valid())
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        "scan",
        7,
        {"op": "drop_table", "dataset": "population"},  # unknown op
        {"op": "scan", "dataset": "population", "path": "/etc/passwd"},  # extra key
        {"op": "scan"},  # missing key
        {"op": "scan", "dataset": 5},  # wrong type
        {"op": "scan", "dataset": ""},
        {"op": "scan", "dataset": "__secret"},  # reserved name
        {"op": "scan", "dataset": "x" * 129},
        _mutated(["input", "input", "predicate", "fn"], "system"),  # unknown function
        _mutated(["input", "input", "predicate", "args"], [{"col": "age"}]),  # arity
        _mutated(["input", "input", "predicate", "args", 1], {"lit": float("nan")}),
        _mutated(["input", "input", "predicate", "args", 1], {"lit": float("inf")}),
        _mutated(["input", "input", "predicate", "args", 1], {"lit": 2**64}),
        _mutated(["input", "input", "predicate", "args", 1], {"lit": {"a": 1}}),
        _mutated(["input", "input", "predicate", "args", 1], {"lit": [[1]]}),
        _mutated(
            ["input", "input", "predicate", "args", 1], {"lit": list(range(MAX_LIST_VALUES + 1))}
        ),
        _mutated(["input", "input", "predicate", "args", 1], {"lit": 1, "col": "age"}),
        _mutated(["input", "input", "predicate", "args", 0], {"col": 3}),
        _mutated(["input", "input", "predicate", "args"], "age"),
        _mutated(["input", "input", "predicate", "extra"], 1),
        _mutated(["input", "columns"], [["x"]]),
        _mutated(["input", "columns"], [["__c:n", {"col": "age"}]]),
        _mutated(["input", "columns"], []),
        _mutated(["input", "columns"], {"x": {"col": "age"}}),
        _mutated(["keys"], "区县"),
        _mutated(["keys"], [7]),
        _mutated(["aggs"], []),
        _mutated(["aggs", 0], ["n", {"fn": "median", "arg": None}]),
        _mutated(["aggs", 0], ["n", {"fn": "count", "arg": {"col": "age"}}]),
        _mutated(["aggs", 1], ["s", {"fn": "sum", "arg": None}]),
        _mutated(["aggs", 1], ["s", {"fn": "sum"}]),
        _mutated(["aggs", 1], ["区县", {"fn": "sum", "arg": {"col": "age"}}]),  # duplicate name
        _mutated(["aggs", 1], ("s",)),
        _mutated(["op"], "Aggregate"),
    ],
)
def test_malformed_or_untrusted_plans_are_refused(doc: Any) -> None:
    with pytest.raises(PlanError):
        plan_from_json(doc)


def test_the_valid_base_of_those_cases_is_accepted() -> None:
    assert isinstance(plan_from_json(_valid()), p.Aggregate)


def test_operation_chains_deeper_than_the_limit_are_refused() -> None:
    def chain(n: int) -> dict[str, Any]:
        doc: dict[str, Any] = {"op": "scan", "dataset": "population"}
        for _ in range(n):
            doc = {"op": "filter", "input": doc, "predicate": {"lit": True}}
        return doc

    assert isinstance(plan_from_json(chain(MAX_PLAN_DEPTH)), p.Filter)
    with pytest.raises(PlanError, match="at most 64"):
        plan_from_json(chain(MAX_PLAN_DEPTH + 1))


def test_expressions_nested_deeper_than_the_limit_are_refused() -> None:
    def nested(n: int) -> dict[str, Any]:
        e: dict[str, Any] = {"col": "age"}
        for _ in range(n):
            e = {"fn": "neg", "args": [e]}
        return {"op": "filter", "input": {"op": "scan", "dataset": "d"}, "predicate": e}

    assert isinstance(plan_from_json(nested(MAX_PLAN_DEPTH)), p.Filter)
    with pytest.raises(PlanError, match="nest at most 64"):
        plan_from_json(nested(MAX_PLAN_DEPTH + 1))
    # Far deeper than Python's recursion limit: refused, not a RecursionError.
    with pytest.raises(PlanError):
        plan_from_json(nested(5000))


def test_a_list_at_the_size_limit_is_accepted() -> None:
    assert len(p.Lit(tuple(range(MAX_LIST_VALUES))).value) == MAX_LIST_VALUES  # type: ignore[arg-type]


def test_nodes_validate_themselves() -> None:
    with pytest.raises(PlanError, match="unknown function 'system'"):
        p.Call("system", (AGE,))
    with pytest.raises(PlanError, match="takes 2 argument"):
        p.Call("add", (AGE,))
    with pytest.raises(PlanError, match="available: count, sum, mean"):
        p.Agg("median", AGE)
    with pytest.raises(PlanError, match="distinct"):
        p.Aggregate(p.Scan("d"), ("n",), (("n", p.Agg("count")),))
    with pytest.raises(PlanError, match="at least one"):
        p.Derive(p.Scan("d"), ())


def test_describe_expr_renders_code_not_data() -> None:
    e = p.Call("isin", (DISTRICT, p.Lit(("城关区",))))
    assert p.describe_expr(e) == "isin(col('区县'), ['城关区'])"


def test_scan_of_finds_the_dataset_at_the_bottom_of_a_chain() -> None:
    node = p.Select(p.Filter(p.Scan("population"), p.Lit(True)), ("a",))
    assert p.scan_of(node) == p.Scan("population")


@pytest.mark.parametrize("q", [-0.1, 1.5, None, True, "0.5", float("nan")])
def test_a_quantile_needs_a_number_between_0_and_1(q: object) -> None:
    with pytest.raises(PlanError, match="between 0 and 1"):
        p.Agg("quantile", AGE, q)  # type: ignore[arg-type]


def test_only_quantile_takes_a_parameter() -> None:
    with pytest.raises(PlanError, match="only a column"):
        p.Agg("sum", AGE, 0.5)


def test_an_aggregate_without_a_parameter_keeps_its_two_key_json_form() -> None:
    node = p.Aggregate(
        p.Scan("d"), (), (("s", p.Agg("sum", AGE)), ("q", p.Agg("quantile", AGE, 0.5)))
    )
    aggs = plan_to_json(node)["aggs"]
    assert set(aggs[0][1]) == {"fn", "arg"} and aggs[1][1]["param"] == 0.5


def test_case_needs_pairs_and_a_default() -> None:
    cond = p.Call("ge", (AGE, p.Lit(65)))
    with pytest.raises(PlanError, match="pairs and a default"):
        p.Call("case", (cond, p.Lit(1), cond, p.Lit(2)))


def test_a_plan_larger_than_the_cap_is_refused_before_it_is_parsed() -> None:
    from sandbox.errors import PlanError
    from sandbox.language.plan import MAX_PLAN_NODES, plan_from_json

    expr: dict = {"col": "income"}
    for _ in range(14):  # doubled: 2**14 leaves, as `e = e + e` in a loop builds
        expr = {"fn": "add", "args": [expr, expr]}
    plan = {
        "op": "aggregate",
        "input": {"op": "scan", "dataset": "population"},
        "keys": [],
        "aggs": [["s", {"fn": "sum", "arg": expr}]],
    }
    with pytest.raises(PlanError, match=f"at most {MAX_PLAN_NODES} parts"):
        plan_from_json(plan)


def test_compiling_a_very_long_chain_is_a_refusal_not_a_crash() -> None:
    from sandbox.errors import CompileError
    from sandbox.language.policy import compile_job

    with pytest.raises(CompileError, match="nested too deeply"):
        compile_job("x = " + "1+" * 300 + "1\n")


def test_nesting_is_refused_by_its_count_whatever_the_recursion_limit() -> None:
    """Whether deep code compiles must not depend on how high a library raised the limit."""
    import ast
    import sys

    from sandbox.errors import CompileError
    from sandbox.language.policy import MAX_NESTING, compile_job, nesting

    chain = "x = " + "1+" * MAX_NESTING + "1\n"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)
    try:
        with pytest.raises(CompileError, match=f"nested too deeply .*at most {MAX_NESTING}"):
            compile_job(chain)
    finally:
        sys.setrecursionlimit(limit)
    # Just within the bound compiles, at the default limit, from a stack already 300 deep.
    within = "x = " + "1+" * (MAX_NESTING - 5) + "1\n"
    assert nesting(ast.parse(within)) <= MAX_NESTING

    def deep(n: int) -> object:
        return compile_job(within) if n == 0 else deep(n - 1)

    assert deep(300) is not None
