"""The plan of totals and shares: which groupings a release needs, and the JSON form, which
crosses from the jail to the driver as untrusted input."""

from __future__ import annotations

import pytest
from plans import NoChannel

from sandbox.errors import PlanError
from sandbox.language import plan as p
from sandbox.language.api import Table, col, count, count_if, count_nonnull, mean, share, sum_

T = Table(p.Scan("people"), NoChannel())


def _plan(t: Table) -> p.Aggregate:
    node = t._node
    assert isinstance(node, p.Aggregate)
    return node


def test_totals_over_every_key_are_every_coarser_grouping() -> None:
    node = _plan(T.group_by("a", "b").agg(n=count()).with_totals())
    assert p.margin_sets(node) == (("a",), ("b",), ())
    assert p.shown_margins(node) == {("a",), ("b",), ()}


def test_totals_over_one_key_keep_the_others() -> None:
    node = _plan(T.group_by("a", "b", "c").agg(n=count()).with_totals("c"))
    assert p.margin_sets(node) == (("a", "b"),)


def test_a_share_needs_the_totals_between_its_keys_and_the_cells() -> None:
    node = _plan(T.group_by("a", "b", "c").agg(s=share(count(), within="a")))
    assert p.margin_sets(node) == (("a", "b"), ("a", "c"), ("a",))
    assert p.shown_margins(node) == frozenset()


def test_the_json_form_round_trips_and_plain_plans_keep_theirs() -> None:
    node = _plan(
        T.group_by("a", "b")
        .agg(s=share(sum_("x"), within=["a"]), k=count_if(col("x") > 1), m=count_nonnull("y"))
        .with_totals("b")
    )
    assert p.plan_from_json(p.plan_to_json(node)) == node
    plain = p.plan_to_json(_plan(T.group_by("a").agg(n=count(), m=mean("x"))))
    assert "totals" not in plain and all("within" not in a for _, a in plain["aggs"])


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda j: j.update(totals="a"), "malformed plan"),
        (lambda j: j.update(totals=["z"]), "not a group key"),
        (lambda j: j["aggs"][0][1].update(within=[1]), "malformed plan"),
        (lambda j: j["aggs"][0][1].update(within=["a", "a"]), "distinct"),
        (lambda j: j.update(keys=["a", "b", "c", "d"], totals=["d"]), "at most 3 group keys"),
    ],
)
def test_a_forged_json_plan_is_refused(change: object, message: str) -> None:
    j = p.plan_to_json(_plan(T.group_by("a").agg(n=count())))
    change(j)  # type: ignore[operator]
    with pytest.raises(PlanError, match=message):
        p.plan_from_json(j)


def test_more_than_three_keys_take_no_totals() -> None:
    with pytest.raises(PlanError, match="at most 3 group keys"):
        T.group_by("a", "b", "c", "d").agg(n=count()).with_totals()


def test_a_share_of_a_mean_is_refused() -> None:
    with pytest.raises(PlanError, match="share\\(\\) takes count\\(\\)"):
        share(mean("x"))
