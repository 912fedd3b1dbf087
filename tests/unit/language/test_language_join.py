"""join(): the proxy, the Join plan node, its JSON form as untrusted input, and what the
static analysis learns from a join in the source."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from sandbox.errors import PlanError
from sandbox.language import plan as p
from sandbox.language.analysis import analyse
from sandbox.language.api import col, count, mean, namespace
from sandbox.language.plan import MAX_PLAN_SCANS, plan_from_json, plan_to_json
from sandbox.language.policy import check_source


class RecordingChannel:
    def __init__(self) -> None:
        self.plans: list[Any] = []

    def collect(self, plan: Any) -> dict[str, Any]:
        self.plans.append(plan)
        return {"kind": "table", "columns": [{"name": "n", "type": "int64"}], "rows": [[1]]}

    def emit(self, name: str, value: Any) -> None:
        raise AssertionError("not used")


@pytest.fixture
def channel() -> RecordingChannel:
    return RecordingChannel()


@pytest.fixture
def table(channel: RecordingChannel) -> Any:
    return namespace(channel, {})["table"]


def _through_json(node: p.Node) -> p.Node:
    return plan_from_json(json.loads(json.dumps(plan_to_json(node), ensure_ascii=False)))


def test_join_builds_a_join_node_with_the_left_table_first(table: Any) -> None:
    insured = table("social_insurance").select("resident_id", "credit_code")
    people = table("population").filter(col("income") > 0)
    joined = insured.join(people, on="resident_id")
    node = joined._node
    assert isinstance(node, p.Join)
    assert node.left == insured._node and node.right == people._node
    assert node.on == ("resident_id",)


def test_on_takes_a_list_of_names_and_a_positional_argument(table: Any) -> None:
    a, b = table("甲"), table("乙")
    assert a.join(b, on=["区县", "year"])._node.on == ("区县", "year")
    assert a.join(b, ("区县",))._node.on == ("区县",)


@pytest.mark.parametrize("on", [None, [], [1], ["a", None], {"a": 1}])
def test_join_without_column_names_explains_on(table: Any, on: Any) -> None:
    with pytest.raises(PlanError, match="on="):
        table("a").join(table("b"), on=on)


def test_join_on_an_empty_name_is_refused(table: Any) -> None:
    with pytest.raises(PlanError, match="join column name must be a non-empty string"):
        table("a").join(table("b"), on="")


def test_join_needs_another_table(table: Any) -> None:
    with pytest.raises(PlanError, match="another table"):
        table("a").join("b", on="k")


def test_repeated_join_keys_are_refused(table: Any) -> None:
    with pytest.raises(PlanError, match="distinct"):
        table("a").join(table("b"), on=["k", "k"])


def test_a_join_collects_as_one_plan_reading_every_table(
    table: Any, channel: RecordingChannel
) -> None:
    firms = table("enterprises").select("credit_code", "industry")
    q3 = (
        table("social_insurance")
        .join(table("population"), on="resident_id")
        .join(firms, on="credit_code")
    )
    q3.group_by("industry").agg(n=count(), avg=mean("income")).collect()
    sent = plan_from_json(channel.plans[0])
    assert [s.dataset for s in p.scans(sent)] == ["social_insurance", "population", "enterprises"]
    assert p.scan_of(sent) == p.Scan("social_insurance")
    assert repr(q3) == "<table from 'social_insurance', 'population', 'enterprises'>"


def test_scans_list_a_self_join_twice_and_right_nested_joins_in_order() -> None:
    a, b, c = p.Scan("a"), p.Scan("b"), p.Scan("c")
    assert p.scans(p.Join(a, p.Join(b, c, ("k",)), ("k",))) == (a, b, c)
    assert p.scans(p.Join(p.Select(a, ("k",)), a, ("k",))) == (a, a)
    assert p.scans(p.Filter(a, p.Lit(True))) == (a,)


def test_join_round_trips_through_json() -> None:
    left = p.Derive(p.Scan("社保"), (("k2", p.Col("k")),))
    right = p.Join(p.Select(p.Scan("人口"), ("k", "收入")), p.Scan("企业"), ("k",))
    node = p.Aggregate(
        p.Join(left, right, ("k", "k2")),
        ("行业",),
        (("n", p.Agg("count")), ("s", p.Agg("sum", p.Col("收入")))),
    )
    back = _through_json(node)
    assert back == node
    assert plan_to_json(back) == plan_to_json(node)
    assert plan_to_json(node)["input"] == {
        "op": "join",
        "left": plan_to_json(left),
        "right": plan_to_json(right),
        "on": ["k", "k2"],
    }


def _valid_join() -> dict[str, Any]:
    return plan_to_json(
        p.Aggregate(p.Join(p.Scan("a"), p.Scan("b"), ("k",)), (), (("n", p.Agg("count")),))
    )


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (["input", "on"], "k"),  # not a list
        (["input", "on"], []),  # no key
        (["input", "on"], ["k", 3]),  # not a name
        (["input", "on"], ["__row"]),  # reserved
        (["input", "left"], None),
        (["input", "right"], {"op": "scan"}),
        (["input", "right"], {"op": "scan", "dataset": "b", "extra": 1}),
        (["input", "extra"], 1),  # unknown field
    ],
)
def test_malformed_joins_are_plan_errors(path: list[str], value: Any) -> None:
    doc = copy.deepcopy(_valid_join())
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(PlanError):
        plan_from_json(doc)


def test_a_join_missing_a_side_is_malformed() -> None:
    doc = _valid_join()
    del doc["input"]["right"]
    with pytest.raises(PlanError, match="malformed"):
        plan_from_json(doc)


def test_plans_read_at_most_a_bounded_number_of_tables() -> None:
    node: p.Node = p.Scan("t0")
    for i in range(1, MAX_PLAN_SCANS):
        node = p.Join(node, p.Scan(f"t{i}"), ("k",))
    plan_from_json(plan_to_json(node))  # at the limit: fine
    doc = {
        "op": "join",
        "left": plan_to_json(node),
        "right": {"op": "scan", "dataset": "x"},
        "on": ["k"],
    }
    with pytest.raises(PlanError, match=f"at most {MAX_PLAN_SCANS} tables"):
        plan_from_json(doc)


def test_analysis_knows_join_keys_as_columns_used_for_join() -> None:
    facts = analyse(
        check_source(
            'a = table("social_insurance")\n'
            'b = table("population").select("resident_id", "income")\n'
            'j = a.join(b, on="resident_id").join(table("enterprises"), ["credit_code", "区县"])\n'
            'emit("r", j.group_by("industry").agg(n=count()).collect())\n'
        )
    )
    assert facts.datasets == frozenset({"social_insurance", "population", "enterprises"})
    assert {"resident_id", "credit_code", "区县"} <= facts.columns
    assert facts.uses["resident_id"] == frozenset({"join"})
    assert facts.uses["credit_code"] == frozenset({"join"}) == facts.uses["区县"]
