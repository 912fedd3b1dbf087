"""join(how=…): inner (the default), left and anti joins in the proxy, the plan node and its
JSON form as untrusted input."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from sandbox.errors import PlanError
from sandbox.language import plan as p
from sandbox.language.api import count, namespace
from sandbox.language.plan import plan_from_json, plan_to_json


class RecordingChannel:
    def __init__(self) -> None:
        self.plans: list[Any] = []

    def collect(self, plan: Any) -> dict[str, Any]:
        self.plans.append(plan)
        return {"kind": "table", "columns": [{"name": "n", "type": "int64"}], "rows": [[1]]}

    def emit(self, name: str, value: Any) -> None:
        raise AssertionError("not used")


@pytest.fixture
def table() -> Any:
    return namespace(RecordingChannel(), {})["table"]


def _join(how: str) -> p.Aggregate:
    return p.Aggregate(
        p.Join(p.Scan("population"), p.Scan("insured"), ("resident_id",), how),
        (),
        (("n", p.Agg("count")),),
    )


@pytest.mark.parametrize("how", ["inner", "left", "anti"])
def test_join_takes_how_and_defaults_to_an_inner_join(table: Any, how: str) -> None:
    pop, insured = table("population"), table("insured")
    assert pop.join(insured, on="resident_id")._node.how == "inner"
    assert pop.join(insured, on="resident_id", how=how)._node.how == how
    assert pop.join(insured, "resident_id", how)._node.how == how


@pytest.mark.parametrize("how", ["outer", "LEFT", "right", "", None, 1, ["left"]])
def test_an_unknown_how_is_refused_with_the_choices_and_without_the_value(
    table: Any, how: Any
) -> None:
    pop, insured = table("population"), table("insured")
    with pytest.raises(PlanError) as raised:
        pop.join(insured, on="resident_id", how=how)
    message = str(raised.value)
    assert all(f"how='{k}'" in message for k in ("inner", "left", "anti"))
    if isinstance(how, str) and how:
        assert how not in message.replace("how='left'", "")


def test_the_plan_node_refuses_an_unknown_how() -> None:
    with pytest.raises(PlanError, match="'inner', 'left', 'anti'"):
        p.Join(p.Scan("a"), p.Scan("b"), ("k",), "full")


def test_an_inner_join_keeps_the_json_it_had_before_how_existed() -> None:
    doc = plan_to_json(_join("inner"))
    assert doc["input"] == {
        "op": "join",
        "left": {"op": "scan", "dataset": "population"},
        "right": {"op": "scan", "dataset": "insured"},
        "on": ["resident_id"],
    }
    assert plan_from_json(doc) == _join("inner")


@pytest.mark.parametrize("how", ["left", "anti"])
def test_left_and_anti_joins_round_trip_through_json(how: str) -> None:
    node = _join(how)
    doc = json.loads(json.dumps(plan_to_json(node)))
    assert doc["input"]["how"] == how
    assert plan_from_json(doc) == node
    assert plan_to_json(plan_from_json(doc)) == plan_to_json(node)


def test_how_changes_the_shape_of_a_plan() -> None:
    shapes = {json.dumps(p.shape(_join(how))[0]) for how in ("inner", "left", "anti")}
    assert len(shapes) == 3


def test_an_explicit_inner_in_json_is_the_inner_join() -> None:
    doc = plan_to_json(_join("inner"))
    doc["input"]["how"] = "inner"
    back = plan_from_json(doc)
    assert back == _join("inner")
    assert "how" not in plan_to_json(back)["input"]


@pytest.mark.parametrize("value", ["outer", "Left", "", None, 1, ["left"], {"how": "left"}])
def test_an_unknown_how_in_json_is_a_plan_error(value: Any) -> None:
    doc = copy.deepcopy(plan_to_json(_join("left")))
    doc["input"]["how"] = value
    with pytest.raises(PlanError):
        plan_from_json(doc)


def test_a_left_join_collects_as_one_plan(table: Any) -> None:
    channel = RecordingChannel()
    t = namespace(channel, {})["table"]
    t("population").join(t("insured"), on="resident_id", how="left").agg(n=count()).collect()
    (plan,) = channel.plans
    assert plan["input"]["how"] == "left"
