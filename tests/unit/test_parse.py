"""core.parse: every valid form of the order message, and the exact reason for each invalid one."""

import json
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from core.models import Order
from core.money import money_str
from core.parse import InvalidOrder, parse_order
from core.timefmt import MAX_MS, MIN_MS

T0 = 1795515330000  # 2026-11-24T10:15:30.000Z
BUYER = {"first_name": "Ana", "last_name": "Ruiz"}


def message(**fields: Any) -> dict[str, Any]:
    """A valid order as a dict, with `fields` replaced; a value of `...` removes the field."""
    base = {
        "order_number": 42,
        "price": "12.34",
        "buyer": dict(BUYER),
        "order_time": "2026-11-24T10:15:30.000Z",
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ...}


def num(literal: str) -> str:
    """A placeholder that `encode` writes as the bare JSON literal `literal` (e.g. `1e400`)."""
    return "@@" + literal


def encode(doc: dict[str, Any]) -> bytes:
    """`doc` as the bytes of a message, `num()` placeholders written as bare literals."""
    text = json.dumps(doc, ensure_ascii=False)
    while '"@@' in text:
        start = text.index('"@@')
        end = text.index('"', start + 1)
        text = text[:start] + text[start + 3 : end] + text[end + 1 :]
    return text.encode()


def reason(raw: bytes | None) -> str:
    """The reason parse_order gives for `raw`."""
    with pytest.raises(InvalidOrder) as caught:
        parse_order(raw)
    return str(caught.value)


def test_typical_message() -> None:
    raw = (
        b'{"order_number": 123, "price": "12.34", "buyer": {"first_name": "Ana",'
        b' "last_name": "Ruiz"}, "order_time": "2026-11-24T10:15:30.123Z"}'
    )
    assert parse_order(raw) == Order(123, Decimal("12.34"), "Ana", "Ruiz", 1795515330123)


def test_invalid_order_is_a_value_error_whose_str_is_the_reason() -> None:
    error = InvalidOrder("price: negative")
    assert isinstance(error, ValueError)
    assert str(error) == "price: negative"


# --- order_number -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("0", 0),
        ("-0", 0),
        ("123", 123),
        ("-7", -7),
        ("9223372036854775807", 9223372036854775807),
        ("-9223372036854775808", -9223372036854775808),
    ],
)
def test_valid_order_number(literal: str, expected: int) -> None:
    raw = encode(message(order_number=num(literal)))
    assert parse_order(raw).order_number == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (..., "order_number: missing"),
        ("42", "order_number: must be a JSON integer, got string"),
        (True, "order_number: must be a JSON integer, got bool"),
        (None, "order_number: must be a JSON integer, got null"),
        (num("42.0"), "order_number: must be a JSON integer, got float"),
        (num("1e3"), "order_number: must be a JSON integer, got float"),
        (num("1e400"), "order_number: must be a JSON integer, got float"),
        ([42], "order_number: must be a JSON integer, got array"),
        ({"n": 42}, "order_number: must be a JSON integer, got object"),
        (num("9223372036854775808"), "order_number: out of BIGINT range"),
        (num("-9223372036854775809"), "order_number: out of BIGINT range"),
        (num("18446744073709551615"), "order_number: out of BIGINT range"),  # orjson: int
        (num("18446744073709551616"), "order_number: out of BIGINT range"),  # orjson: float
        (num("1" + "0" * 400), "order_number: out of BIGINT range"),  # orjson: fails
        (num("1" + "0" * 5000), "order_number: out of BIGINT range"),  # int(): digit limit
    ],
)
def test_invalid_order_number(value: Any, expected: str) -> None:
    assert reason(encode(message(order_number=value))) == expected


