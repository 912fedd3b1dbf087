"""Dominance, difference checks and secondary suppression, on engine-shaped results."""

from __future__ import annotations

import tracemalloc
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from pyroaring import BitMap64

from sandbox.disclosure import control, dominance
from sandbox.disclosure.audit import Conflict, Partition
from sandbox.disclosure.control import Policy, release
from sandbox.disclosure.dominance import DominanceRule, dominated, parse_rules
from sandbox.disclosure.gate import Gate
from sandbox.disclosure.threshold import operator_view
from sandbox.engine import protection


def ids(*members: int) -> bytes:
    return protection.bitmap(np.array(members, dtype=np.uint64)).serialize()


def span(lo: int, hi: int) -> bytes:
    return protection.bitmap(np.arange(lo, hi, dtype=np.uint64)).serialize()


# --- dominance ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("top", "mass", "rule"),
    [
        ([60.0, 10.0], 100.0, 1),  # one contributor holds 60 % > 50 %
        ([40.0, 30.0], 100.0, 2),  # two hold 70 % > 67 %
        ([-80.0, 5.0], 100.0, 1),  # absolute values: a large negative dominates too
    ],
)
def test_dominated_cells(top: list[float], mass: float, rule: int) -> None:
    hit = dominated(sorted(map(abs, top), reverse=True), mass, dominance.DEFAULT_RULES)
    assert hit is not None and hit.rule.n == rule


@pytest.mark.parametrize(
    ("top", "mass"), [([50.0, 17.0], 100.0), ([30.0, 30.0], 100.0), ([0.0, 0.0], 0.0), ([], 0.0)]
)
def test_cells_within_the_rules_pass(top: list[float], mass: float) -> None:
    # Exactly 50 % and exactly 67 % are allowed; a zero total has no dominant contributor.
    assert dominated(top, mass, dominance.DEFAULT_RULES) is None


def test_dominance_is_decided_exactly_at_the_share_s_edge() -> None:
    # Shares at, just below and just above each rule's k, in floats whose decimal forms
    # round either way: the decision must be the exact rational comparison.
    rng = np.random.default_rng(7)
    rules = (*dominance.DEFAULT_RULES, DominanceRule(1, Fraction(1, 3)))
    cases = [([0.5, 0.0], 1.0), ([0.67, 0.0], 1.0), ([1 / 3, 0.0], 1.0), ([0.1, 0.2], 0.3)]
    for _ in range(2000):
        mass = float(rng.uniform(0.001, 1e6))
        share = float(rng.choice([0.5, 0.67, 1 / 3, rng.uniform(0, 1)]))
        first = np.nextafter(share * mass, rng.choice([0.0, np.inf]))
        cases.append(([float(first), float(rng.uniform(0, mass - first))], mass))
    for top, mass in cases:
        expected = None
        for rule in rules:
            largest = sum(sorted(top, reverse=True)[: rule.n])
            if Fraction(largest) > rule.k * Fraction(mass):
                expected = rule
                break
        hit = dominated(top, mass, rules)
        assert (hit.rule if hit else None) == expected, (top, mass)


def test_rules_parse_from_settings_text() -> None:
    assert parse_rules("1:50,2:67") == dominance.DEFAULT_RULES
    assert parse_rules(" 1 : 40 ") == (DominanceRule(1, Fraction(2, 5)),)
    assert parse_rules("") == ()
    with pytest.raises(ValueError, match="1:50"):
        parse_rules("50%")
    with pytest.raises(ValueError, match="1 or 2"):
        parse_rules("3:80")


def _magnitude(tops: list[list[float]], masses: list[float], n: list[int]) -> pa.Table:
    return pa.table(
        {
            "industry": [f"行业{i}" for i in range(len(n))],
            "total": masses,
            "__c:total": n,
            protection.top(0, "total"): pa.array(tops, pa.list_(pa.float64())),
            protection.MASS + "total": masses,
        }
    )


def test_a_dominated_sum_is_suppressed_and_reported_without_its_share_to_operators() -> None:
    result = _magnitude(
        [[900.0, 10.0], [30.0, 20.0], [25.0, 25.0]], [1000.0, 400.0, 500.0], [40, 40, 40]
    )
    out = release(result, ("industry",), Policy(10, secondary=False))
    assert [r[1] for r in out.body["rows"]] == [None, 400.0, 500.0]
    (cell,) = out.suppressed
    assert cell == {
        "row": 0,
        "column": "total",
        "rule": "dominance",
        "n": 1,
        "k": 0.5,
        "share": 0.9,
    }
    view = operator_view({"releases": [{"suppressed": list(out.suppressed)}]})
    assert view["releases"][0]["suppressed"] == [
        {"row": 0, "column": "total", "rule": "dominance", "n": 1, "k": 0.5}
    ]


