"""The order generator: reproducible with a seed, exact prices, bounded out-of-orderness."""

import re
import time
from decimal import Decimal
from typing import Any

import orjson
import pytest

from core.datagen import (
    FIRST_NAMES,
    LAST_NAMES,
    MAX_BUYERS,
    OrderGenerator,
    encode,
    price_text,
    rows_due,
)
from core.timefmt import parse_time_ms

START_MS = 1_795_514_400_000  # 2026-11-24T10:00:00.000Z


def take(generator: OrderGenerator, count: int, now_ms: int = START_MS) -> list[dict[str, Any]]:
    """`count` orders, all at the same wall-clock time."""
    return [generator.next_order(now_ms) for _ in range(count)]


def summary(orders: list[dict[str, Any]]) -> list[tuple[int, str, str, str]]:
    """Order numbers, buyers and prices: what a seed alone must repeat."""
    return [(o["order_number"], o["buyer"]["first_name"], o["buyer"]["last_name"], o["price"])
            for o in orders]


def test_start_constant_is_the_documented_moment() -> None:
    assert parse_time_ms("2026-11-24T10:00:00Z") == START_MS


def test_same_seed_repeats_numbers_buyers_and_prices() -> None:
    first = take(OrderGenerator(seed=42, max_out_of_order_ms=5_000), 500)
    time.sleep(0.002)  # a different wall clock must not matter
    second = take(OrderGenerator(seed=42, max_out_of_order_ms=5_000), 500)
    assert summary(first) == summary(second)


def test_same_seed_and_start_time_repeat_everything() -> None:
    def run() -> list[dict[str, Any]]:
        generator = OrderGenerator(seed=3, start_time_ms=START_MS, rows_per_second=7,
                                   max_out_of_order_ms=2_000)
        return [generator.next_order(now_ms) for now_ms in range(300)]  # wall clock ignored

    assert run() == run()


def test_different_seeds_differ() -> None:
    one = summary(take(OrderGenerator(seed=1), 50))
    two = summary(take(OrderGenerator(seed=2), 50))
    assert [o[0] for o in one] != [o[0] for o in two]
    assert [o[1:] for o in one] != [o[1:] for o in two]


def test_seeded_order_numbers_are_sequential_from_the_seed_base() -> None:
    numbers = [o["order_number"] for o in take(OrderGenerator(seed=7), 1_000)]
    assert numbers == list(range(8_000_000_000, 8_000_001_000))


def test_unseeded_order_numbers_start_from_the_wall_clock() -> None:
    before_ms = int(time.time() * 1000)
    numbers = [o["order_number"] for o in take(OrderGenerator(), 1_000)]
    after_ms = int(time.time() * 1000)
    assert before_ms * 1000 <= numbers[0] <= after_ms * 1000
    assert numbers == list(range(numbers[0], numbers[0] + 1_000))
    assert numbers[-1] < 2**63


def test_prices_are_exact_two_decimal_strings_in_range() -> None:
    prices = [o["price"] for o in take(OrderGenerator(seed=5), 2_000)]
    assert all(re.fullmatch(r"[1-9]\d{0,2}\.\d\d", p) for p in prices)
    assert all(Decimal("1.00") <= Decimal(p) <= Decimal("500.00") for p in prices)
    assert len(set(prices)) > 1_000


@pytest.mark.parametrize(("cents", "text"), [(100, "1.00"), (105, "1.05"), (1234, "12.34"),
                                             (50000, "500.00")])
def test_price_text(cents: int, text: str) -> None:
    assert price_text(cents) == text


def test_buyer_pool_has_the_requested_distinct_size() -> None:
    generator = OrderGenerator(seed=11, buyers=37)
    assert len(generator.buyers) == len(set(generator.buyers)) == 37
    seen = {(o["buyer"]["first_name"], o["buyer"]["last_name"]) for o in take(generator, 3_000)}
    assert seen == set(generator.buyers)


