"""The order message (bytes from the orders topic) -> `Order`, or `InvalidOrder` with the reason.

Hot path: runs once per message. orjson does the common case; the stdlib parser, keeping the
literal text of numbers, only reads messages again when orjson would lose a number's exact value.
Given a latest time (the worker's clock plus MAX_FUTURE_SKEW), a later `order_time` is invalid.
"""

import json
import re
from decimal import Decimal
from typing import Any, NoReturn

import orjson

from core.durations import format_duration_ms, format_size_bytes
from core.models import Order
from core.timefmt import MAX_MS, MIN_MS, format_time_ms, parse_time_ms

BIGINT_MIN = -(2**63)
BIGINT_MAX = 2**63 - 1
MAX_WHOLE_DIGITS = 30  # DECIMAL(32,2): 32 digits, 2 of them after the point
MAX_FRACTION_DIGITS = 2
MAX_NAME_CHARS = 256  # SPEC.md: a longer buyer name is invalid

_MISSING: Any = object()
# Loose on purpose (any number of digits either side) so that each way of failing gets its
# own reason; [0-9], not \d, which would let Arabic-Indic and other Unicode digits through.
_DECIMAL = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
# The form datagen and the API write, which gets a fast path; core.timefmt checks it fully.
_ISO_MS_Z = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z")
_MINUTE_MS: dict[str, int] = {}  # "2026-11-24T10:15:" -> epoch ms of that minute
_MINUTE_CACHE_SIZE = 4096
_new_tuple = tuple.__new__


class InvalidOrder(ValueError):
    """A message that is not a valid order; `str()` is the reason, e.g. `price: negative`."""


class _IntText(str):
    """Literal text of a JSON integer, from the exact parser."""

    __slots__ = ()


class _FloatText(str):
    """Literal text of a JSON number with a fraction or exponent, from the exact parser."""

    __slots__ = ()


class _Inexact(Exception):
    """orjson read a field's number as a float: its literal text is needed."""


_TYPE_NAMES = {
    type(None): "null",
    bool: "bool",
    int: "int",
    _IntText: "int",
    float: "float",
    _FloatText: "float",
    str: "string",
    list: "array",
    dict: "object",
}


def _type_name(value: object) -> str:
    """The JSON-ish name of a parsed value's type, for reasons."""
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def parse_order(
    raw: bytes | None, max_time_ms: int | None = None, *, max_future_skew_ms: int | None = None,
    max_bytes: int | None = None,
) -> Order:
    """The order in a message value; raises `InvalidOrder` naming the first problem.

    An `order_time_ms` above `max_time_ms` (when given) is one; `max_future_skew_ms` is only
    for the reason's text. So is a value over `max_bytes` (MAX_MESSAGE_BYTES), before it is
    read at all.
    """
    if raw is None:
        raise InvalidOrder("value: missing")
    if max_bytes is not None and len(raw) > max_bytes:
        raise InvalidOrder(f"value: {len(raw)} bytes, more than MAX_MESSAGE_BYTES "
                           f"({format_size_bytes(max_bytes)})")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson also fails on numbers too large for a double: the exact parser may still read it.
        doc = _load_exact(raw, check_strings=True)
    try:
        order = _order_from(doc)
    except _Inexact:
        order = _order_from(_load_exact(raw, check_strings=False))
    if max_time_ms is not None and order.order_time_ms > max_time_ms:
        _too_far_ahead(order.order_time_ms, max_future_skew_ms)
    return order


def _too_far_ahead(time_ms: int, skew_ms: int | None) -> NoReturn:
    """The reason for an `order_time` beyond the worker's clock plus MAX_FUTURE_SKEW."""
    skew = "" if skew_ms is None else f" ({format_duration_ms(skew_ms)})"
    raise InvalidOrder(
        f"order_time: {format_time_ms(time_ms)} is more than MAX_FUTURE_SKEW{skew}"
        " ahead of the worker's clock"
    )


