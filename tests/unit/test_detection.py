"""Detection of attack patterns (sandbox.disclosure.detection): each pattern fires on the shape of its
attack and stays silent on ordinary analyses; what a job is compared with is bounded."""

from __future__ import annotations

import ast
import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest

from sandbox.disclosure import detection
from sandbox.disclosure.detection import RECENT_LIMIT, RECENT_WINDOW, Seen, detect

ROOT = Path(__file__).parents[2]
NOW = dt.datetime(2026, 6, 1, 12, 0, 0)
JOB = "j-current"


def obs(**over: Any) -> dict[str, Any]:
    """One collect as the engine observes it; by default an ordinary group-by over everyone."""
    base: dict[str, Any] = {
        "index": 0,
        "dataset": "population",
        "shape": "aaaaaaaaaaaaaaaa",
        "literals": [],
        "threshold": 10,
        "sensitive": True,
        "selected": [20000],
        "groups": 8,
        "rules": {},
        "left_out": 0,
        "private": False,
        "cells": 16,
    }
    return {**base, **over}


def earlier(
    job: str,
    shape: str = "aaaaaaaaaaaaaaaa",
    literals: Any = (),
    *,
    hidden: bool = False,
    rules: dict[str, int] | None = None,
    ago: dt.timedelta = dt.timedelta(minutes=5),
    index: int = 0,
) -> Seen:
    return Seen(
        job,
        index,
        shape,
        detection.literals_key(list(literals)),
        hidden,
        bool((rules or {}).get("difference")),
        NOW - ago,
        list(literals),
    )


def patterns(observations: list[dict[str, Any]], recent: list[Seen] = []) -> list[str]:  # noqa: B006
    return [f.pattern for f in detect(JOB, observations, recent, NOW)]


# --- ordinary analyses raise nothing ---------------------------------------------------------

# The README's job-language example, as the engine observed it on the synthetic city.
README_EXAMPLE = obs(
    shape="8cce2546f89e2e9e",
    literals=[2024, 60, [60, 70, 80, 90]],
    selected=[4490],
    groups=32,
    left_out=4,
    cells=56,
    rules={"secondary": 7, "dominance": 1},
)


def test_ordinary_analyses_raise_no_flag() -> None:
    district = obs()  # group_by district, count and mean income over everyone
    breakdown = obs(
        shape="bbbbbbbbbbbbbbbb",
        literals=["北山区"],
        sensitive=False,
        selected=[600],
        groups=8,
        left_out=1,
        cells=14,
        rules={"secondary": 4, "difference": 1},
    )
    join = obs(
        shape="cccccccccccccccc", selected=[20000, 15000], groups=12, cells=24, dataset="population"
    )
    assert patterns([district]) == []
    assert patterns([README_EXAMPLE], [earlier("j-1")]) == []
    # An overview, then a breakdown that happens to meet the difference rule once.
    assert (
        patterns(
            [breakdown],
            [earlier("j-1"), earlier("j-2", "8cce2546f89e2e9e", [2024, 60, [60, 70, 80, 90]])],
        )
        == []
    )
    assert patterns([join]) == []
    # A handful of distinct queries, and one of them refreshed (same constants) many times.
    history = [earlier(f"j-{i}", shape) for i, shape in enumerate("defg")]
    history += [earlier(f"j-r{i}", "bbbbbbbbbbbbbbbb", ["北山区"]) for i in range(20)]
    assert (
        patterns(
            [
                obs(
                    shape="bbbbbbbbbbbbbbbb",
                    literals=["北山区"],
                    sensitive=False,
                    selected=[600],
                    rules={"secondary": 2},
                )
            ],
            history,
        )
        == []
    )
    # A whole-table count over everyone.
    assert patterns([obs(shape="eeeeeeeeeeeeeeee", groups=1, cells=1)]) == []


# --- small_selection -------------------------------------------------------------------------