def test_buyer_pool_goes_to_a_hundred_thousand() -> None:
    generator = OrderGenerator(seed=1, buyers=100_000)
    assert len(set(generator.buyers)) == 100_000
    assert MAX_BUYERS >= 100_000


def test_names_include_many_cultures_and_non_ascii() -> None:
    for first, last in [("José", "Núñez"), ("Zoë", "Brontë"), ("Søren", "Kierkegård"),
                        ("Łukasz", "Wąsowski"), ("Çağla", "Öztürk"), ("Văn An", "Nguyễn"),
                        ("伟", "王"), ("Ana", "Ruiz")]:
        assert first in FIRST_NAMES and last in LAST_NAMES
    assert len(set(FIRST_NAMES)) == len(FIRST_NAMES)
    assert len(set(LAST_NAMES)) == len(LAST_NAMES)
    pool = OrderGenerator(seed=7, buyers=20).buyers
    assert any(not (first + last).isascii() for first, last in pool)


@pytest.mark.parametrize("buyers", [0, -1, MAX_BUYERS + 1])
def test_bad_pool_size_is_refused(buyers: int) -> None:
    with pytest.raises(ValueError, match="buyers"):
        OrderGenerator(buyers=buyers)


def test_wall_clock_jitter_stays_within_max_out_of_order() -> None:
    generator = OrderGenerator(seed=9, max_out_of_order_ms=5_000)
    times = [parse_time_ms(o["order_time"]) for o in take(generator, 2_000)]
    assert all(START_MS - 5_000 <= t <= START_MS for t in times)
    assert min(times) < START_MS - 4_000  # it does jitter, over most of the range


def test_without_jitter_order_time_is_the_wall_clock() -> None:
    generator = OrderGenerator(seed=9)
    assert [o["order_time"] for o in take(generator, 3)] == ["2026-11-24T10:00:00.000Z"] * 3


def test_start_time_gives_a_synthetic_clock_at_the_rate() -> None:
    generator = OrderGenerator(seed=1, start_time_ms=START_MS, rows_per_second=4)
    times = [o["order_time"] for o in take(generator, 5, now_ms=0)]
    assert times == ["2026-11-24T10:00:00.000Z", "2026-11-24T10:00:00.250Z",
                     "2026-11-24T10:00:00.500Z", "2026-11-24T10:00:00.750Z",
                     "2026-11-24T10:00:01.000Z"]


def test_start_time_jitter_stays_within_max_out_of_order() -> None:
    generator = OrderGenerator(seed=2, start_time_ms=START_MS, rows_per_second=10,
                               max_out_of_order_ms=1_500)
    times = [parse_time_ms(o["order_time"]) for o in take(generator, 1_000, now_ms=0)]
    clocks = [START_MS + 100 * i for i in range(1_000)]
    assert all(clock - 1_500 <= t <= clock for t, clock in zip(times, clocks, strict=True))
    assert any(t < clock - 1_000 for t, clock in zip(times, clocks, strict=True))


def test_encode_gives_the_order_number_key_and_utf8_json() -> None:
    order = {"order_number": 8_000_000_000, "price": "12.30",
             "buyer": {"first_name": "Zoë", "last_name": "Brontë"},
             "order_time": "2026-11-24T10:00:00.000Z"}
    key, value = encode(order)
    assert key == b"8000000000"
    assert value == ('{"order_number":8000000000,"price":"12.30","buyer":{"first_name":"Zoë",'
                     '"last_name":"Brontë"},"order_time":"2026-11-24T10:00:00.000Z"}').encode()
    assert OrderGenerator.encode(order) == (key, value)
    assert orjson.loads(value) == order


@pytest.mark.parametrize(("elapsed_s", "rate", "due"), [(0.0, 10, 1), (0.099, 10, 1),
                                                        (0.1, 10, 2), (9.95, 10, 100),
                                                        (0.5, 0.5, 1), (2.0, 0.5, 2)])
def test_rows_due(elapsed_s: float, rate: float, due: int) -> None:
    assert rows_due(elapsed_s, rate) == due
