from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pricing import (
    MoneyError,
    check_money,
    format_money,
    parse_money,
    round_fen,
    sum_money,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2", "2.00"),
        ("2.00", "2.00"),
        ("0.1", "0.10"),
        ("0", "0.00"),
        ("12345678901234567890.99", "12345678901234567890.99"),
    ],
)
def test_parse_money_accepts_decimal_strings_and_keeps_fen_exactly(
    text: str, expected: str
) -> None:
    parsed = parse_money(text)
    assert parsed == Decimal(expected)
    assert format_money(parsed) == expected


def test_parse_money_refuses_floats_and_says_to_send_a_string() -> None:
    with pytest.raises(MoneyError, match="decimal string") as caught:
        parse_money(0.1)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_money"
    assert "float" in str(caught.value)


@pytest.mark.parametrize("value", [2, True, None, b"2.00"])
def test_parse_money_refuses_non_strings(value: object) -> None:
    with pytest.raises(MoneyError, match="decimal string"):
        parse_money(value)  # type: ignore[arg-type]


def test_parse_money_names_the_fen_rule_for_sub_fen_prices() -> None:
    with pytest.raises(MoneyError) as caught:
        parse_money("0.001")
    assert str(caught.value) == (
        "price '0.001' has more than 2 decimal places; prices are in yuan with fen precision"
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("-1", "negative"),
        ("-0.00", "negative"),
        ("NaN", "not a finite amount"),
        ("Infinity", "not a finite amount"),
        ("-Infinity", "not a finite amount"),
        ("abc", "not a decimal number"),
        ("", "not a decimal number"),
        ("1e2", "plain digits"),
        ("+2", "plain digits"),
        ("1_000", "plain digits"),
        (" 2", "plain digits"),
        (".5", "plain digits"),
    ],
)
def test_parse_money_rejects_what_is_not_plain_non_negative_yuan(text: str, reason: str) -> None:
    with pytest.raises(MoneyError, match=reason):
        parse_money(text)


def test_parse_money_names_the_amount_it_parses() -> None:
    with pytest.raises(MoneyError, match="^spend_cap '-5' is negative"):
        parse_money("-5", what="spend_cap")


def test_check_money_accepts_fen_decimals_and_refuses_floats() -> None:
    assert check_money(Decimal("3.5")) == Decimal("3.50")
    with pytest.raises(MoneyError, match="float"):
        check_money(3.5)  # type: ignore[arg-type]
    with pytest.raises(MoneyError, match="more than 2 decimal places"):
        check_money(Decimal("0.125"))


@pytest.mark.parametrize(
    ("exact", "rounded"),
    [
        ("1.23456", "1.23"),
        ("0.005", "0.01"),  # exactly half a fen goes up
        ("0.0049999", "0.00"),
        ("2.675", "2.68"),  # a float would make this 2.67
        ("0.015", "0.02"),
        ("0.025", "0.03"),  # half-up, not banker's rounding
        ("7", "7.00"),
        ("-0.005", "-0.01"),  # ties go away from zero
    ],
)
def test_round_fen_is_half_up_to_the_fen(exact: str, rounded: str) -> None:
    assert format_money(round_fen(Decimal(exact))) == rounded


def test_round_fen_rounds_exact_fractions_without_decimal_context_loss() -> None:
    assert round_fen(Fraction(1, 200)) == Decimal("0.01")
    assert round_fen(Fraction(1, 3)) == Decimal("0.33")
    assert round_fen(Fraction(2, 3)) == Decimal("0.67")
    # 40 digits: more than the default Decimal context holds, still exact.
    big = Decimal("1234567890123456789012345678901234567.895")
    assert format_money(round_fen(big)) == "1234567890123456789012345678901234567.90"


def test_round_fen_refuses_floats_and_non_finite_values() -> None:
    with pytest.raises(MoneyError, match="float"):
        round_fen(0.005)  # type: ignore[arg-type]
    with pytest.raises(MoneyError, match="finite"):
        round_fen(Decimal("NaN"))


def test_format_money_always_has_two_decimals() -> None:
    assert format_money(Decimal("2")) == "2.00"
    assert format_money(Decimal("2.5")) == "2.50"
    assert format_money(Decimal("0")) == "0.00"
    assert format_money(Decimal("1E+3")) == "1000.00"
    assert format_money(Decimal("2.000")) == "2.00"


def test_format_money_refuses_sub_fen_amounts_and_floats() -> None:
    with pytest.raises(MoneyError, match="round_fen"):
        format_money(Decimal("1.234"))
    with pytest.raises(MoneyError):
        format_money(1.5)  # type: ignore[arg-type]


def test_sum_money_is_exact_beyond_decimal_context_precision() -> None:
    amounts = [Decimal("99999999999999999999999999999.99"), Decimal("0.01")]
    assert format_money(sum_money(amounts)) == "100000000000000000000000000000.00"
    assert sum_money([]) == Decimal("0.00")


@given(st.integers(min_value=0, max_value=10**15))
def test_parse_and_format_round_trip_for_any_fen_amount(fen: int) -> None:
    text = f"{fen // 100}.{fen % 100:02d}"
    assert format_money(parse_money(text)) == text


@given(st.fractions(min_value=0, max_value=10**6))
def test_round_fen_is_within_half_a_fen_and_ties_go_up(exact: Fraction) -> None:
    rounded = Fraction(round_fen(exact))
    assert abs(rounded - exact) <= Fraction(1, 200)
    if abs(rounded - exact) == Fraction(1, 200):
        assert rounded > exact
