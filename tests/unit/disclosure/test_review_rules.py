import pytest

from sandbox.disclosure.review import Hold, ReviewRules, hold


def test_nothing_flagged_is_released_at_once() -> None:
    assert hold(ReviewRules(), ["L2", "L3"], 10_000) is None
    assert hold(ReviewRules(levels=frozenset()), ["L4"], 5) is None


def test_l4_data_needs_two_reviewers_by_default() -> None:
    assert hold(ReviewRules(), ["L3", "L4"], 4) == Hold(("level:L4",), 2)


def test_other_levels_need_the_ordinary_number() -> None:
    rules = ReviewRules(levels=frozenset({"L3", "L4"}), reviewers=1, reviewers_l4=3)
    assert hold(rules, ["L3"], 4) == Hold(("level:L3",), 1)
    assert hold(rules, ["L3", "L4"], 4) == Hold(("level:L3", "level:L4"), 3)


def test_the_l4_number_never_lowers_the_ordinary_one() -> None:
    assert hold(ReviewRules(reviewers=3, reviewers_l4=2), ["L4"], 1) == Hold(("level:L4",), 3)


def test_size_rule_holds_only_above_its_limit() -> None:
    rules = ReviewRules(levels=frozenset(), max_cells=100)
    assert hold(rules, ["L2"], 100) is None
    assert hold(rules, ["L2"], 101) == Hold(("cells",), 1)


def test_a_contract_asking_for_review_holds_everything() -> None:
    rules = ReviewRules(levels=frozenset(), contract=True)
    assert hold(rules, ["L1"], 0) == Hold(("contract",), 1)


def test_rules_reject_nonsense() -> None:
    with pytest.raises(ValueError):
        ReviewRules(reviewers=0)