# --- price --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12.34", "12.34"),
        ("12.3", "12.30"),
        ("12", "12.00"),
        ("0", "0.00"),
        ("0.00", "0.00"),
        ("0.05", "0.05"),
        ("007.50", "7.50"),
        ("-0", "0.00"),
        ("-0.0", "0.00"),
        ("-0.00", "0.00"),
        ("12345678901234567890.12", "12345678901234567890.12"),
        ("9" * 30, "9" * 30 + ".00"),
        ("9" * 30 + ".99", "9" * 30 + ".99"),
        (num("12.34"), "12.34"),
        (num("12.3"), "12.30"),
        (num("12"), "12.00"),
        (num("0"), "0.00"),
        (num("-0"), "0.00"),
        (num("-0.0"), "0.00"),
        (num("-0.00"), "0.00"),
        (num("0.1"), "0.10"),  # not 0.1000000000000000055511151231257827...
        (num("12345678901234567890.12"), "12345678901234567890.12"),
        (num("9007199254740993"), "9007199254740993.00"),  # 2**53 + 1: no float has it
        (num("18446744073709551615"), "18446744073709551615.00"),  # orjson: int
        (num("18446744073709551616"), "18446744073709551616.00"),  # orjson: float
        (num("9" * 30), "9" * 30 + ".00"),  # orjson: fails (beyond a double)
        (num("9" * 30 + ".99"), "9" * 30 + ".99"),
    ],
    ids=repr,
)
def test_valid_price(value: Any, expected: str) -> None:
    price = parse_order(encode(message(price=value))).price
    assert str(price) == expected  # exact value, always 2 places, no sign on zero
    assert money_str(price) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (..., "price: missing"),
        (True, "price: must be a string or number, got bool"),
        (None, "price: must be a string or number, got null"),
        ({"amount": "1.00"}, "price: must be a string or number, got object"),
        (["1.00"], "price: must be a string or number, got array"),
        ("-1.00", "price: negative"),
        ("-0.01", "price: negative"),
        ("-1.234", "price: negative"),
        (num("-5"), "price: negative"),
        (num("-12.34"), "price: negative"),
        ("1.234", "price: more than 2 decimal places"),
        ("1.500", "price: more than 2 decimal places"),
        ("-0.000", "price: more than 2 decimal places"),
        (num("1.234"), "price: more than 2 decimal places"),
        (num("1.500"), "price: more than 2 decimal places"),
        ("1" + "0" * 30, "price: more than 30 digits before the point"),
        ("1" + "0" * 30 + ".00", "price: more than 30 digits before the point"),
        ("0" * 31, "price: more than 30 digits before the point"),
        (num("1" + "0" * 30), "price: more than 30 digits before the point"),
        (num("1" + "0" * 5000), "price: more than 30 digits before the point"),
        ("1e3", "price: not a decimal like 123.45: '1e3'"),
        ("1E3", "price: not a decimal like 123.45: '1E3'"),
        (num("1e3"), "price: not a decimal like 123.45: '1e3'"),
        (num("1.5E+2"), "price: not a decimal like 123.45: '1.5E+2'"),
        (" 12.34", "price: not a decimal like 123.45: ' 12.34'"),
        ("12.34 ", "price: not a decimal like 123.45: '12.34 '"),
        ("12.34\n", "price: not a decimal like 123.45: '12.34\\n'"),
        ("1 000", "price: not a decimal like 123.45: '1 000'"),
        ("NaN", "price: not a decimal like 123.45: 'NaN'"),
        ("nan", "price: not a decimal like 123.45: 'nan'"),
        ("Infinity", "price: not a decimal like 123.45: 'Infinity'"),
        ("-Infinity", "price: not a decimal like 123.45: '-Infinity'"),
        ("", "price: not a decimal like 123.45: ''"),
        ("+1.00", "price: not a decimal like 123.45: '+1.00'"),
        ("--1", "price: not a decimal like 123.45: '--1'"),
        ("1.", "price: not a decimal like 123.45: '1.'"),
        (".5", "price: not a decimal like 123.45: '.5'"),
        ("1,50", "price: not a decimal like 123.45: '1,50'"),
        ("1_000", "price: not a decimal like 123.45: '1_000'"),
        ("12.34€", "price: not a decimal like 123.45: '12.34€'"),
        ("١٢.٣٤", "price: not a decimal like 123.45: '١٢.٣٤'"),  # Arabic-Indic digits
        ("²", "price: not a decimal like 123.45: '²'"),
        ("12.3²", "price: not a decimal like 123.45: '12.3²'"),
        ("0x10", "price: not a decimal like 123.45: '0x10'"),
    ],
    ids=repr,
)
def test_invalid_price(value: Any, expected: str) -> None:
    assert reason(encode(message(price=value))) == expected


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_bare_non_finite_price_is_not_json(literal: str) -> None:
    raw = encode(message(price=num(literal)))
    assert literal.encode() in raw
    assert reason(raw) == "value: not valid JSON"


