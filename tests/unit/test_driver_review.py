"""The driver's side of output review: a held release ends the run before the code sees it;
a resumed run replays what its earlier runs released."""

from __future__ import annotations

import pytest
import test_driver
from test_driver import ROWS, spec

from sandbox.catalog.models import DatasetInfo
from sandbox.disclosure.review import ReviewRules
from sandbox.engine.executor import LocalExecutor
from sandbox.pipeline.driver import Replay, run_job

people = test_driver.people  # the fixture

HOLD_L3 = ReviewRules(levels=frozenset({"L3"}), reviewers=1, reviewers_l4=2)

TWO = (
    "a = table('people').group_by('district').agg(n=count())\n"
    "b = table('people').agg(total=sum('income'))\n"
    "ra = a.collect()\n"
    "try:\n"
    "    rb = b.collect()\n"
    "except:\n"
    "    print('caught')\n"
    "    emit('leak', 1)\n"
    "    while True:\n"
    "        pass\n"
    "emit('a', ra)\n"
    "emit('b', rb)\n"
    "print('finished')\n"
)


def test_a_held_release_ends_the_run_before_the_code_sees_it(people: DatasetInfo) -> None:
    held = run_job(spec(people, TWO, review=HOLD_L3), LocalExecutor())
    assert held.status == "held"
    assert held.outputs == {} and held.printed == "" and held.error is None
    assert held.review is not None
    assert held.review["index"] == 0 and held.review["reasons"] == ["level:L3"]
    assert held.review["required"] == 1
    assert held.review["state"]["releases"] == []
    assert held.review["state"]["rows_by_dataset"] == {"people": ROWS}
    assert held.review["held"]["body"]["kind"] == "table"


def test_a_resumed_run_replays_and_counts_each_read_once(people: DatasetInfo) -> None:
    first = run_job(spec(people, TWO, review=HOLD_L3), LocalExecutor())
    assert first.review is not None
    replay = Replay.from_json(first.review["state"], first.review["held"])
    second = run_job(spec(people, TWO, review=HOLD_L3, replay=replay), LocalExecutor())
    # The second collect is new, so it is held in turn; the replay grows.
    assert second.status == "held" and second.review is not None
    assert second.review["index"] == 1
    assert [r["plan"] for r in second.review["state"]["releases"]] == [first.review["held"]["plan"]]
    assert second.review["state"]["rows_by_dataset"] == {"people": 2 * ROWS}
    replay = Replay.from_json(second.review["state"], second.review["held"])
    done = run_job(spec(people, TWO, review=HOLD_L3, replay=replay), LocalExecutor())
    assert done.status == "succeeded", done.error
    assert done.printed == "finished\n"
    assert done.outputs["a"] == first.review["held"]["body"]
    assert done.outputs["b"] == second.review["held"]["body"]
    assert done.usage["rows_scanned"] == 2 * ROWS and done.usage["collects"] == 2
    assert [r["index"] for r in done.disclosure["releases"]] == [0, 1]


def test_a_resumed_run_must_repeat_its_plans(people: DatasetInfo) -> None:
    first = run_job(spec(people, TWO, review=HOLD_L3), LocalExecutor())
    assert first.review is not None
    replay = Replay.from_json(first.review["state"], first.review["held"])
    other = TWO.replace("agg(n=count())", "agg(m=count())")
    failed = run_job(spec(people, other, review=HOLD_L3, replay=replay), LocalExecutor())
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.code == "replay_mismatch"
    assert "collect() number 1" in failed.error.message
    assert failed.outputs == {} and failed.printed == ""


@pytest.mark.parametrize("rules", [None, ReviewRules()])
def test_nothing_is_held_where_no_rule_applies(people: DatasetInfo, rules: ReviewRules) -> None:
    done = run_job(spec(people, TWO, review=rules), LocalExecutor())
    assert done.status == "succeeded", done.error
    assert done.review is None
