"""Exact money: DECIMAL(32,2) values as Decimal, in a context wide enough for their sums."""

from decimal import ROUND_HALF_EVEN, Context, Decimal

# Sums of DECIMAL(32,2) exceed Python's default 28 digits; 60 leaves room for
# 10^26 orders at the largest price.
MONEY_CONTEXT = Context(prec=60, rounding=ROUND_HALF_EVEN)
CENT = Decimal("0.01")
ZERO = Decimal("0.00")


def money_str(value: Decimal) -> str:
    """`Decimal` as a string with exactly 2 decimals (`5` -> `5.00`), never exponent form."""
    return f"{value.quantize(CENT, context=MONEY_CONTEXT):f}"


def average(total: Decimal, count: int) -> Decimal:
    """`total / count` to 2 places, half-even."""
    return MONEY_CONTEXT.divide(total, Decimal(count)).quantize(CENT, context=MONEY_CONTEXT)