def test_small_selection_fires_on_isolating_a_few_people_in_sensitive_data() -> None:
    one = obs(
        shape="ffffffffffffffff",
        literals=[81909],
        selected=[1],
        groups=1,
        cells=1,
        rules={"min_contributors": 1},
    )
    (flag,) = detect(JOB, [one], [], NOW)
    assert flag.pattern == "small_selection" and flag.score == detection.SCORES[flag.pattern]
    assert flag.detail["releases"] == [
        {"index": 0, "dataset": "population", "selected": [1], "threshold": 10}
    ]
    assert patterns([obs(selected=[19])]) == ["small_selection"]  # under 2 × threshold
    assert patterns([obs(selected=[20000, 7], cells=4)]) == ["small_selection", "one_sided_join"]


@pytest.mark.parametrize(
    "change",
    [
        {"selected": [20]},  # twice the threshold: not small
        {"selected": [0]},  # the filters selected no one
        {"sensitive": False, "selected": [1]},
        {"private": True, "selected": [1]},
    ],
)
def test_small_selection_is_silent_otherwise(change: dict[str, Any]) -> None:
    assert "small_selection" not in patterns([obs(**change)])


# --- one_sided_join --------------------------------------------------------------------------


def test_one_sided_join_fires_on_a_few_people_fanned_out_onto_many() -> None:
    fan = obs(sensitive=False, selected=[3, 4000], groups=5, cells=10)
    (flag,) = detect(JOB, [fan], [], NOW)
    assert flag.pattern == "one_sided_join"
    assert flag.detail["releases"][0]["selected"] == [3, 4000]


@pytest.mark.parametrize("selected", [[20000, 15000], [4000], [0, 4000], [5, 6]])
def test_one_sided_join_is_silent_on_joins_of_whole_tables(selected: list[int]) -> None:
    assert "one_sided_join" not in patterns([obs(sensitive=False, selected=selected)])


# --- search ----------------------------------------------------------------------------------

SHAPE = "5e3efb325782337f"


def sweep(values: list[Any], **kw: Any) -> list[Seen]:
    return [
        earlier(f"j-{i}", SHAPE, [v], ago=dt.timedelta(minutes=len(values) - i), **kw)
        for i, v in enumerate(values)
    ]


def test_search_fires_on_the_fourth_plan_of_one_shape_with_other_constants() -> None:
    now = obs(shape=SHAPE, literals=[4000])
    assert "search" not in patterns([now], sweep([1000, 2000]))
    (flag,) = [
        f for f in detect(JOB, [now], sweep([1000, 2000, 3000]), NOW) if f.pattern == "search"
    ]
    detail = flag.detail["releases"][0]
    assert detail["literals"] == [4000] and detail["distinct_earlier"] == 3
    assert {tuple(e["literals"]) for e in detail["earlier"]} == {(1000,), (2000,), (3000,)}


def test_search_within_one_job_counts_its_earlier_collects() -> None:
    collects = [obs(index=i, shape=SHAPE, literals=[t]) for i, t in enumerate([1, 2, 3, 4])]
    (flag,) = [f for f in detect(JOB, collects, [], NOW) if f.pattern == "search"]
    assert [r["index"] for r in flag.detail["releases"]] == [3]


def test_search_is_silent_on_refreshes_and_on_alternating_between_two_values() -> None:
    assert "search" not in patterns([obs(shape=SHAPE, literals=[1])], sweep([1] * 30))
    assert "search" not in patterns([obs(shape=SHAPE, literals=[1])], sweep([1, 2] * 15))


def test_search_looks_back_only_at_the_bounded_recent_history() -> None:
    old = [
        earlier(f"j-old{i}", SHAPE, [i], ago=RECENT_WINDOW + dt.timedelta(minutes=i + 1))
        for i in range(5)
    ]
    assert "search" not in patterns([obs(shape=SHAPE, literals=[99])], old)
    # Three other constants, but behind RECENT_LIMIT newer observations of the same constant.
    buried = [earlier(f"j-b{i}", SHAPE, [i], ago=dt.timedelta(hours=2)) for i in range(3)]
    newer = [
        earlier(f"j-n{i}", SHAPE, [99], ago=dt.timedelta(seconds=i + 1))
        for i in range(RECENT_LIMIT)
    ]
    assert "search" not in patterns([obs(shape=SHAPE, literals=[99])], buried + newer)
    assert "search" in patterns(
        [obs(shape=SHAPE, literals=[99])], buried + newer[: RECENT_LIMIT - 3]
    )


