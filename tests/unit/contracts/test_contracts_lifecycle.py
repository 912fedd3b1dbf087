from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from contracts.document import ContractDocument
from contracts.errors import ContractInactive, ContractStateError
from contracts.lifecycle import (
    EXPIRABLE,
    FINAL_STATUSES,
    TERMINABLE,
    Status,
    approve,
    check_activatable,
    check_amendable,
    check_editable,
    check_usable,
    expire,
    is_due_to_expire,
    refuse,
    resume,
    sign_by_bureau,
    sign_by_operator,
    submit,
    supersede,
    suspend,
    terminate,
)

S = Status
NOT_FINAL = [s for s in Status if s not in FINAL_STATUSES]
TRANSITIONS: dict[str, tuple[Callable[[Status], Status], dict[Status, Status]]] = {
    "submit": (submit, {S.draft: S.pending_approval}),
    "refuse": (refuse, {S.pending_approval: S.refused}),
    "sign_by_bureau": (sign_by_bureau, {S.approved: S.signed_by_bureau}),
    "sign_by_operator": (sign_by_operator, {S.signed_by_bureau: S.active}),
    "suspend": (suspend, {S.active: S.suspended}),
    "resume": (resume, {S.suspended: S.active}),
    "terminate": (terminate, {s: S.terminated for s in NOT_FINAL}),
    "expire": (expire, {s: S.expired for s in NOT_FINAL if s is not S.draft}),
    "supersede": (supersede, {S.active: S.superseded}),
}
CASES = [(name, status) for name in TRANSITIONS for status in Status]

# Checks that guard an action without changing the status: the one status each allows.
GUARDS: dict[str, tuple[Callable[[Status], None], Status]] = {
    "check_editable": (check_editable, S.draft),
    "check_amendable": (check_amendable, S.active),
    "check_activatable": (check_activatable, S.active),
}
GUARD_CASES = [(name, status) for name in GUARDS for status in Status]


def test_statuses() -> None:
    assert [s.value for s in Status] == [
        "draft",
        "pending_approval",
        "approved",
        "signed_by_bureau",
        "active",
        "refused",
        "suspended",
        "terminated",
        "expired",
        "superseded",
    ]


def test_status_sets() -> None:
    assert FINAL_STATUSES == {S.refused, S.terminated, S.expired, S.superseded}
    assert TERMINABLE == set(NOT_FINAL)
    assert EXPIRABLE == set(NOT_FINAL) - {S.draft}