def _stats(
    entities: list[int], positions: list[list[int]], unique: bool = True
) -> protection.PartialStats:
    table = pa.table({protection.entity(0): pa.array(entities, pa.uint64())})
    lists = pa.array(positions, pa.list_(pa.int64()))
    return protection.PartialStats(table, 1, lists, unique)


def test_the_engine_measures_contributions_for_dominance() -> None:
    stats = _stats([0, 1, 2, 3], [[0, 1, 2], [3]])
    stats.magnitudes(0, np.array([5.0, -1.0, 7.0, 2.0]))
    assert stats.columns["__tv0:0"].to_pylist() == [[7.0, 5.0, 1.0], [2.0]]
    assert stats.columns[protection.MASS + "0"].to_pylist() == [13.0, 2.0]
    # Merged: one person's parts in two partitions are added up.
    parts = pa.table(
        {
            "__tv0:0": pa.array([[7.0, 5.0], [6.0]], pa.list_(pa.float64())),
            "__ti0:0": pa.array([[2, 0], [2]], pa.list_(pa.uint64())),
            protection.MASS + "0": [12.0, 6.0],
        }
    )
    merged = protection.merge_magnitudes(parts, 0, "total", 1, [np.array([0, 1])])
    assert merged[protection.top(0, "total")].to_pylist() == [[13.0, 5.0]]
    assert merged[protection.MASS + "total"].to_pylist() == [18.0]


def test_a_person_repeated_by_a_join_contributes_the_sum_of_their_rows() -> None:
    # Entity 7 appears three times (three joined records of 30): together 90 of 120, which
    # dominates although no single joined row does.
    stats = _stats([7, 1, 7, 2, 7], [[0, 1, 2, 3, 4]], unique=False)
    stats.magnitudes(0, np.array([30.0, 15.0, 30.0, 15.0, 30.0]))
    assert stats.columns["__tv0:0"].to_pylist()[0][:2] == [90.0, 15.0]
    assert stats.columns[protection.MASS + "0"].to_pylist() == [120.0]
    hit = dominated([90.0, 15.0], 120.0, dominance.DEFAULT_RULES)
    assert hit is not None and hit.rule.n == 1


def test_contributors_are_the_rows_that_count_per_person() -> None:
    stats = _stats([4, 4, 5, 6], [[0, 1, 2, 3]], unique=False)
    stats.contributors(0, np.array([True, True, False, True]))
    (blob,) = stats.columns["__who0:0"].to_pylist()
    assert sorted(BitMap64.deserialize(blob)) == [4, 6]
    counted = _stats([0, 1, 2, 3], [[0, 1], [2, 3]])
    counted.contributors(1, np.array([True, False, True, True]))
    assert counted.columns["__k1"].to_pylist() == [1, 2]


# --- the audit of an operator's releases ----------------------------------------------------


def _ids(lo: int, hi: int) -> np.ndarray:
    return np.arange(lo, hi, dtype=np.uint64)


def _why(conflict: Conflict | None) -> tuple[int, str] | None:
    return None if conflict is None else (conflict.differs_by, conflict.via)


def _partition(*sets: np.ndarray) -> Partition:
    part = Partition()
    for s in sets:
        part.add(s)
    return part


def test_two_sets_differing_by_one_person_are_not_both_released() -> None:
    part = _partition(_ids(0, 500))
    assert _why(part.conflict(_ids(0, 501), 10)) == (1, "new")
    assert _why(part.conflict(_ids(0, 499), 10)) == (1, "atoms")
    assert part.conflict(_ids(0, 500), 10) is None  # the same people again: same values
    assert part.conflict(_ids(0, 510), 10) is None  # ten more people: allowed at 10
    assert part.conflict(_ids(0, 501), 1) is None  # a threshold of 1 protects nothing


def test_swapping_one_person_for_another_is_caught() -> None:
    part = _partition(_ids(0, 500))
    swapped = np.array([*range(1, 500), 777], dtype=np.uint64)
    assert part.conflict(swapped, 10) is not None


