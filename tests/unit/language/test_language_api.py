"""The operator-facing proxies: they build plans, and explain misuse in the operator's terms."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.errors import PlanError
from sandbox.language import plan as p
from sandbox.language.api import (
    LANGUAGE_NAMES,
    Aggregate,
    Expr,
    Released,
    col,
    count,
    lit,
    mean,
    namespace,
    sum_,
)
from sandbox.language.plan import plan_from_json

BODY = {
    "kind": "table",
    "columns": [{"name": "district", "type": "string"}, {"name": "n", "type": "int64"}],
    "rows": [["城关区", 1520], ["湖滨区", None]],
    "suppressed": [[1, "n"]],
}


class RecordingChannel:
    def __init__(self) -> None:
        self.plans: list[Any] = []
        self.emitted: list[tuple[str, Any]] = []

    def collect(self, plan: Any) -> dict[str, Any]:
        self.plans.append(plan)
        return BODY

    def emit(self, name: str, value: Any) -> None:
        self.emitted.append((name, value))


@pytest.fixture
def channel() -> RecordingChannel:
    return RecordingChannel()


@pytest.fixture
def ns(channel: RecordingChannel) -> dict[str, Any]:
    return namespace(channel, {"year": 2026})


def test_collect_sends_the_plan_as_json_and_wraps_the_released_body(
    ns: dict[str, Any], channel: RecordingChannel
) -> None:
    t = ns["table"]("population").filter(col("age") >= 65).group_by("district")
    released = t.agg(n=count(), avg=mean("income")).collect()
    assert len(channel.plans) == 1
    plan = plan_from_json(channel.plans[0])
    assert plan == p.Aggregate(
        p.Filter(p.Scan("population"), p.Call("ge", (p.Col("age"), p.Lit(65)))),
        ("district",),
        (("n", p.Agg("count")), ("avg", p.Agg("mean", p.Col("income")))),
    )
    assert released.columns == ["district", "n"]
    assert released.rows == [("城关区", 1520), ("湖滨区", None)]
    assert released.column("n") == [1520, None]
    assert released.suppressed == [(1, "n")]
    assert released.lookup(district="城关区") == {"district": "城关区", "n": 1520}
    assert released.lookup(district="没有") is None
    assert released.row(1) == {"district": "湖滨区", "n": None}
    assert len(released) == 2


def test_whole_table_agg_is_an_aggregate_without_keys(
    ns: dict[str, Any], channel: RecordingChannel
) -> None:
    ns["table"]("population").agg(total=sum_("income")).collect()
    plan = plan_from_json(channel.plans[0])
    assert isinstance(plan, p.Aggregate) and plan.keys == ()


@pytest.mark.parametrize(
    "build",
    [
        lambda t: t,
        lambda t: t.filter(col("age") > 1),
        lambda t: t.select("district"),
        lambda t: t.derive(x=col("age") + 1),
    ],
)
def test_collect_of_a_table_that_is_not_aggregated_is_refused_with_an_explanation(
    ns: dict[str, Any], channel: RecordingChannel, build: Any
) -> None:
    with pytest.raises(PlanError) as info:
        build(ns["table"]("population")).collect()
    assert "aggregates only" in info.value.message
    assert ".agg(n=count())" in info.value.message
    assert channel.plans == []


def test_an_expression_has_no_truth_value_so_and_or_misuse_is_explained() -> None:
    with pytest.raises(PlanError, match="combine conditions with & | ~"):
        _ = (col("age") > 18) and (col("age") < 65)
    with pytest.raises(PlanError, match="instead of and/or/not"):
        _ = (col("age") > 18) or (col("age") < 65)
    with pytest.raises(PlanError, match="no truth value"):
        _ = 18 < col("age") < 65  # a chained comparison asks for a truth value too
    with pytest.raises(PlanError):
        bool(col("age") == 1)


def test_operators_build_calls_in_the_right_order() -> None:
    a = col("a")
    assert (a + 1)._node == p.Call("add", (p.Col("a"), p.Lit(1)))
    assert (1 - a)._node == p.Call("sub", (p.Lit(1), p.Col("a")))
    assert (2 / a)._node == p.Call("div", (p.Lit(2), p.Col("a")))
    assert (-a)._node == p.Call("neg", (p.Col("a"),))
    assert (~(a == 1))._node == p.Call("not", (p.Call("eq", (p.Col("a"), p.Lit(1))),))
    assert ((a > 1) & (a < 5))._node.fn == "and"
    assert ((a > 1) | (a < 5))._node.fn == "or"
    assert a.isin(("x", "y"))._node == p.Call("isin", (p.Col("a"), p.Lit(("x", "y"))))
    assert a.between(1, 2)._node.fn == "between"
    assert a.bucket([18, 60])._node == p.Call("bucket", (p.Col("a"), p.Lit((18, 60))))
    assert a.year()._node.fn == "year" and a.month()._node.fn == "month"
    assert a.is_null()._node.fn == "is_null"
    assert a.startswith("43")._node == p.Call("startswith", (p.Col("a"), p.Lit("43")))
    assert a.endswith("X")._node.fn == "endswith"
    assert lit(3)._node == p.Lit(3)


def test_expressions_are_unhashable_because_equality_builds_an_expression() -> None:
    assert isinstance(col("a") == col("b"), Expr)
    with pytest.raises(TypeError):
        hash(col("a"))


def test_sum_of_a_list_is_pythons_sum_and_sum_of_a_column_is_an_aggregate() -> None:
    assert sum_([1, 2, 3]) == 6
    assert sum_((1.5, 2.5)) == 4.0
    assert sum_([[1], [2]], []) == [1, 2]
    agg = sum_("income")
    assert isinstance(agg, Aggregate) and agg._agg == p.Agg("sum", p.Col("income"))
    assert sum_(col("a") * 2)._agg == p.Agg("sum", p.Call("mul", (p.Col("a"), p.Lit(2))))
    assert mean("income")._agg == p.Agg("mean", p.Col("income"))


@pytest.mark.parametrize(
    ("misuse", "message"),
    [
        (lambda t: t.filter("age > 65"), "filter() takes a condition"),
        (lambda t: t.group_by(), "group_by() takes one or more column names"),
        (lambda t: t.group_by(col("a")), "group_by() takes one or more column names"),
        (lambda t: t.agg(n=3), "needs an aggregate such as count()"),
        (lambda t: t.agg(), "agg() needs at least one"),
        (lambda t: t.group_by("d").agg(n=col("a")), "needs an aggregate"),
        (lambda t: t.select(), "select() needs at least one column"),
        (lambda t: t.derive(), "derive() needs at least one"),
        (lambda t: t.filter(col("a").isin("x")), "isin() takes a list"),
        (lambda t: t.derive(b=col("a").bucket([])), "bucket() takes a non-empty list"),
        (lambda t: t.derive(__x=col("a")), "may not start with '__'"),
    ],
)
def test_misuse_is_explained(ns: dict[str, Any], misuse: Any, message: str) -> None:
    with pytest.raises(PlanError) as info:
        misuse(ns["table"]("population"))
    assert message in info.value.message


def test_table_takes_a_dataset_name(ns: dict[str, Any]) -> None:
    with pytest.raises(PlanError, match="table\\(\\) takes a dataset name"):
        ns["table"](3)


def test_released_column_of_an_unknown_name_lists_the_columns() -> None:
    with pytest.raises(PlanError, match="columns: district, n"):
        Released(BODY).column("income")


def test_emit_and_params_go_through_the_channel(
    ns: dict[str, Any], channel: RecordingChannel
) -> None:
    ns["emit"]("share", 0.5)
    assert channel.emitted == [("share", 0.5)]
    assert ns["params"] == {"year": 2026}
    assert (
        set(ns)
        == set(LANGUAGE_NAMES)
        == {
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
        }
    )


def test_new_aggregates_build_their_plan_nodes(ns: dict[str, Any]) -> None:
    assert ns["count_distinct"]("district")._agg == p.Agg("count_distinct", p.Col("district"))
    assert ns["var"]("income")._agg == p.Agg("var", p.Col("income"))
    assert ns["std"](col("income") * 2)._agg == p.Agg(
        "std", p.Call("mul", (p.Col("income"), p.Lit(2)))
    )
    assert ns["quantile"]("income", 0.9)._agg == p.Agg("quantile", p.Col("income"), 0.9)
    with pytest.raises(PlanError, match="between 0 and 1"):
        ns["quantile"]("income", 90)


def test_min_and_max_are_aggregates_of_columns_and_pythons_otherwise(ns: dict[str, Any]) -> None:
    assert ns["min"]("age")._agg == p.Agg("min", p.Col("age"))
    assert ns["max"](col("age") + 1)._agg == p.Agg("max", p.Call("add", (p.Col("age"), p.Lit(1))))
    assert ns["min"]([3, 1, 2]) == 1 and ns["max"]([3, 1, 2]) == 3
    assert ns["min"](4, 7) == 4 and ns["max"](4, 7) == 7
    assert ns["max"]([], default=0) == 0
    assert ns["min"]([(2, "b"), (1, "a")], key=lambda t: t[1]) == (1, "a")


def test_cast_abs_round_and_case_build_calls(ns: dict[str, Any]) -> None:
    assert col("x").cast("float")._node == p.Call("cast", (p.Col("x"), p.Lit("float")))
    assert col("x").abs()._node == p.Call("abs", (p.Col("x"),))
    assert col("x").round(2)._node == p.Call("round", (p.Col("x"), p.Lit(2)))
    e = ns["case"]((col("age") >= 65, "老"), (col("age") >= 18, "成"), default="少")
    assert e._node == p.Call(
        "case",
        (
            p.Call("ge", (p.Col("age"), p.Lit(65))),
            p.Lit("老"),
            p.Call("ge", (p.Col("age"), p.Lit(18))),
            p.Lit("成"),
            p.Lit("少"),
        ),
    )


@pytest.mark.parametrize(
    "misuse, message",
    [
        (lambda ns: col("x").cast("double"), "cast\\(\\) takes one of"),
        (lambda ns: col("x").round(1.5), "whole number of digits"),
        (lambda ns: ns["case"](col("a") > 1, default=0), "\\(condition, value\\) pairs"),
        (lambda ns: ns["case"](default=0), "\\(condition, value\\) pairs"),
        (lambda ns: ns["table"]("t").histogram(col("a"), [1, 2]), "column name and a list"),
    ],
)
def test_misuse_of_new_expressions_is_explained(
    ns: dict[str, Any], misuse: Any, message: str
) -> None:
    with pytest.raises(PlanError, match=message):
        misuse(ns)


def test_histogram_is_a_bucketed_group_count(ns: dict[str, Any]) -> None:
    t = ns["table"]("population")
    sugar = t.histogram("income", [0, 1000, 5000])
    plain = t.derive(bin=col("income").bucket([0, 1000, 5000])).group_by("bin").agg(n=count())
    assert sugar._node == plain._node
    assert isinstance(sugar._node, p.Aggregate) and sugar._node.keys == ("bin",)