@pytest.mark.parametrize(("name", "status"), CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_transition_table(name: str, status: Status) -> None:
    transition, allowed = TRANSITIONS[name]
    if status in allowed:
        assert transition(status) is allowed[status]
        return
    with pytest.raises(ContractStateError) as info:
        transition(status)
    message = str(info.value)
    assert f"the contract is '{status}'" in message
    # The message names the status the transition would need.
    assert any(f"'{needed}'" in message for needed in allowed)
    assert info.value.code == "contract_state"
    if status in FINAL_STATUSES:
        assert f"'{status}' is final" in message


@pytest.mark.parametrize(("name", "status"), GUARD_CASES, ids=[f"{n}-{s}" for n, s in GUARD_CASES])
def test_guard_table(name: str, status: Status) -> None:
    guard, allowed = GUARDS[name]
    if status is allowed:
        guard(status)
        return
    with pytest.raises(ContractStateError) as info:
        guard(status)
    assert f"the contract is '{status}'" in str(info.value)
    assert f"'{allowed}'" in str(info.value)


@pytest.mark.parametrize("status", [S.suspended, S.pending_approval])
def test_amending_says_what_to_do(status: Status) -> None:
    with pytest.raises(ContractStateError, match="resumed by the regulator"):
        check_amendable(status)


def test_editing_an_active_contract_points_to_amendment() -> None:
    with pytest.raises(ContractStateError, match="/amend"):
        check_editable(S.active)


@pytest.mark.parametrize("status", sorted(FINAL_STATUSES))
def test_final_statuses_say_so(status: Status) -> None:
    for transition in (resume, terminate, expire):
        with pytest.raises(ContractStateError, match=f"'{status}' is final"):
            transition(status)


def test_transitions_accept_plain_strings() -> None:
    assert sign_by_bureau("approved") is S.signed_by_bureau  # type: ignore[arg-type]


REQUIRED = frozenset({"p-police", "p-hr"})


def test_approve_until_all_providers_approved() -> None:
    status, approvals = approve(S.pending_approval, frozenset(), "p-police", REQUIRED)
    assert status is S.pending_approval
    assert approvals == {"p-police"}
    status, approvals = approve(status, approvals, "p-hr", REQUIRED)
    assert status is S.approved
    assert approvals == REQUIRED


def test_single_provider_approves_at_once() -> None:
    assert approve(S.pending_approval, frozenset(), "p-hr", frozenset({"p-hr"})) == (
        S.approved,
        frozenset({"p-hr"}),
    )


def test_approve_refuses_unrelated_provider() -> None:
    expected = "provider p-tax provides none of this contract's datasets; " + (
        "approvals are needed from: p-hr, p-police"
    )
    with pytest.raises(ContractStateError, match=expected):
        approve(S.pending_approval, frozenset(), "p-tax", REQUIRED)


def test_approve_refuses_second_approval() -> None:
    expected = "p-police has already approved; still waiting for: p-hr"
    with pytest.raises(ContractStateError, match=expected):
        approve(S.pending_approval, frozenset({"p-police"}), "p-police", REQUIRED)


@pytest.mark.parametrize("status", [s for s in Status if s is not S.pending_approval])
def test_approve_only_while_pending(status: Status) -> None:
    expected = (
        f"the contract is '{status}'; approval is only possible while it is 'pending_approval'"
    )
    with pytest.raises(ContractStateError, match=expected):
        approve(status, frozenset(), "p-hr", REQUIRED)


def test_full_happy_path() -> None:
    status, approvals = approve(S.pending_approval, frozenset(), "p-hr", frozenset({"p-hr"}))
    status = sign_by_operator(sign_by_bureau(status))
    assert status is S.active
    assert resume(suspend(status)) is S.active


def test_draft_path_ends_terminated() -> None:
    status = submit(S.draft)
    status, _ = approve(status, frozenset(), "p-hr", frozenset({"p-hr"}))
    assert terminate(suspend(sign_by_operator(sign_by_bureau(status)))) is S.terminated


DOC = ContractDocument(
    id="c-12",
    version=1,
    operator_id="op-7",
    datasets={"人口": {"区县": ("group_by",)}},
    purpose="养老规划",
    purpose_class="public_interest",
    valid_from=datetime(2026, 3, 1, tzinfo=UTC),
    valid_to=datetime(2027, 3, 1, tzinfo=UTC),
    quotas={},
    spend_cap=Decimal(0),
    issued_at=datetime(2026, 2, 20, tzinfo=UTC),
)
IN_TERM = datetime(2026, 6, 1, tzinfo=UTC)
TERM = "2026-03-01T00:00:00Z to 2027-03-01T00:00:00Z"


def test_active_contract_in_term_is_usable() -> None:
    check_usable(DOC, S.active, IN_TERM)
    check_usable(DOC, S.active, DOC.valid_from)
    check_usable(DOC, S.active, DOC.valid_to - timedelta(microseconds=1))


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (S.pending_approval, "waiting for approval by the providers"),
        (S.approved, "needs the bureau's signature"),
        (S.signed_by_bureau, "POST /v1/contracts/c-12/sign"),
        (S.refused, "apply for a new contract"),
        (S.suspended, "once the regulator resumes it"),
        (S.terminated, "apply for a new contract"),
        (S.expired, "apply for a new contract"),
        (S.draft, "POST /v1/contracts/c-12/submit"),
        (S.superseded, "a newer version of it is in force"),
    ],
)
def test_inactive_statuses(status: Status, hint: str) -> None:
    with pytest.raises(ContractInactive) as info:
        check_usable(DOC, status, IN_TERM)
    assert f"contract c-12 is '{status}', not active" in str(info.value)
    assert hint in str(info.value)
    assert info.value.code == "contract_inactive"


def test_before_term() -> None:
    expected = f"not in force yet: its term is {TERM}; submit jobs on or after valid_from"
    with pytest.raises(ContractInactive, match=expected):
        check_usable(DOC, S.active, DOC.valid_from - timedelta(seconds=1))


@pytest.mark.parametrize("now", [DOC.valid_to, DOC.valid_to + timedelta(days=30)])
def test_after_term(now: datetime) -> None:
    expected = f"has expired: its term was {TERM}; apply for a new contract"
    with pytest.raises(ContractInactive, match=expected):
        check_usable(DOC, S.active, now)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        check_usable(DOC, S.active, datetime(2026, 6, 1))


@pytest.mark.parametrize("status", sorted(EXPIRABLE))
def test_due_to_expire_from_valid_to_on(status: Status) -> None:
    assert not is_due_to_expire(DOC, status, DOC.valid_to - timedelta(microseconds=1))
    assert is_due_to_expire(DOC, status, DOC.valid_to)
    assert is_due_to_expire(DOC, status, DOC.valid_to + timedelta(days=400))


@pytest.mark.parametrize("status", [S.draft, *sorted(FINAL_STATUSES)])
def test_drafts_and_final_statuses_never_expire(status: Status) -> None:
    assert not is_due_to_expire(DOC, status, DOC.valid_to + timedelta(days=1))


def test_expiry_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        is_due_to_expire(DOC, S.active, datetime(2030, 1, 1))