def test_the_tracker_of_complementary_filters_is_caught_in_any_order() -> None:
    everyone, p, rest_but_target = _ids(0, 1000), _ids(0, 400), _ids(400, 999)
    for earlier, new in [
        ((p, rest_but_target), everyone),
        ((everyone, p), rest_but_target),
        ((everyone, rest_but_target), p),
    ]:
        assert _partition(*earlier).conflict(new, 10) is not None, new


def test_unions_of_three_releases_cannot_isolate_anyone() -> None:
    # A∪B, B∪C, A∪C, then A∪B∪C plus one person: (the last) − ½(sum of the first three) is her.
    a, b, c = _ids(0, 100), _ids(100, 200), _ids(200, 300)
    part = _partition(np.concatenate([a, b]), np.concatenate([b, c]))
    assert part.conflict(np.concatenate([a, c]), 10) is None
    part.add(np.concatenate([a, c]))
    assert _why(part.conflict(_ids(0, 301), 10)) == (1, "new")
    assert part.conflict(_ids(0, 300), 10) is None


def test_disjoint_sets_and_unions_of_released_cells_pass() -> None:
    part = _partition(_ids(0, 1000), _ids(0, 100), _ids(100, 200))
    assert part.conflict(_ids(200, 300), 10) is None
    assert part.conflict(_ids(0, 200), 10) is None  # the union of two released cells
    assert _why(part.conflict(_ids(5000, 5003), 10)) == (3, "new")


def test_near_means_a_variant_of_earlier_releases_not_a_small_new_set() -> None:
    """Detection reads `near` as "nearly an earlier set": one person added to a released set
    is; a few people never released before (a small cell of a first release) are not."""
    part = _partition(_ids(0, 500))
    added = part.conflict(_ids(0, 501), 10)
    assert added is not None and added.near
    fresh = part.conflict(_ids(5000, 5003), 10)
    assert fresh is not None and fresh.via == "new" and not fresh.near
    assert Partition().conflict(_ids(0, 3), 10).near is False  # type: ignore[union-attr]


def test_the_cost_of_a_check_does_not_grow_with_the_number_of_releases() -> None:
    # 5 000 releases of 20 people each leave one atom per release; a check touches only the
    # atoms of its own members.
    part = Partition()
    for k in range(5000):
        part.add(_ids(k * 20, k * 20 + 20))
    assert len(part.sizes) == 5000 and part.people == 100_000
    assert part.conflict(_ids(0, 40), 10) is None
    assert _why(part.conflict(_ids(0, 25), 10)) == (5, "atoms")


def test_checking_recording_and_undoing_a_set_cost_its_size_not_everyone_released() -> None:
    # Five million people released in 50 cells; a cell of 20 more is checked, recorded and
    # taken back: none of it may copy what is held (which the partition used to do, twice
    # per row of several sets).
    part = Partition()
    for k in range(50):
        part.add(_ids(k * 100_000, (k + 1) * 100_000))
    held = part.nbytes
    assert held >= 5_000_000 * 4
    small = np.concatenate([_ids(0, 10), _ids(5_000_000, 5_000_010)])
    tracemalloc.start()
    try:
        assert part.conflict(small, 10) is None
        change = part.add(small)
        part.undo(change)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64_000, peak
    assert part.people == 5_000_000 and len(part.sizes) == 50


def _state(part: Partition) -> tuple[list[tuple[int, int]], list[int], int]:
    # Room made for higher entity numbers stays; who is in which atom is what must not change.
    held = [(e, a) for e, a in enumerate(part.atom_of.tolist()) if a >= 0]
    return held, part.sizes.tolist(), part.people


def test_undoing_sets_restores_the_partition_exactly() -> None:
    rng = np.random.default_rng(7)
    part = _partition(_ids(0, 300), _ids(100, 400), _ids(50, 60))
    for _ in range(50):
        before = _state(part)
        changes = []
        for _ in range(3):
            ids = np.unique(rng.integers(0, 600, rng.integers(1, 200))).astype(np.uint64)
            changes.append(part.add(ids))
        for change in reversed(changes):
            part.undo(change)
        assert _state(part) == before
    # … and what is recorded after an undo is what it would have been without it.
    part.add(_ids(500, 700))
    fresh = _partition(_ids(0, 300), _ids(100, 400), _ids(50, 60), _ids(500, 700))
    assert part.conflict(_ids(550, 560), 10) == fresh.conflict(_ids(550, 560), 10)
    assert sorted(part.sizes.tolist()) == sorted(fresh.sizes.tolist())