# --- buyer --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first_name", "last_name"),
    [
        ("Ana", "Ruiz"),
        ("José", "Núñez"),
        ("Zoë", "Ångström"),
        ("李", "小龙"),
        ("Ελένη", "Παπαδοπούλου"),
        ("🙂", "x"),
        (" Ana ", "Ruiz  "),  # kept exactly: no stripping
        ("A", "O'Brien/Smith"),
        ("e\u0301", "Ruiz"),  # decomposed é: no normalisation
    ],
)
def test_valid_names_are_kept_exactly(first_name: str, last_name: str) -> None:
    for raw in (
        encode(message(buyer={"first_name": first_name, "last_name": last_name})),
        orjson.dumps(message(buyer={"first_name": first_name, "last_name": last_name})),
    ):
        order = parse_order(raw)
        assert (order.first_name, order.last_name) == (first_name, last_name)
        assert order.buyer == (first_name, last_name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (..., "buyer: missing"),
        ("Ana Ruiz", "buyer: must be an object, got string"),
        (None, "buyer: must be an object, got null"),
        (["Ana", "Ruiz"], "buyer: must be an object, got array"),
        (5, "buyer: must be an object, got int"),
        ({}, "buyer.first_name: missing"),
        ({"last_name": "Ruiz"}, "buyer.first_name: missing"),
        ({"first_name": "", "last_name": "Ruiz"}, "buyer.first_name: empty"),
        ({"first_name": "   ", "last_name": "Ruiz"}, "buyer.first_name: empty"),
        ({"first_name": "\t\n", "last_name": "Ruiz"}, "buyer.first_name: empty"),
        ({"first_name": "\u00a0\u3000", "last_name": "Ruiz"}, "buyer.first_name: empty"),
        ({"first_name": 5, "last_name": "Ruiz"}, "buyer.first_name: must be a string, got int"),
        ({"first_name": 5.5, "last_name": "R"}, "buyer.first_name: must be a string, got float"),
        ({"first_name": None, "last_name": "R"}, "buyer.first_name: must be a string, got null"),
        ({"first_name": ["A"], "last_name": "R"}, "buyer.first_name: must be a string, got array"),
        ({"first_name": "Ana"}, "buyer.last_name: missing"),
        ({"first_name": "Ana", "last_name": ""}, "buyer.last_name: empty"),
        ({"first_name": "Ana", "last_name": " "}, "buyer.last_name: empty"),
        ({"first_name": "Ana", "last_name": False}, "buyer.last_name: must be a string, got bool"),
        ({"first_name": "", "last_name": 5}, "buyer.first_name: empty"),
    ],
    ids=repr,
)
def test_invalid_buyer(value: Any, expected: str) -> None:
    assert reason(encode(message(buyer=value))) == expected


def test_name_that_is_a_big_number_is_reported_as_a_number() -> None:
    raw = encode(message(buyer={"first_name": num("1" + "0" * 400), "last_name": "Ruiz"}))
    assert reason(raw) == "buyer.first_name: must be a string, got int"


