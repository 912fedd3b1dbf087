"""ε as an exact value, privacy terms, and the budget check."""

from decimal import Decimal
from fractions import Fraction

import pytest

from contracts.budget import ZERO, Epsilon, PrivacyTerm, check_budget, remaining
from contracts.errors import ContractBudgetExceeded, ContractError, ContractInvalid


def eps(text: str) -> Epsilon:
    return Epsilon.parse(text)


def test_epsilon_arithmetic_is_exact() -> None:
    # 0.1 + 0.2 is 0.30000000000000004 in floats; budgets must not drift.
    assert eps("0.1") + eps("0.2") == eps("0.3")
    assert str(eps("0.1") + eps("0.2")) == "0.3"
    total = ZERO
    for _ in range(10):
        total = total + eps("0.1")
    assert total == eps("1")
    assert eps("1") - eps("0.3") == eps("0.7")
    assert (eps("0.1") / 3).value == Fraction(1, 30)
    assert (eps("0.1") / 3) + (eps("0.1") / 3) + (eps("0.1") / 3) == eps("0.1")


def test_subtraction_never_goes_below_zero() -> None:
    assert eps("0.2") - eps("0.5") == ZERO


def test_text_forms_are_one_spelling() -> None:
    assert str(eps("1.0")) == str(eps("1")) == str(eps("1.000")) == "1"
    assert str(eps("10")) == "10"
    assert str(eps("0.250")) == "0.25"
    assert str(eps("0.1") / 3) == "1/30"  # no finite decimal: exact, not rounded
    assert str(eps("0.1") / 4) == "0.025"


def test_micro_rounds_up_so_charges_never_under_count() -> None:
    assert eps("0.1").micro() == 100_000
    assert (eps("0.1") / 3).micro() == 33_334
    assert Epsilon.from_micro(33_334) == Epsilon(Fraction(33_334, 10**6))
    assert str(Epsilon.from_micro(1)) == "0.000001"
    assert Epsilon.from_text("0.033334") == Epsilon.from_micro(33_334)


@pytest.mark.parametrize(
    "raw",
    ["0", "0.000", "10.001", "11", "-1", "0.0001", "1e-3", "", " 1", "1.", ".5", "NaN", "Infinity"],
)
def test_term_values_out_of_range_or_oddly_written_are_refused(raw: str) -> None:
    with pytest.raises(ContractInvalid) as info:
        Epsilon.parse(raw)
    assert "decimal string" in info.value.args[0] or "decimal with" in info.value.args[0]


@pytest.mark.parametrize("raw", [0.1, 1, None, True, Decimal("0.1")])
def test_term_values_must_be_strings(raw: object) -> None:
    with pytest.raises(ContractInvalid, match="as a decimal string|must be a decimal string"):
        Epsilon.parse(raw)


def test_floats_cannot_make_an_epsilon() -> None:
    with pytest.raises(TypeError):
        Epsilon(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Epsilon(Fraction(-1, 10))
    with pytest.raises(ValueError):
        eps("1") / 0


def test_privacy_term_parses_and_checks_per_job_against_total() -> None:
    term = PrivacyTerm.parse("人口", {"epsilon": "1.0", "per_job_epsilon": "0.10"})
    assert term.to_json() == {"epsilon": "1", "per_job_epsilon": "0.1"}
    with pytest.raises(ContractInvalid, match="above its total"):
        PrivacyTerm.parse("人口", {"epsilon": "0.5", "per_job_epsilon": "0.6"})
    with pytest.raises(ContractInvalid, match="missing 'per_job_epsilon'"):
        PrivacyTerm.parse("人口", {"epsilon": "0.5"})
    with pytest.raises(ContractInvalid, match="unknown field 'delta'"):
        PrivacyTerm.parse("人口", {"epsilon": "0.5", "per_job_epsilon": "0.1", "delta": "0"})


def test_check_budget_passes_up_to_the_total_exactly() -> None:
    check_budget(eps("0.7"), eps("0.2"), eps("0.1"), eps("1"), dataset="人口", contract_id="c-1")
    assert remaining(eps("1"), eps("0.7"), eps("0.2")) == eps("0.1")


def test_check_budget_names_the_dataset_what_is_left_and_how_to_proceed() -> None:
    with pytest.raises(ContractBudgetExceeded) as info:
        check_budget(
            eps("0.7"), eps("0.2"), eps("0.2"), eps("1"), dataset="人口", contract_id="c-1"
        )
    message = info.value.args[0]
    assert info.value.code == "privacy_budget_exceeded"
    assert isinstance(info.value, ContractError)
    assert "'人口'" in message and "c-1" in message
    assert "ε=0.1 left of its 1" in message
    assert '"epsilon": {"人口": "0.1"}' in message  # a smaller ε that would fit
    assert "amend the contract" in message


def test_a_used_up_budget_says_so() -> None:
    with pytest.raises(ContractBudgetExceeded) as info:
        check_budget(eps("1"), ZERO, eps("0.1"), eps("1"), dataset="人口", contract_id="c-1")
    assert "used up" in info.value.args[0]
    assert "wait for running jobs" not in info.value.args[0]
    with pytest.raises(ContractBudgetExceeded, match="wait for running jobs"):
        check_budget(
            eps("0.9"), eps("0.1"), eps("0.1"), eps("1"), dataset="人口", contract_id="c-1"
        )