def _counts(keys: list[str], n: list[int], sets: list[bytes]) -> pa.Table:
    return pa.table({"d": keys, "n": n, "__c:n": n, protection.IDS: pa.array(sets, pa.binary())})


def test_release_suppresses_a_row_the_audit_refuses_and_records_the_others() -> None:
    gate = Gate(lambda _: [("people", span(0, 100))])
    result = _counts(["甲", "乙"], [101, 50], [span(0, 101), span(200, 250)])
    out = release(
        result, ("d",), Policy(10, secondary=False), lambda rows: gate.audit("op-1", rows, 10)
    )
    assert out.body["rows"] == [["甲", None], ["乙", 50]]
    assert out.suppressed[0]["rule"] == "difference" and out.suppressed[0]["differs_by"] == 1
    assert out.new_sets == (("people", span(200, 250)),)
    # The gate remembers what it let through, for this operator only.
    assert gate.audit("op-1", [[("people", span(200, 249))]], 10)[0] is not None
    assert gate.audit("op-2", [[("people", span(200, 249))]], 10) == [None]
    # … and for what it was released about: a measure of the same people is audited apart.
    assert gate.audit("op-1", [[("measure:population.income", span(200, 249))]], 10) == [None]
    assert "differs_by" not in repr(
        operator_view({"releases": [{"suppressed": list(out.suppressed)}]})
    )


def test_a_row_of_a_join_passes_only_if_all_its_sets_do_together() -> None:
    gate = Gate(lambda _: [])
    # Left: everyone; right: everyone but one. Each alone is new and large; together they
    # would leave that one person alone in an atom.
    (verdict,) = gate.audit("op", [[("people", span(0, 100)), ("people", span(0, 99))]], 10)
    assert verdict is not None
    # Nothing was kept of the refusal.
    assert gate.audit("op", [[("people", span(0, 100))]], 10) == [None]


def test_ten_people_of_whom_one_contributes_are_one_person_to_a_sum() -> None:
    """A district's income total, then the district without her and nine people who earn
    nothing: 10 people apart, but one contributor apart."""
    gate = Gate(lambda _: [])
    income = "measure:population.income"
    district = [("people", span(0, 1000)), (income, span(0, 600))]
    assert gate.audit("op", [district], 10) == [None]
    # Without her (600 earns) and nine children (990..999, no income).
    without = [("people", span(0, 990)), (income, span(0, 599))]
    (verdict,) = gate.audit("op", [without], 10)
    assert verdict is not None and verdict.differs_by == 1


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
    assert out.suppressed == (
        {"row": 1, "column": "n", "rule": "secondary", "protects": [None, "n"]},
    )


def test_two_suppressed_cells_need_no_more() -> None:
    result = _table([("甲", 40), ("乙", 3), ("丙", 4)], ("d",))
    out = release(result, ("d",), Policy(10))
    assert out.body["rows"] == [["甲", 40]] and out.suppressed == () and out.small == 2


def test_secondary_suppression_runs_along_every_key_until_stable() -> None:
    rows = [
        ("甲", "男", 50),
        ("甲", "女", 4),
        ("乙", "男", 60),
        ("乙", "女", 70),
        ("丙", "男", 80),
        ("丙", "女", 90),
    ]
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


def test_a_set_nearly_an_earlier_one_is_told_from_a_cross_classification() -> None:
    part = _partition(_ids(0, 1000))
    minus_one = part.conflict(_ids(0, 999), 10)
    assert minus_one is not None and minus_one.near
    plus_one = part.conflict(_ids(0, 1001), 10)
    assert plus_one is not None and plus_one.near
    # A small group inside people already released: a cross-classification, not near.
    inside = part.conflict(_ids(0, 5), 10)
    assert inside is not None and not inside.near


def test_the_gate_says_what_it_holds_for_an_operator() -> None:
    gate = Gate(lambda _: [])
    assert gate.held_bytes("op") == 0
    gate.audit("op", [[("people", span(0, 1000))]], 10)
    assert gate.held_bytes("op") >= 1000 * 4
    assert gate.held_bytes("someone else") == 0


_TOP = np.uint64(1) << np.uint64(63)