# --- order_time ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-11-24T10:15:30.000Z", 1795515330000),
        ("2026-11-24T10:15:30.123Z", 1795515330123),
        ("2026-11-24T10:15:30Z", 1795515330000),
        ("2026-11-24T10:15:30.5Z", 1795515330500),
        ("2026-11-24T10:15:30.000z", 1795515330000),
        ("2026-11-24T12:15:30.000+02:00", 1795515330000),
        ("2026-11-24T04:45:30.000-05:30", 1795515330000),
        ("2026-11-24T10:15:30.000+00:00", 1795515330000),
        ("2026-11-24 10:15:30.000", 1795515330000),  # Flink's JSON form, UTC
        ("2026-11-24 10:15:30.123", 1795515330123),
        ("2026-11-24T10:15:30.123456Z", 1795515330123),  # truncated, not rounded
        ("2026-11-24T10:15:30.999999Z", 1795515330999),
        ("2026-11-24 10:15:30.123456", 1795515330123),
        ("2026-01-01T00:00:00.000Z", 1767225600000),
        ("2024-02-29T23:59:59.999Z", 1709251199999),
        ("1970-01-01T00:00:00.000Z", 0),
        ("1969-12-31T23:59:59.999Z", -1),
        ("0001-01-01T00:00:00.000Z", -62135596800000),
        ("9999-12-31T23:59:59.999Z", 253402300799999),
        (1795515330123, 1795515330123),
        (0, 0),
        (-1, -1),
        (-62135596800000, -62135596800000),
        (253402300799999, 253402300799999),
    ],
    ids=repr,
)
def test_valid_order_time(value: Any, expected: int) -> None:
    raw = encode(message(order_time=value))
    assert parse_order(raw).order_time_ms == expected
    assert parse_order(raw).order_time_ms == expected  # again: the cached fast path


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (..., "order_time: missing"),
        (
            "yesterday",
            "order_time: not ISO-8601 or epoch milliseconds: 'yesterday'",
        ),
        (
            "2026-11-24T10:15:30.000",
            "order_time: no UTC offset in '2026-11-24T10:15:30.000' (add Z or +hh:mm)",
        ),
        (
            "2026-02-30T10:15:30.000Z",
            "order_time: day is out of range for month: '2026-02-30T10:15:30.000Z'",
        ),
        (
            "2026-11-24T10:15:60.000Z",
            "order_time: second must be in 0..59: '2026-11-24T10:15:60.000Z'",
        ),
        (
            "2026-11-24T10:15:30.000+24:00",
            "order_time: bad UTC offset in '2026-11-24T10:15:30.000+24:00'",
        ),
        (
            "2026-11-24T10:15:30.000Z\n",
            "order_time: not ISO-8601 or epoch milliseconds: '2026-11-24T10:15:30.000Z\\n'",
        ),
        (
            "٢٠٢٦-11-24T10:15:30.000Z",
            "order_time: not ISO-8601 or epoch milliseconds: '٢٠٢٦-11-24T10:15:30.000Z'",
        ),
        ("", "order_time: not ISO-8601 or epoch milliseconds: ''"),
        ("1795515330000", "order_time: not ISO-8601 or epoch milliseconds: '1795515330000'"),
        ("9999-12-31T23:59:59.999-01:00", "order_time: out of range"),
        ("0001-01-01T00:30:00.000+01:00", "order_time: out of range"),
        (253402300800000, "order_time: out of range"),
        (-62135596800001, "order_time: out of range"),
        (num("9223372036854775808"), "order_time: out of range"),
        (num("18446744073709551616"), "order_time: out of range"),  # orjson: float
        (num("1" + "0" * 400), "order_time: out of range"),  # orjson: fails
        (num("1795515330000.0"), "order_time: must be a string or integer, got float"),
        (num("1.7e12"), "order_time: must be a string or integer, got float"),
        (True, "order_time: must be a string or integer, got bool"),
        (None, "order_time: must be a string or integer, got null"),
        ({"ms": 1}, "order_time: must be a string or integer, got object"),
    ],
    ids=repr,
)
def test_invalid_order_time(value: Any, expected: str) -> None:
    assert reason(encode(message(order_time=value))) == expected


