"""Money: ``Decimal`` yuan with fen (0.01) precision; never a float.

Arithmetic that must be exact (line amounts, totals) goes through ``Fraction``
so that no Decimal context precision can round silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal
from fractions import Fraction

from pricing.errors import MoneyError

FEN = Decimal("0.01")
ZERO = Decimal("0.00")

# Plain digits only: exponents, signs, underscores and bare dots are all accepted
# by Decimal() but make a price ambiguous to the people reading a schedule.
_PLAIN_DECIMAL = re.compile(r"\d+(\.\d+)?")


def parse_money(value: str | Decimal, *, what: str = "price") -> Decimal:
    """Parse a decimal string of yuan (``"2"``, ``"2.00"``, ``"0.1"``) into a fen-exact Decimal.

    ``what`` names the amount in error messages. The result always has two
    decimal places (``"2"`` → ``Decimal("2.00")``).
    """
    if isinstance(value, Decimal):
        return check_money(value, what=what)
    if isinstance(value, float):
        raise MoneyError(
            f"{what} {value!r} is a float; send money as a decimal string such as "
            f'"{value:.2f}" (floats cannot hold fen exactly)'
        )
    if not isinstance(value, str):
        raise MoneyError(
            f'{what} must be a decimal string of yuan such as "2.00", not {type(value).__name__}'
        )
    try:
        amount = Decimal(value)
    except ArithmeticError:
        raise MoneyError(
            f'{what} {value!r} is not a decimal number; write yuan like "2.00"'
        ) from None
    check_money(amount, what=f"{what} {value!r}")
    if not _PLAIN_DECIMAL.fullmatch(value):
        raise MoneyError(f'{what} {value!r} is not written as plain digits; write yuan like "2.00"')
    return _fen_to_decimal(_exact_fen(Fraction(amount)))


def check_money(value: Decimal, *, what: str = "amount") -> Decimal:
    """Validate an amount (Decimal, finite, not negative, fen precision); return it with two places."""
    if isinstance(value, float):
        raise MoneyError(
            f'{what} is a float; use Decimal built from a string, e.g. Decimal("2.00")'
        )
    if not isinstance(value, Decimal):
        raise MoneyError(f"{what} must be a Decimal of yuan, not {type(value).__name__}")
    if not value.is_finite():
        raise MoneyError(f'{what} is not a finite amount; write yuan like "2.00"')
    if value.is_signed():
        raise MoneyError(f"{what} is negative; amounts are zero or more yuan")
    fen = _fen_of(value)
    if fen is None:
        raise MoneyError(
            f"{what} has more than 2 decimal places; prices are in yuan with fen precision"
        )
    return _fen_to_decimal(fen)


def round_fen(x: Decimal | Fraction) -> Decimal:
    """Round to the fen (0.01 yuan) with ROUND_HALF_UP: ties go away from zero.

    This is the only rounding rule in pricing: each charge line is computed
    exactly (quantity × price / per), then rounded half-up to the fen; a total
    is the sum of its rounded lines. So 1.23456 → 1.23, 0.005 → 0.01 and
    0.0049 → 0.00.
    """
    if isinstance(x, float):
        raise MoneyError("cannot round a float to the fen; pass a Decimal built from a string")
    if isinstance(x, Decimal) and not x.is_finite():
        raise MoneyError(f"cannot round {x} to the fen; amounts must be finite")
    exact = Fraction(x)
    numerator, denominator = exact.numerator * 100, exact.denominator
    magnitude = (2 * abs(numerator) + denominator) // (2 * denominator)
    return _fen_to_decimal(magnitude if numerator >= 0 else -magnitude)


def format_money(x: Decimal) -> str:
    """Render an amount with exactly two decimals (``Decimal("2")`` → ``"2.00"``)."""
    if not isinstance(x, Decimal) or not x.is_finite():
        raise MoneyError(f"cannot format {x!r} as money; pass a finite Decimal")
    fen = _fen_of(x)
    if fen is None:
        raise MoneyError(
            f"cannot format {x} as money: it has more than 2 decimal places; "
            "round it with round_fen first"
        )
    return _fen_text(fen)


def sum_money(amounts: Iterable[Decimal]) -> Decimal:
    """Exact sum of fen amounts, immune to the Decimal context's precision."""
    values = list(amounts)
    fens = [_fen_of(a) for a in values]
    if all(f is not None for f in fens):
        return _fen_to_decimal(sum(f for f in fens if f is not None))
    # Amounts finer than a fen may still add up to whole fen.
    total = sum((Fraction(a) for a in values), Fraction(0))
    return _fen_to_decimal(_exact_fen(total))


def _fen_of(x: Decimal) -> int | None:
    """A finite amount in whole fen, exactly; None when it has finer than fen precision.
    (Bills are formatted and checked many times per job: integer arithmetic on the exact
    ratio, without building fractions.)"""
    numerator, denominator = x.as_integer_ratio()
    fen, rest = divmod(numerator * 100, denominator)
    return None if rest else fen


def _exact_fen(x: Fraction) -> int:
    fen = x * 100
    if fen.denominator != 1:
        raise MoneyError("amount has more than 2 decimal places; round it with round_fen first")
    return fen.numerator


def _fen_text(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    yuan, cents = divmod(abs(fen), 100)
    return f"{sign}{yuan}.{cents:02d}"


def _fen_to_decimal(fen: int) -> Decimal:
    # Decimal(str) is exact whatever the context precision; arithmetic would not be.
    return Decimal(_fen_text(fen))