def test_people_numbered_by_row_are_audited_like_registered_ones() -> None:
    """Rows stored without entity numbers get numbers with the top bit set (an instance older
    than the registry): the partition must hold them without a table that large, and decide
    exactly as it does for the same people under registered numbers, mixed or not."""
    rng = np.random.default_rng(11)
    encodings = {
        "registered": lambda i: i.astype(np.uint64),
        "by row": lambda i: i.astype(np.uint64) | _TOP,
        "mixed": lambda i: np.where(i % 2 == 0, i.astype(np.uint64), i.astype(np.uint64) | _TOP),
    }
    parts = {name: Partition() for name in encodings}
    outcomes: list[bool] = []
    for _ in range(300):
        # Unions of blocks of 20 (often admitted), now and then with a few people changed
        # (refused when that splits an atom into too small a piece).
        blocks = rng.choice(20, rng.integers(1, 6), replace=False)
        people = np.concatenate([np.arange(b * 20, b * 20 + 20) for b in blocks])
        if rng.random() < 0.4:
            people = np.setxor1d(people, rng.integers(0, 400, rng.integers(1, 4)))
        take_back = rng.random() < 0.2  # as when a later set of its row is refused
        verdicts = {}
        for name, encode in encodings.items():
            ids = np.sort(encode(people))
            verdicts[name] = parts[name].conflict(ids, 10)
            if verdicts[name] is None:
                change = parts[name].add(ids)
                if take_back:
                    parts[name].undo(change)
        assert len({repr(v) for v in verdicts.values()}) == 1, verdicts
        outcomes.append(verdicts["registered"] is None)
        assert len({p.people for p in parts.values()}) == 1
        assert len({tuple(sorted(p.sizes.tolist())) for p in parts.values()}) == 1
    assert parts["by row"].nbytes < 1 << 20  # no table indexed by 2**63
    assert 10 < sum(outcomes) < len(outcomes) - 10  # both admitted and refused sets


def test_the_gate_audits_people_numbered_by_row() -> None:
    gate = Gate(lambda _: [])
    everyone = BitMap64([int(_TOP | np.uint64(i)) for i in range(1000)]).serialize()
    but_one = BitMap64([int(_TOP | np.uint64(i)) for i in range(999)]).serialize()
    assert gate.audit("op", [[("people", everyone)]], 10) == [None]
    (verdict,) = gate.audit("op", [[("people", but_one)]], 10)
    assert verdict is not None and verdict.differs_by == 1
    assert gate.held_bytes("op") < 1 << 20


def test_a_row_refused_on_its_measure_leaves_no_trace_of_its_people() -> None:
    """Attack on the undo: a row whose people pass but whose measure set is refused must not
    leave its people recorded, or a later release would be judged against people never
    released (here: refused as a difference of them, a denial the operator could read)."""
    earlier = BitMap64(list(range(200, 301))).serialize()
    elsewhere = BitMap64(list(range(1000, 1100))).serialize()  # the people space exists
    gate = Gate(lambda _: [("measure:income", earlier), ("people", elsewhere)])
    people = BitMap64(list(range(100)) + [int(_TOP | np.uint64(7))]).serialize()
    measure = BitMap64(list(range(200, 300))).serialize()  # the earlier set less one person
    (verdict,) = gate.audit("op", [[("people", people), ("measure:income", measure)]], 10)
    assert verdict is not None and verdict.differs_by == 1
    most = BitMap64(list(range(95))).serialize()
    assert gate.audit("op", [[("people", most)]], 10) == [None]


def test_the_same_people_in_one_space_are_one_set_of_the_row_whichever_cell_is_out() -> None:
    # Those who count for a group's median and for its 90th percentile are the same people,
    # in the same space: the row audits, sends and records them once; the group's people,
    # in a space of their own, stay beside them.
    people = [span(0, 100), span(100, 230)]
    earners = [bytes(span(0, 90)), bytes(span(100, 230))]
    result = pa.table(
        {
            "d": ["甲", "乙"],
            protection.IDS: pa.array(people, pa.binary()),
            protection.nonzero_set(0, "median"): pa.array(earners, pa.binary()),
            protection.nonzero_set(0, "p90"): pa.array([bytes(b) for b in earners], pa.binary()),
        }
    )
    measures = (("median", "population.income"), ("p90", "population.income"))
    policy = Policy(10, measures=measures)
    rows = control._row_sets(result, ["median", "p90"], policy, {(0, "median"): {}})
    spaces = [[space for space, _ in row or []] for row in rows]
    # Row 0's median is out, its p90 is not: the earners go once, for the p90.
    assert spaces == [["people", "measure:population.income"]] * 2
    assert [row[1][1] for row in rows if row] == earners
    # With both cells out, nothing of the row is released.
    both = {(1, "median"): {}, (1, "p90"): {}}
    assert control._row_sets(result, ["median", "p90"], policy, both)[1] is None