@pytest.mark.parametrize(
    ("warm", "bad", "expected"),
    [
        (
            "2026-11-24T10:15:30.000Z",
            "2026-11-24T10:15:60.000Z",
            "order_time: second must be in 0..59: '2026-11-24T10:15:60.000Z'",
        ),
        (
            "2026-11-24T10:15:30.000Z",
            "2026-11-24T10:15:3x.000Z",
            "order_time: not ISO-8601 or epoch milliseconds: '2026-11-24T10:15:3x.000Z'",
        ),
        (
            "2026-11-24T10:15:30.000Z",
            "2026-11-24T10:15:3١.000Z",
            "order_time: not ISO-8601 or epoch milliseconds: '2026-11-24T10:15:3١.000Z'",
        ),
        (
            "2026-11-24T10:15:30.000Z",
            "2026-11-24T10:15:+1.000Z",
            "order_time: not ISO-8601 or epoch milliseconds: '2026-11-24T10:15:+1.000Z'",
        ),
    ],
)
def test_cached_minute_does_not_let_a_bad_second_through(
    warm: str, bad: str, expected: str
) -> None:
    parse_order(encode(message(order_time=warm)))
    assert reason(encode(message(order_time=bad))) == expected


def iso_z(ms: int) -> str:
    """`ms` as `YYYY-MM-DDTHH:MM:SS.mmmZ`, the year zero-padded (unlike strftime below 1000)."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{ms % 1000:03d}Z"


def test_iso_times_agree_with_datetime_across_the_whole_range() -> None:
    rng = random.Random(7)
    samples = [rng.randint(MIN_MS, MAX_MS) for _ in range(2000)]
    samples += [T0 + rng.randint(-600_000, 600_000) for _ in range(2000)]  # cache hits
    samples += [rng.randint(-600_000, 600_000) for _ in range(2000)]  # around 0: negative ms
    for ms in samples:
        raw = encode(message(order_time=iso_z(ms)))
        assert parse_order(raw).order_time_ms == ms


# --- MAX_FUTURE_SKEW: no order_time further ahead of the worker's clock -----------------------

NOW = T0  # the worker's clock in these tests: 2026-11-24T10:15:30.000Z
HOUR = 3_600_000


def future_reason(order_time: Any, skew_ms: int | None = HOUR, **fields: Any) -> str:
    """The reason for an order at `order_time` when the worker's clock is NOW."""
    with pytest.raises(InvalidOrder) as caught:
        parse_order(
            encode(message(order_time=order_time, **fields)),
            NOW + (HOUR if skew_ms is None else skew_ms),
            max_future_skew_ms=skew_ms,
        )
    return str(caught.value)


def test_an_order_time_beyond_the_skew_is_invalid() -> None:
    for _ in range(2):  # the second time through the cached minute
        text = future_reason("2026-11-24T12:15:30.000Z")  # 2 h ahead, the limit 1 h
        assert text.startswith("order_time:")
        assert "MAX_FUTURE_SKEW (1h)" in text
        assert text == (
            "order_time: 2026-11-24T12:15:30.000Z is more than MAX_FUTURE_SKEW (1h) ahead of "
            "the worker's clock"
        )


def test_exactly_at_the_skew_is_valid_and_one_ms_more_is_not() -> None:
    limit = NOW + HOUR
    for _ in range(2):
        at_limit = encode(message(order_time="2026-11-24T11:15:30.000Z"))
        assert parse_order(at_limit, limit).order_time_ms == 1795518930000
        assert parse_order(encode(message(order_time=1795518930000)), limit).order_time_ms == (
            1795518930000
        )
        assert future_reason("2026-11-24T11:15:30.001Z").startswith(
            "order_time: 2026-11-24T11:15:30.001Z is more than"
        )
        assert future_reason(1795518930001).startswith("order_time: 2026-11-24T11:15:30.001Z")


def test_the_past_and_the_present_are_valid() -> None:
    for value in ("2026-11-24T10:15:30.000Z", 0, MIN_MS, "2026-11-24T10:15:29.999Z"):
        parse_order(encode(message(order_time=value)), NOW + HOUR, max_future_skew_ms=HOUR)


def test_a_mistyped_year_is_invalid_with_the_limit_and_valid_without() -> None:
    year_2062 = 2903299200000  # datetime(2062, 1, 1, tzinfo=UTC).timestamp() * 1000
    assert datetime(2062, 1, 1, tzinfo=UTC) == datetime.fromtimestamp(year_2062 / 1000, UTC)
    expected = (
        "order_time: 2062-01-01T00:00:00.000Z is more than MAX_FUTURE_SKEW (1h) ahead of the "
        "worker's clock"
    )
    for value in (year_2062, "2062-01-01T00:00:00.000Z", "2062-01-01T01:00:00.000+01:00"):
        assert future_reason(value) == expected
        assert parse_order(encode(message(order_time=value))).order_time_ms == year_2062