# --- near_duplicate --------------------------------------------------------------------------


def test_near_duplicate_fires_on_a_difference_refusal_met_again() -> None:
    refused = obs(
        shape=SHAPE, literals=[30000], selected=[24], groups=1, cells=2, rules={"difference": 2}
    )
    # Two filters differing by a few people: the same shape, another constant.
    assert "near_duplicate" in patterns([refused], [earlier("j-1", SHAPE, [20000])])
    # Another plan refused too is not enough: cross-tabulations meet the rule in ordinary work.
    assert "near_duplicate" not in patterns(
        [refused], [earlier("j-1", "x" * 16, rules={"difference": 1})]
    )
    (flag,) = [
        f
        for f in detect(JOB, [refused], [earlier("j-1", SHAPE, [20000])], NOW)
        if f.pattern == "near_duplicate"
    ]
    assert flag.detail["releases"][0]["cells"] == 2
    assert flag.detail["releases"][0]["earlier_same_shape"][0]["job_id"] == "j-1"


def test_near_duplicate_is_silent_on_one_refusal_or_none() -> None:
    refused = obs(shape=SHAPE, literals=[30000], rules={"difference": 1})
    assert "near_duplicate" not in patterns([refused], [earlier("j-1")])
    assert "near_duplicate" not in patterns([refused], [earlier("j-1", SHAPE, [30000])])
    assert "near_duplicate" not in patterns(
        [obs(shape=SHAPE, literals=[1])], [earlier("j-1", SHAPE, [2], rules={"difference": 1})]
    )


# --- repeated_suppression --------------------------------------------------------------------


def test_hidden_means_every_cell_suppressed_or_every_group_left_out() -> None:
    assert detection.hidden(obs(groups=1, cells=1, rules={"min_contributors": 1}))
    assert detection.hidden(obs(groups=4, left_out=4, cells=0))
    assert detection.hidden(obs(groups=2, cells=4, rules={"min_contributors": 2, "secondary": 2}))
    assert not detection.hidden(obs(groups=2, cells=4, rules={"min_contributors": 1}))
    assert not detection.hidden(obs(groups=0, cells=0))  # no one matched
    assert not detection.hidden({**obs(groups=2, rules={"dominance": 3}), "cells": None})


def test_repeated_suppression_fires_after_two_other_wholly_hidden_jobs() -> None:
    blank = obs(shape="9" * 16, groups=1, cells=1, selected=[40], rules={"min_contributors": 1})
    hidden_jobs = [earlier("j-1", "1" * 16, hidden=True), earlier("j-2", "2" * 16, hidden=True)]
    (flag,) = detect(JOB, [blank], hidden_jobs, NOW)
    assert flag.pattern == "repeated_suppression"
    assert flag.detail["releases"][0]["earlier_jobs"] == ["j-1", "j-2"]
    # Two hidden collects of one earlier job are one job.
    one_job = [earlier("j-1", hidden=True), earlier("j-1", hidden=True, index=1)]
    assert "repeated_suppression" not in patterns([blank], one_job)
    # A release that showed something is not a suppression, whatever came before.
    assert "repeated_suppression" not in patterns([obs()], hidden_jobs)


# --- evaluation ------------------------------------------------------------------------------


def test_evaluation_fires_when_the_engine_could_not_evaluate_a_plan() -> None:
    whole = obs(groups=0, selected=[], cells=2, rules={"evaluation": 2})
    grouped = obs(groups=0, selected=[], cells=0, rules={})
    assert patterns([whole]) == ["evaluation"]
    assert patterns([grouped]) == ["evaluation"]
    assert patterns([obs(private=True, evaluated=False, selected=[])]) == ["evaluation"]
    assert patterns([obs(private=True, selected=[])]) == []  # DP releases carry no sets


# --- the shape of the result -----------------------------------------------------------------


