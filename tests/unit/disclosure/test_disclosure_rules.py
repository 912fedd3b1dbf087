"""Dominance, difference checks and secondary suppression, on engine-shaped results."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from sandbox.disclosure import control, difference, dominance
from sandbox.disclosure.control import Policy, release
from sandbox.disclosure.difference import History
from sandbox.disclosure.dominance import DominanceRule, dominated, parse_rules
from sandbox.disclosure.threshold import operator_view
from sandbox.engine import protection


def ids(*members: int) -> bytes:
    return protection.bitmap(np.array(members, dtype=np.uint64)).serialize()


def span(lo: int, hi: int) -> bytes:
    return protection.bitmap(np.arange(lo, hi, dtype=np.uint64)).serialize()


# --- dominance ------------------------------------------------------------------------------


@pytest.mark.parametrize(("top", "mass", "rule"), [
    ([60.0, 10.0], 100.0, 1),          # one contributor holds 60 % > 50 %
    ([40.0, 30.0], 100.0, 2),          # two hold 70 % > 67 %
    ([-80.0, 5.0], 100.0, 1),          # absolute values: a large negative dominates too
])
def test_dominated_cells(top: list[float], mass: float, rule: int) -> None:
    hit = dominated(sorted(map(abs, top), reverse=True), mass, dominance.DEFAULT_RULES)
    assert hit is not None and hit.rule.n == rule


@pytest.mark.parametrize(("top", "mass"), [([50.0, 17.0], 100.0), ([30.0, 30.0], 100.0),
                                           ([0.0, 0.0], 0.0), ([], 0.0)])
def test_cells_within_the_rules_pass(top: list[float], mass: float) -> None:
    # Exactly 50 % and exactly 67 % are allowed; a zero total has no dominant contributor.
    assert dominated(top, mass, dominance.DEFAULT_RULES) is None


def test_rules_parse_from_settings_text() -> None:
    assert parse_rules("1:50,2:67") == dominance.DEFAULT_RULES
    assert parse_rules(" 1 : 40 ") == (DominanceRule(1, Fraction(2, 5)),)
    assert parse_rules("") == ()
    with pytest.raises(ValueError, match="1:50"):
        parse_rules("50%")
    with pytest.raises(ValueError, match="1 or 2"):
        parse_rules("3:80")


def _magnitude(tops: list[list[float]], masses: list[float], n: list[int]) -> pa.Table:
    return pa.table({
        "industry": [f"行业{i}" for i in range(len(n))],
        "total": masses, "__c:total": n,
        protection.TOP + "total": pa.array(tops, pa.list_(pa.float64())),
        protection.MASS + "total": masses,
    })


def test_a_dominated_sum_is_suppressed_and_reported_without_its_share_to_operators() -> None:
    result = _magnitude([[900.0, 10.0], [30.0, 20.0], [25.0, 25.0]], [1000.0, 400.0, 500.0],
                        [40, 40, 40])
    out = release(result, ("industry",), Policy(10, secondary=False))
    assert [r[1] for r in out.body["rows"]] == [None, 400.0, 500.0]
    (cell,) = out.suppressed
    assert cell == {"row": 0, "column": "total", "rule": "dominance", "n": 1, "k": 0.5,
                    "share": 0.9}
    view = operator_view({"releases": [{"suppressed": list(out.suppressed)}]})
    assert view["releases"][0]["suppressed"] == [
        {"row": 0, "column": "total", "rule": "dominance", "n": 1, "k": 0.5}]


def test_the_engine_measures_contributions_for_dominance() -> None:
    grouped = pa.table({"k": ["a", "b"], protection.ROW_ID: pa.array(
        [[0, 1, 2], [3]], pa.list_(pa.uint64())), "0": pa.array(
        [[5.0, 1.0, 7.0], [2.0]], pa.list_(pa.float64()))})
    reduced = protection.reduce_partial(grouped, {"0": "0"})
    assert reduced.column(protection.TOP + "0").to_pylist() == [[7.0, 5.0], [2.0]]
    assert reduced.column(protection.MASS + "0").to_pylist() == [13.0, 2.0]
    merged = protection.merge_top([([7.0, 5.0], 13.0), ([6.0], 6.0)])
    assert merged == ([7.0, 6.0], 19.0)


# --- difference checks ----------------------------------------------------------------------


def test_two_sets_differing_by_one_person_are_not_both_released() -> None:
    h = History.of([span(0, 500)])
    c = h.conflict(span(0, 501), 10)
    assert c == difference.Conflict(1, "pair")
    assert h.conflict(span(0, 500), 10) is None          # the same people again: same values
    assert h.conflict(span(0, 510), 10) is None          # ten more people: allowed at 10
    assert h.conflict(span(0, 509), 10) is not None
    assert h.conflict(span(0, 501), 1) is None           # a threshold of 1 protects nothing


def test_swapping_one_person_for_another_is_caught() -> None:
    h = History.of([span(0, 500)])
    swapped = ids(*range(1, 500), 777)
    assert h.conflict(swapped, 10) == difference.Conflict(2, "pair")


def test_the_tracker_of_complementary_filters_is_caught_in_any_order() -> None:
    everyone = span(0, 1000)
    p = span(0, 400)                        # P
    rest_but_target = span(400, 999)        # not P and not C (C = {999})
    for earlier, new in [((p, rest_but_target), everyone), ((everyone, p), rest_but_target),
                         ((everyone, rest_but_target), p)]:
        h = History.of(list(earlier))
        assert h.conflict(new, 10) == difference.Conflict(1, "difference"), new


def test_disjoint_and_far_apart_sets_pass() -> None:
    h = History.of([span(0, 1000), span(0, 100), span(100, 200)])
    assert h.conflict(span(200, 300), 10) is None
    assert h.conflict(span(0, 200), 10) is None     # the union of two released cells
    assert h.conflict(span(5000, 5003), 10) is None


def test_history_keeps_each_set_once() -> None:
    h = History()
    assert h.add(span(0, 10)) and not h.add(span(0, 10))
    assert len(h) == 1


def _counts(keys: list[str], n: list[int], sets: list[bytes]) -> pa.Table:
    return pa.table({"d": keys, "n": n, "__c:n": n, protection.IDS: pa.array(sets, pa.binary())})


def test_release_suppresses_a_row_that_differs_from_history_and_learns_the_others() -> None:
    h = History.of([span(0, 100)])
    result = _counts(["甲", "乙"], [101, 50], [span(0, 101), span(200, 250)])
    out = release(result, ("d",), Policy(10, secondary=False), h)
    assert out.body["rows"] == [["甲", None], ["乙", 50]]
    assert out.suppressed[0]["rule"] == "difference" and out.suppressed[0]["differs_by"] == 1
    assert out.new_sets == (span(200, 250),)
    assert len(h) == 2
    assert "differs_by" not in repr(operator_view({"releases": [{"suppressed":
                                                                 list(out.suppressed)}]}))


# --- secondary suppression ------------------------------------------------------------------


def _table(rows: list[tuple[Any, ...]], keys: tuple[str, ...]) -> pa.Table:
    cols = list(zip(*rows))
    data = {k: list(cols[i]) for i, k in enumerate(keys)}
    data["n"] = list(cols[len(keys)])
    data["__c:n"] = list(cols[len(keys)])
    return pa.table(data)


def test_one_suppressed_cell_takes_the_smallest_other_cell_with_it() -> None:
    result = _table([("甲", 40), ("乙", 3), ("丙", 25), ("丁", 90)], ("d",))
    out = release(result, ("d",), Policy(10))
    # 乙 is left out (too small in every cell); a published total minus the rows shown would
    # give its count, so the smallest shown cell is hidden with it.
    assert out.body["rows"] == [["甲", 40], ["丙", None], ["丁", 90]]
    assert out.suppressed == ({"row": 1, "column": "n", "rule": "secondary",
                               "protects": [None, "n"]},)


def test_two_suppressed_cells_need_no_more() -> None:
    result = _table([("甲", 40), ("乙", 3), ("丙", 4)], ("d",))
    out = release(result, ("d",), Policy(10))
    assert out.body["rows"] == [["甲", 40]] and out.suppressed == () and out.small == 2


def test_secondary_suppression_runs_along_every_key_until_stable() -> None:
    rows = [("甲", "男", 50), ("甲", "女", 4), ("乙", "男", 60), ("乙", "女", 70),
            ("丙", "男", 80), ("丙", "女", 90)]
    out = release(_table(rows, ("d", "g")), ("d", "g"), Policy(10))
    shown = {(r[0], r[1]) for r in out.body["rows"]}
    left_out = {(d, g) for d, g, _ in rows} - shown
    hidden = {(r[0], r[1]) for r in out.body["rows"] if r[2] is None} | left_out
    # Every line (fixed district, or fixed gender) holds 0 or at least 2 hidden cells.
    for district in "甲乙丙":
        assert len([h for h in hidden if h[0] == district]) != 1
    for gender in "男女":
        assert len([h for h in hidden if h[1] == gender]) != 1
    assert ("甲", "女") in hidden and len(hidden) == 4


def test_a_single_row_needs_no_partner() -> None:
    out = release(_table([("甲", 3), ("乙", 30)], ("d",)), ("d",), Policy(10, secondary=False))
    assert out.body["rows"] == [["乙", 30]] and out.suppressed == ()
    out = release(_table([("甲", 30)], ("d",)), ("d",), Policy(10))
    assert out.suppressed == () and control.SECONDARY_RULE not in repr(out.suppressed)


def test_after_a_join_a_contribution_is_a_primary_row_s_total() -> None:
    # Primary row 7 appears three times (three joined records of 30): together 90 of 120,
    # which dominates although no single joined row does.
    grouped = pa.table({"k": ["a"], protection.ROW_ID: pa.array(
        [[7, 1, 7, 2, 7]], pa.list_(pa.uint64())), "0": pa.array(
        [[30.0, 15.0, 30.0, 15.0, 30.0]], pa.list_(pa.float64()))})
    per_row = protection.reduce_partial(grouped, {"0": "0"}, per_primary_row=True)
    assert per_row.column(protection.TOP + "0").to_pylist() == [[90.0, 15.0]]
    assert per_row.column(protection.MASS + "0").to_pylist() == [120.0]
    hit = dominated([90.0, 15.0], 120.0, dominance.DEFAULT_RULES)
    assert hit is not None and hit.rule.n == 1
    per_record = protection.reduce_partial(grouped, {"0": "0"})
    assert per_record.column(protection.TOP + "0").to_pylist() == [[30.0, 30.0]]


# --- histories kept between jobs -------------------------------------------------------------


def _blob(ids: range) -> bytes:
    from pyroaring import BitMap64

    return BitMap64(ids).serialize()


def test_a_kept_history_is_built_once_and_each_job_gets_its_own_copy() -> None:
    from sandbox.disclosure.difference import Histories, Snapshot

    resolved: list[object] = []

    def resolve(ref: object) -> tuple[bytes, ...]:
        resolved.append(ref)
        return (_blob(range(0, 50)),)

    kept = Histories()
    snap = Snapshot(("c-1", "population", 7), ref="handle")
    first = kept.history(snap, resolve)
    assert first.add(_blob(range(0, 60)))            # this job's own release …
    second = kept.history(snap, resolve)
    assert resolved == ["handle"]                     # … resolved once
    assert len(first) == 2 and len(second) == 1       # … and not seen by the next job
    # A set that differs from the kept one by 3 people is still refused for the next job.
    assert second.conflict(_blob(range(0, 53)), threshold=10) is not None


def test_kept_histories_stay_within_their_bound() -> None:
    from sandbox.disclosure.difference import Histories, Snapshot

    blob = _blob(range(0, 1000))
    kept = Histories(max_bytes=len(blob) * 2)
    calls: list[int] = []
    for i in range(3):
        kept.history(Snapshot(("c", "d", i), sets=(blob,)))
    for i in (2, 1, 0):
        kept.history(Snapshot(("c", "d", i), ref=i), lambda ref: calls.append(ref) or (blob,))
    assert calls == [0]        # the oldest was dropped; the two newest were kept