def test_mis_scaled_epochs_are_invalid() -> None:
    # Epoch ms with two digits too many: 7659-10-05T17:50:00.000Z, within the range of years.
    hundredfold = T0 * 100
    assert parse_order(encode(message(order_time=hundredfold))).order_time_ms == hundredfold
    assert future_reason(hundredfold) == (
        "order_time: 7659-10-05T17:50:00.000Z is more than MAX_FUTURE_SKEW (1h) ahead of the "
        "worker's clock"
    )
    # Epoch microseconds read as ms: beyond year 9999, so out of range with or without the limit.
    micros = 1_795_515_330_000_000
    assert future_reason(micros) == "order_time: out of range"
    assert reason(encode(message(order_time=micros))) == "order_time: out of range"


def test_the_reason_spells_the_skew_given() -> None:
    two_days = "2026-11-26T10:15:30.000Z"
    assert "MAX_FUTURE_SKEW (30m) ahead" in future_reason(two_days, skew_ms=1_800_000)
    assert "MAX_FUTURE_SKEW (90s) ahead" in future_reason(two_days, skew_ms=90_000)
    assert "MAX_FUTURE_SKEW (1500ms) ahead" in future_reason(two_days, skew_ms=1_500)
    assert future_reason(two_days, skew_ms=None) == (
        "order_time: 2026-11-26T10:15:30.000Z is more than MAX_FUTURE_SKEW ahead of the "
        "worker's clock"
    )


def test_the_limit_holds_when_the_exact_parser_reads_the_message() -> None:
    # A number price orjson reads as a float sends the message to the stdlib parser.
    text = future_reason("2026-11-24T12:15:30.000Z", price=num("12.30"))
    assert text.startswith("order_time: 2026-11-24T12:15:30.000Z is more than MAX_FUTURE_SKEW")
    assert future_reason(num("2903299200000"), price=num("12.30")).startswith(
        "order_time: 2062-01-01T00:00:00.000Z is more than"
    )


def test_an_earlier_problem_is_reported_before_the_skew() -> None:
    assert future_reason("2062-01-01T00:00:00.000Z", price="-1") == "price: negative"
    assert future_reason("2062-01-01T00:00:60.000Z") == (
        "order_time: second must be in 0..59: '2062-01-01T00:00:60.000Z'"
    )


# --- the message as a whole ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "value: missing"),
        (b"\xff\xfe", "value: not UTF-8"),
        (b'{"order_number": 1, "price": "\xe9"}', "value: not UTF-8"),  # Latin-1 é
        (b'{"order_number": 1, "price": "\xed\xa0\x80"}', "value: not UTF-8"),  # a surrogate
        (b"", "value: not valid JSON"),
        (b"not json", "value: not valid JSON"),
        (b'{"order_number": 1,}', "value: not valid JSON"),
        (b'{"order_number": 01}', "value: not valid JSON"),
        (b"\xef\xbb\xbf{}", "value: not valid JSON"),  # a UTF-8 byte order mark
        (b'{"order_number": 1} x', "value: not valid JSON"),
        (b'{"order_number": 1e400, "x": "\\ud800"}', "value: not valid JSON"),  # lone surrogate
        (b'{"x": "\\ud800", "order_number": 1e400}', "value: not valid JSON"),
        (
            b'{"order_number": 1e400, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            "value: not valid JSON",
        ),
        (b"[]", "value: not a JSON object (got array)"),
        (b"[1, 2]", "value: not a JSON object (got array)"),
        (b'"order"', "value: not a JSON object (got string)"),
        (b"42", "value: not a JSON object (got int)"),
        (b"4.2", "value: not a JSON object (got float)"),
        (b"1e400", "value: not a JSON object (got float)"),
        (b"1" + b"0" * 400, "value: not a JSON object (got int)"),
        (b"true", "value: not a JSON object (got bool)"),
        (b"null", "value: not a JSON object (got null)"),
        (b"{}", "order_number: missing"),
    ],
    ids=repr,
)
def test_invalid_message(raw: bytes | None, expected: str) -> None:
    assert reason(raw) == expected