def _order_from(doc: Any) -> Order:
    """The order in a parsed message; fields checked in the order the reasons are reported."""
    if type(doc) is not dict:
        raise InvalidOrder(f"value: not a JSON object (got {_type_name(doc)})")
    number = _order_number(doc.get("order_number", _MISSING))
    price = _price(doc.get("price", _MISSING))
    first_name, last_name = _buyer(doc.get("buyer", _MISSING))
    time_ms = _order_time(doc.get("order_time", _MISSING))
    # What Order(...) does, without its Python-level __new__: half the cost, on the hot path.
    return _new_tuple(Order, (number, price, first_name, last_name, time_ms))


def _reject_constant(name: str) -> NoReturn:
    """`NaN`, `Infinity` and `-Infinity` are not JSON, though the stdlib parser accepts them."""
    raise ValueError(f"{name} is not JSON")


def _load_exact(raw: bytes, check_strings: bool) -> Any:
    """`raw` parsed with numbers kept as their literal text (`_IntText` / `_FloatText`)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidOrder("value: not UTF-8") from None
    try:
        doc = json.loads(
            text, parse_int=_IntText, parse_float=_FloatText, parse_constant=_reject_constant
        )
        if check_strings:
            # The stdlib accepts lone surrogates (`"\ud800"`), which orjson, and so every later
            # stage that writes JSON, rejects; orjson would have said so if no number came first.
            orjson.dumps(doc)
    except (ValueError, RecursionError, orjson.JSONEncodeError):
        raise InvalidOrder("value: not valid JSON") from None
    return doc


def _order_number(value: Any) -> int:
    """`order_number`: a JSON integer in the BIGINT range."""
    if type(value) is int:
        if BIGINT_MIN <= value <= BIGINT_MAX:
            return value
        raise InvalidOrder("order_number: out of BIGINT range")
    return _order_number_slow(value)


def _order_number_slow(value: Any) -> int:
    """`order_number` when it is not a plain int: a literal integer, or a reason."""
    if value is _MISSING:
        raise InvalidOrder("order_number: missing")
    if type(value) is float:
        raise _Inexact
    if type(value) is _IntText:
        number = _small_int(value)
        return _order_number(BIGINT_MAX + 1 if number is None else number)
    raise InvalidOrder(f"order_number: must be a JSON integer, got {_type_name(value)}")


def _small_int(text: str) -> int | None:
    """The integer of a JSON integer literal, or None if it has more than 19 digits."""
    # JSON integers have no leading zeros, so 20+ digits is beyond BIGINT and epoch ms alike;
    # checking the length first also keeps int() away from its 4300-digit limit.
    return int(text) if len(text.lstrip("-")) <= 19 else None


def _price(value: Any) -> Decimal:
    """`price`: exact, from a JSON string or number like `123.45`."""
    if type(value) is str or type(value) is _IntText or type(value) is _FloatText:
        return _price_from_text(value)
    if type(value) is int:
        return _price_from_text(str(value))  # exact: orjson only gives ints that fit 64 bits
    if type(value) is float:
        raise _Inexact
    if value is _MISSING:
        raise InvalidOrder("price: missing")
    raise InvalidOrder(f"price: must be a string or number, got {_type_name(value)}")


def _price_from_text(text: str) -> Decimal:
    """The Decimal of `123`, `123.4`, `123.45` or a `-0` form, always with 2 decimals."""
    whole, _, fraction = text.partition(".")
    # The common `12.34`, without the regex; isdigit() alone would take `²` and other scripts.
    if len(fraction) == 2 and whole.isdigit() and fraction.isdigit() and text.isascii():
        if len(whole) <= MAX_WHOLE_DIGITS:
            return Decimal(text)
    return _price_from_text_slow(text)


def _price_from_text_slow(text: str) -> Decimal:
    """`_price_from_text` for every other form, with the reason when it is not a price."""
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise InvalidOrder(f"price: not a decimal like 123.45: {text!r}")
    sign, whole, fraction = match.groups()
    fraction = fraction or ""
    if sign and (whole.strip("0") or fraction.strip("0")):
        raise InvalidOrder("price: negative")
    if len(fraction) > MAX_FRACTION_DIGITS:
        raise InvalidOrder("price: more than 2 decimal places")
    if len(whole) > MAX_WHOLE_DIGITS:
        raise InvalidOrder("price: more than 30 digits before the point")
    # Rebuilt without the sign (so `-0` is plain zero) and padded to 2 places, so that `12.3`
    # and `12.30` give the same Decimal, down to its text.
    return Decimal(f"{whole}.{fraction:0<2}")


def _buyer(value: Any) -> tuple[str, str]:
    """`buyer`: an object with a non-empty `first_name` and `last_name`."""
    if type(value) is not dict:
        if value is _MISSING:
            raise InvalidOrder("buyer: missing")
        raise InvalidOrder(f"buyer: must be an object, got {_type_name(value)}")
    return _name(value, "first_name"), _name(value, "last_name")


def _name(buyer: dict[str, Any], key: str) -> str:
    """One name, exactly as given; empty or whitespace-only is no name."""
    name = buyer.get(key, _MISSING)
    if type(name) is str and name and not name.isspace():
        if len(name) > MAX_NAME_CHARS:
            raise InvalidOrder(f"buyer.{key}: {len(name)} characters, more than "
                               f"{MAX_NAME_CHARS}")
        return name
    if name is _MISSING:
        raise InvalidOrder(f"buyer.{key}: missing")
    if type(name) is str:
        raise InvalidOrder(f"buyer.{key}: empty")
    raise InvalidOrder(f"buyer.{key}: must be a string, got {_type_name(name)}")


def _order_time(value: Any) -> int:
    """`order_time`: ISO-8601 / Flink text or an integer, as epoch ms."""
    if type(value) is str:
        return _time_from_text(value)
    if type(value) is int:
        return _epoch_ms(value)
    if type(value) is _IntText:
        number = _small_int(value)
        return _epoch_ms(MAX_MS + 1 if number is None else number)
    if type(value) is float:
        raise _Inexact  # maybe an integer beyond 64 bits: out of range, not "got float"
    if value is _MISSING:
        raise InvalidOrder("order_time: missing")
    raise InvalidOrder(f"order_time: must be a string or integer, got {_type_name(value)}")


def _epoch_ms(ms: int) -> int:
    """`ms` if it is a time the service can represent (years 1 to 9999)."""
    if MIN_MS <= ms <= MAX_MS:
        return ms
    raise InvalidOrder("order_time: out of range")


def _time_from_text(text: str) -> int:
    """Epoch ms of an `order_time` string."""
    # Fast path for `2026-11-24T10:15:30.123Z`: the minute `2026-11-24T10:15:` is looked up
    # (it was checked by the slow path when cached), "30" + "123" is 30123 ms into it.
    if len(text) == 24 and text[23] == "Z" and text[19] == ".":
        minute_ms = _MINUTE_MS.get(text[:17])
        if minute_ms is not None:
            digits = text[17:19] + text[20:23]
            # digits[0] < "6": second 60 and beyond go to the slow path, which rejects them.
            if digits.isdigit() and digits.isascii() and digits[0] < "6":
                return minute_ms + int(digits)
    return _time_from_text_slow(text)


def _time_from_text_slow(text: str) -> int:
    """Epoch ms through core.timefmt, remembering the minute of the common `...T...Z` form."""
    # core.timefmt's \d takes other scripts' digits and its $ a trailing newline: not ISO-8601.
    if not text.isascii() or text.endswith("\n"):
        raise InvalidOrder(f"order_time: not ISO-8601 or epoch milliseconds: {text!r}")
    try:
        ms = parse_time_ms(text)
    except ValueError as error:
        raise InvalidOrder(f"order_time: {error}") from None
    _epoch_ms(ms)  # an offset can move a year-1 or year-9999 time out of range
    if _ISO_MS_Z.fullmatch(text) is not None:
        if len(_MINUTE_MS) >= _MINUTE_CACHE_SIZE:
            _MINUTE_MS.clear()  # bounded; event time moves slowly, so refilling is cheap
        _MINUTE_MS[text[:17]] = ms - ms % 60_000
    return ms
