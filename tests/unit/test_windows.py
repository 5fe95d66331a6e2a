"""Window specs and epoch-aligned assignment at the boundaries."""

import pytest

from core.closing import row_update
from core.fixed import FixedWindow, parse_window_spec, parse_window_specs, window_starts_ms
from core.schema import total_key, window_key


def test_specs_parse_with_names_as_in_spec_md():
    assert parse_window_specs("tumble:10s,hop:1m/10s") == (
        FixedWindow("tumble_10s", "tumbling", 10_000, 10_000),
        FixedWindow("hop_1m_10s", "hopping", 60_000, 10_000),
    )
    assert parse_window_spec("hop:1h/500ms").name == "hop_1h_500ms"
    assert parse_window_spec("tumble:1d").size_ms == 86_400_000


@pytest.mark.parametrize(("text", "message"), [
    ("slide:10s", "is not tumble:<size> or hop:<size>/<slide>"),
    ("tumble:10", "is not a duration"),
    ("hop:1m", "needs <size>/<slide>"),
    ("hop:1m/7s", "size must be a multiple of the slide"),
    ("tumble:0s", "must be positive"),
    ("tumble:10s,tumble:10s", "window tumble_10s is configured twice"),
    ("", "at least one window"),
])
def test_bad_specs_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        parse_window_specs(text)


def test_an_order_exactly_at_a_window_end_belongs_to_the_next_window():
    # [0, 10000) excludes 10000
    assert list(window_starts_ms(10_000, 10_000, 10_000)) == [10_000]
    assert list(window_starts_ms(9_999, 10_000, 10_000)) == [0]


def test_hopping_windows_overlap():
    # 1 min windows every 10 s: 6 windows hold each instant
    assert list(window_starts_ms(65_000, 60_000, 10_000)) == [
        10_000, 20_000, 30_000, 40_000, 50_000, 60_000]
    assert list(window_starts_ms(60_000, 60_000, 10_000)) == [
        10_000, 20_000, 30_000, 40_000, 50_000, 60_000]


def test_alignment_is_to_the_epoch_even_when_the_slide_does_not_divide_the_hour():
    # a 7 s slide: windows start at multiples of 7000 ms since 1970, not at the hour
    hour_ms = 1_795_514_400_000  # 2026-11-24T10:00:00Z, not a multiple of 7000
    assert hour_ms % 7_000 != 0
    starts = list(window_starts_ms(hour_ms, 14_000, 7_000))
    # 1_795_514_400_000 // 7_000 = 256_502_057 -> latest start 256_502_057 * 7_000
    assert starts == [1_795_514_392_000, 1_795_514_399_000]
    assert all(s % 7_000 == 0 and s <= hour_ms < s + 14_000 for s in starts)


def test_times_before_the_epoch_floor_down():
    assert list(window_starts_ms(-1, 10_000, 10_000)) == [-10_000]


def test_the_row_update_of_a_changelog_record_names_its_window_and_buyer():
    tumble, hop = parse_window_specs("tumble:10s,hop:1m/10s")
    key = window_key("hop_1m_10s", 20_000, ("Ana", "Ruiz")).encode()
    value = b'[2, "5.00", "2.00", "3.00"]'
    row = row_update(key, value, (tumble, hop))
    assert row is not None and (row.window, row.buyer) == ("hop_1m_10s", ("Ana", "Ruiz"))
    assert row.as_json() == {
        "window_start": "1970-01-01T00:00:20.000Z", "window_end": "1970-01-01T00:01:20.000Z",
        "buyer": {"first_name": "Ana", "last_name": "Ruiz"}, "count": 2,
        "sum_price": "5.00", "min_price": "2.00", "max_price": "3.00", "avg_price": "2.50",
        "final": False}
    assert row_update(key, None, (tumble, hop)) is None  # the row deleted
    assert row_update(key, value, (tumble,)) is None  # a window not asked for
    assert row_update(total_key(("Ana", "Ruiz")).encode(), b'[2, "5.00"]', (tumble, hop)) is None
    assert row_update(b"~commit", b"", (tumble, hop)) is None