def test_non_utf8_name_is_not_utf8() -> None:
    raw = b'{"order_number": 1, "price": "1.00", "buyer": {"first_name": "Jos\xe9"}}'
    assert reason(raw) == "value: not UTF-8"


def test_extra_fields_are_ignored() -> None:
    raw = encode(
        message(
            extra="x",
            note=None,
            tags=[1, 2.5, {"deep": [True]}],
            total=num("1e400"),  # beyond a double: read by the exact parser, then ignored
            buyer={"first_name": "Ana", "last_name": "Ruiz", "age": 3.5},
        )
    )
    assert parse_order(raw) == Order(42, Decimal("12.34"), "Ana", "Ruiz", T0)


def test_number_price_with_other_number_fields() -> None:
    raw = (
        b'{"order_time": 1795515330123, "buyer": {"last_name": "Ruiz", "first_name": "Ana"},'
        b' "price": 12345678901234567890.12, "order_number": 9223372036854775807}'
    )
    assert parse_order(raw) == Order(
        9223372036854775807, Decimal("12345678901234567890.12"), "Ana", "Ruiz", 1795515330123
    )


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"order_number": "1", "price": "-1", "buyer": 5, "order_time": 1.5}, "order_number"),
        ({"order_number": "1", "price": num("1.5")}, "order_number"),  # price a float
        ({"order_number": num("1.5"), "price": "x"}, "order_number"),
        ({"price": "-1", "buyer": 5, "order_time": 1.5}, "price"),
        ({"price": num("-1.5"), "buyer": 5}, "price"),
        ({"buyer": {"first_name": ""}, "order_time": 1.5}, "buyer.first_name"),
        ({"order_time": num("1.5")}, "order_time"),
    ],
    ids=repr,
)
def test_first_problem_is_reported(fields: dict[str, Any], expected: str) -> None:
    assert reason(encode(message(**fields))).startswith(expected + ": ")


def test_same_order_from_string_and_number_price() -> None:
    as_string = parse_order(encode(message(price="12.3")))
    as_number = parse_order(encode(message(price=num("12.30"))))
    assert as_string == as_number
    assert str(as_string.price) == str(as_number.price) == "12.30"


def test_minute_cache_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from core import parse

    monkeypatch.setattr(parse, "_MINUTE_CACHE_SIZE", 3)
    monkeypatch.setattr(parse, "_MINUTE_MS", {})
    for minute in range(10):
        ms = T0 + minute * 60_000 + 1_234
        for _ in range(2):  # a miss, then a hit (unless just cleared)
            assert parse_order(encode(message(order_time=iso_z(ms)))).order_time_ms == ms
        assert len(parse._MINUTE_MS) <= 3


# MAX_MESSAGE_BYTES and the names' limit (SPEC.md: over 256 characters is invalid)

def test_a_value_over_max_message_bytes_is_invalid_before_it_is_read():
    value = b'{"padding": "' + b"x" * 2_000 + b'"}'
    with pytest.raises(InvalidOrder) as error:
        parse_order(value, max_bytes=1_024)
    assert str(error.value) == (
        f"value: {len(value)} bytes, more than MAX_MESSAGE_BYTES (1KiB)")


def test_a_buyer_name_over_256_characters_is_invalid_and_256_is_not():
    def with_name(name: str) -> bytes:
        return json.dumps({"order_number": 1, "price": "1.00", "order_time": 0,
                           "buyer": {"first_name": name, "last_name": "Ruiz"}}).encode()

    assert parse_order(with_name("é" * 256)).first_name == "é" * 256
    with pytest.raises(InvalidOrder) as error:
        parse_order(with_name("a" * 257))
    assert str(error.value) == "buyer.first_name: 257 characters, more than 256"