def test_one_flag_per_pattern_per_job_listing_every_release_that_matched() -> None:
    collects = [obs(index=i, shape=f"{i}" * 16, selected=[i + 1]) for i in range(3)]
    (flag,) = detect(JOB, collects, [], NOW)
    assert flag.pattern == "small_selection"
    assert [r["index"] for r in flag.detail["releases"]] == [0, 1, 2]


def test_differentially_private_releases_raise_only_evaluation() -> None:
    private = obs(
        private=True,
        shape=SHAPE,
        literals=[5],
        selected=[1],
        rules={"difference": 1},
        groups=1,
        cells=1,
    )
    assert (
        patterns(
            [private], sweep([1, 2, 3]) + [earlier("j-9", hidden=True), earlier("j-8", hidden=True)]
        )
        == []
    )


def test_every_pattern_says_what_attack_it_catches_and_its_score_is_documented() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    module = (ROOT / "sandbox" / "disclosure" / "detection.py").read_text(encoding="utf-8")
    for p in detection.PATTERNS:
        doc = p.check.__doc__ or ""
        assert doc and p.summary == doc.splitlines()[0] and len(p.summary) <= 100, p.name
        assert 1 <= p.score <= 5
        assert re.search(rf"\| `{p.name}` \| {p.score} \|", readme), p.name
        assert re.search(rf"^\s+{p.name}\s+{p.score}\s", module, re.M), p.name


def test_detection_is_pure() -> None:
    tree = ast.parse((ROOT / "sandbox" / "disclosure" / "detection.py").read_text(encoding="utf-8"))
    names = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    names |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert not names & {"sqlalchemy", "fastapi", "starlette", "ray", "sandbox", "pyarrow"}


# --- padding, fine keys and refusals -----------------------------------------------------------


def test_padding_is_flagged_where_contributions_fall_short_of_the_rows() -> None:
    assert patterns([obs(padded=1, rules={"min_contributors": 1})]) == ["padding"]
    assert patterns([obs(padded=0)]) == []


def test_groupings_that_leave_out_most_groups_are_flagged() -> None:
    # group_by an exact birth date: thousands of groups, almost all too small.
    assert patterns([obs(groups=3000, left_out=2990, selected=[20000])]) == ["fine_keys"]
    # The README example leaves out 4 of 32: an ordinary table.
    assert patterns([obs(groups=32, left_out=4)]) == []


def test_a_refused_plan_is_flagged_and_nothing_else_is_read_into_it() -> None:
    refusal = {"index": 0, "refused": "disclosure_refused", "reason": "identifier in count"}
    assert patterns([refusal]) == ["refused"]
    assert patterns([{**refusal, "private": True}]) == ["refused"]


def test_exact_matches_on_fine_quasi_identifiers_are_flagged_from_the_code_alone() -> None:
    assert patterns([obs(pinpoints=["birth_date"])]) == ["pinpoint"]
    assert patterns([obs(pinpoints=["birth_date"], private=True, selected=[])]) == ["pinpoint"]


def test_a_refusal_of_a_set_nearly_an_earlier_one_is_flagged_at_once() -> None:
    assert patterns([obs(rules={"difference": 2}, near=2)]) == ["near_duplicate"]
    # A cross-tabulation splits atoms into small interior pieces: ordinary.
    assert patterns([obs(rules={"difference": 2}, near=0)]) == []


def test_the_same_plan_asked_again_after_the_data_changed_is_not_flagged() -> None:
    # A monthly report run again on a new version, where someone changed: refused, not a sign.
    same = earlier("j-1", "aaaaaaaaaaaaaaaa", [2024])
    repeat = obs(literals=[2024], rules={"difference": 2}, near=1)
    assert patterns([repeat], [same]) == []
    # With other constants than before, the same refusal is the differencing attack.
    assert patterns([repeat], [earlier("j-1", "aaaaaaaaaaaaaaaa", [2023])]) == ["near_duplicate"]


def test_quantiles_at_the_very_ends_are_flagged() -> None:
    assert patterns([obs(extremes=["oldest"])]) == ["extreme"]
    assert patterns([obs(extremes=[])]) == []
