"""What the release gate knows the history holds: a row released and recorded before passes
as RECORDED and is not handed on again; anything the history may lack is handed on by every
job that releases it until a settlement that recorded it says so."""

from __future__ import annotations

from typing import Any

import numpy as np

from sandbox.disclosure.audit import Conflict
from sandbox.disclosure.gate import NEEDED, RECORDED, Gate, entries, with_sets
from sandbox.engine import protection


def span(lo: int, hi: int) -> bytes:
    return protection.bitmap(np.arange(lo, hi, dtype=np.uint64)).serialize()


DISTRICT = [("people", span(0, 100))]


def release(gate: Gate, operator: str, rows: Any, threshold: int, job: str) -> list[Any]:
    """A release as a driver sends it (sets small enough to go with their digests)."""
    return gate.release(operator, entries(rows), threshold, job)


def test_a_repeat_is_handed_on_until_a_settlement_recorded_it() -> None:
    gate = Gate(lambda _: [])
    assert release(gate, "op", [DISTRICT], 10, "j1") == [None]
    # j1 has not settled: the history may not hold the set yet, so j2 hands it on too.
    assert release(gate, "op", [DISTRICT], 10, "j2") == [None]
    # j1's result was lost (its worker died): its settlement recorded nothing.
    gate.settled("j1", recorded=False)
    assert release(gate, "op", [DISTRICT], 10, "j3") == [None]
    gate.settled("j2", recorded=True)
    assert release(gate, "op", [DISTRICT], 10, "j4") == [RECORDED]
    # A settlement heard late, or twice, changes nothing.
    gate.settled("j3", recorded=True)
    gate.settled("j2", recorded=True)
    assert release(gate, "op", [DISTRICT], 10, "j5") == [RECORDED]


def test_sets_loaded_from_the_history_are_recorded() -> None:
    gate = Gate(lambda _: list(DISTRICT))
    assert release(gate, "op", [DISTRICT], 10, "j1") == [RECORDED]
    # The plain audit's answer is unchanged: the row may be released.
    assert gate.audit("op", [DISTRICT], 10) == [None]


def test_a_row_with_one_new_set_is_handed_on_whole() -> None:
    gate = Gate(lambda _: list(DISTRICT))
    row = [*DISTRICT, ("measure:income", span(0, 90))]
    assert release(gate, "op", [row], 10, "j1") == [None]
    assert release(gate, "op", [row], 10, "j2") == [None]
    gate.settled("j1", recorded=True)
    assert release(gate, "op", [row], 10, "j3") == [RECORDED]


def test_a_refused_row_leaves_nothing_to_record() -> None:
    gate = Gate(lambda _: list(DISTRICT))
    (verdict,) = release(gate, "op", [[("people", span(0, 99))]], 10, "j1")
    assert isinstance(verdict, Conflict) and verdict.differs_by == 1
    gate.settled("j1", recorded=True)
    # Still refused: the refusal admitted nothing that a settlement could have recorded.
    (verdict,) = release(gate, "op", [[("people", span(0, 99))]], 10, "j2")
    assert isinstance(verdict, Conflict)


def test_audits_without_a_job_leave_their_sets_unrecorded() -> None:
    gate = Gate(lambda _: [])
    assert gate.audit("op", [DISTRICT], 10) == [None]
    # No settlement will say it was recorded: a job releasing it hands it on.
    assert release(gate, "op", [DISTRICT], 10, "j1") == [None]


def test_the_lowest_level_is_always_handed_on() -> None:
    gate = Gate(lambda _: [])
    assert release(gate, "op", [DISTRICT], 1, "j1") == [None]
    gate.settled("j1", recorded=True)
    assert release(gate, "op", [DISTRICT], 1, "j2") == [None]


def test_each_operator_has_its_own_record() -> None:
    gate = Gate(lambda _: [])
    release(gate, "op-1", [DISTRICT], 10, "j1")
    gate.settled("j1", recorded=True)
    assert release(gate, "op-1", [DISTRICT], 10, "j2") == [RECORDED]
    assert release(gate, "op-2", [DISTRICT], 10, "j3") == [None]


def test_sets_go_as_digests_and_their_members_only_when_asked_for() -> None:
    gate = Gate(lambda _: [])
    big = [("people", span(0, 100)), ("measure:income", span(0, 90))]
    sent = entries([big, DISTRICT], inline_bytes=0)
    assert all(blob is None for row in sent if row for _, _, blob in row)
    # Unknown sets without their members: nothing is admitted, nothing counted.
    assert gate.release("op", sent, 10, "j1") == [NEEDED, NEEDED]
    assert gate.audits("op") == 0
    full = with_sets([big, DISTRICT], sent, {0, 1})
    assert gate.release("op", full, 10, "j1") == [None, None]
    assert gate.audits("op") == 1
    gate.settled("j1", recorded=True)
    # Known now: the digests alone are enough.
    assert gate.release("op", entries([big, DISTRICT], inline_bytes=0), 10, "j2") == [
        RECORDED,
        RECORDED,
    ]
    # A set never sent cannot pass on a digest someone made up.
    forged = [[("people", b"\x00" * 16, None)]]
    assert gate.release("op", forged, 10, "j3") == [NEEDED]


def test_only_the_wanted_rows_are_sent_again() -> None:
    rows = [DISTRICT, None, [("people", span(5, 50))]]
    sent = entries(rows, inline_bytes=0)
    again = with_sets(rows, sent, {2})
    assert again[0] is None and again[1] is None
    assert again[2] == [("people", sent[2][0][1], span(5, 50))]  # type: ignore[index]


def test_a_difference_behind_a_recorded_row_is_still_refused_when_sent_as_digests() -> None:
    """The district is recorded; the same release then adds the district less one person.
    Sent as digests, the first row passes on its digest, the second is asked for and refused."""
    gate = Gate(lambda _: list(DISTRICT))
    rows = [DISTRICT, [("people", span(0, 99))]]
    sent = entries(rows, inline_bytes=0)
    assert gate.release("op", sent, 10, "j1") == [RECORDED, NEEDED]
    first, second = gate.release("op", with_sets(rows, sent, {1}), 10, "j1")
    assert first is None and isinstance(second, Conflict) and second.differs_by == 1


def test_a_set_repeated_in_a_release_is_hashed_once_and_a_lookalike_is_not_taken_for_it(
    monkeypatch: Any,
) -> None:
    from sandbox.disclosure import gate as gates

    hashed: list[int] = []
    real = gates.digest
    monkeypatch.setattr(gates, "digest", lambda blob: hashed.append(len(blob)) or real(blob))
    people = protection.bitmap(np.arange(0, 200_000, 3, dtype=np.uint64)).serialize()
    assert len(people) > 1000
    again = bytes(bytearray(people))  # equal, another object
    assert again == people and again is not people
    # Same length and the same first and last 32 bytes, one byte apart in the middle.
    middle = len(people) // 2
    lookalike = people[:middle] + bytes([people[middle] ^ 1]) + people[middle + 1 :]
    assert lookalike[:32] == people[:32] and lookalike[-32:] == people[-32:]
    rows = [
        [("people", people), ("measure:population.income", again)],
        [("people", lookalike)],
    ]
    sent = entries(rows, inline_bytes=0)
    assert [[d for _, d, _ in row or []] for row in sent] == [
        [real(people), real(people)],
        [real(lookalike)],
    ]
    assert real(lookalike) != real(people)
    assert len(hashed) == 2  # people once, the lookalike once
