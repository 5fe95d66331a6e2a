"""Session windows against a dict standing in for the store, and against a naive oracle
that keeps every counted order and recomputes sessions from scratch."""

import random
from decimal import Decimal

import orjson
import pytest

from core.aggregation import AggregateConfig, Clock, apply_batch, close_windows
from core.closing import row_update
from core.models import Order
from core.schema import window_key
from core.sessions import SESSION_KIND, SessionWindow
from core.shuffle import Shuffled
from core.windows import parse_windows
from tests.unit.dictstore import DictStore

GAP = 30_000
SESSION = SessionWindow("session_30s", GAP)
FAR = 10**12


class Store(DictStore):
    def run(self, orders, clock=-FAR, lateness=FAR, retention=FAR, watermark=None):
        """One batch of `(number, price, buyer, time[, clock])` orders, each judged by its
        clock or `clock`; commit it, then close windows. Returns (batch result, closing)."""
        rows = [(o[0], Order(o[0], Decimal(o[1]), o[2][0], o[2][1], o[3]), None,
                 o[4] if len(o) > 4 else clock) for o in orders]
        item = Shuffled(0, clock if watermark is None else watermark, None,
                        [("orders:0", rows)] if rows else [])
        config = AggregateConfig((SESSION,), lateness, retention)
        result = apply_batch([item], config, self.read, Clock(0))
        self.apply(result.updates)
        return result, self.close(config)

    def sessions(self):
        """{(buyer, start): [end, count, sum, min, max]} as stored."""
        found = {}
        for key, value in self.scan("w|session_30s|"):
            _, _, start, buyer = key.split("|", 3)
            count, total, low, high, end = orjson.loads(value)
            found[tuple(orjson.loads(buyer)), int(start) - 10**14] = [
                end, count, Decimal(total), Decimal(low), Decimal(high)]
        return found


ANA, ED = ("Ana", "Ruiz"), ("Ed", "Zed")


def test_the_spec_parses_with_its_name_and_gap():
    assert parse_windows("session:30s", SESSION_KIND) == (SESSION,)
    assert SESSION.info() == {"gap_ms": 30_000, "size_ms": None, "slide_ms": None}
    with pytest.raises(ValueError, match="'session:0s': the gap must be positive"):
        parse_windows("session:0s", SESSION_KIND)
    with pytest.raises(ValueError, match="is not a duration"):
        parse_windows("session:soon", SESSION_KIND)


def test_orders_exactly_a_gap_apart_are_one_session():
    store = Store()
    store.run([(1, "1.00", ANA, 0), (2, "2.00", ANA, 30_000), (3, "4.00", ED, 30_001)])
    assert store.sessions() == {
        (ANA, 0): [60_000, 2, Decimal("3.00"), Decimal("1.00"), Decimal("2.00")],
        (ED, 30_001): [60_001, 1, Decimal("4.00"), Decimal("4.00"), Decimal("4.00")]}


def test_a_bridging_order_merges_two_sessions_and_deletes_the_later_row():
    store = Store()
    store.run([(1, "1.00", ANA, 0), (2, "2.00", ANA, 40_000)])
    assert set(store.sessions()) == {(ANA, 0), (ANA, 40_000)}
    result, _ = store.run([(3, "4.00", ANA, 20_000)])  # [20 s, 50 s) touches both
    assert store.sessions() == {
        (ANA, 0): [70_000, 3, Decimal("7.00"), Decimal("1.00"), Decimal("4.00")]}
    changes = [row_update(k.encode(), None if v is None else v.encode(), (SESSION,))
               for k, v in result.updates.items()]
    changes = [(c.start_ms, c.row is None) for c in changes if c is not None]
    assert sorted(changes) == [(0, False), (40_000, True)]  # an update, and a delete


def test_a_start_moving_earlier_is_a_delete_and_an_update():
    store = Store()
    store.run([(1, "1.00", ANA, 10_000)])
    result, _ = store.run([(2, "2.00", ANA, 0)])
    assert store.sessions() == {
        (ANA, 0): [40_000, 2, Decimal("3.00"), Decimal("1.00"), Decimal("2.00")]}
    assert result.updates[window_key("session_30s", 10_000, ANA)] is None


def test_an_order_extending_a_final_session_is_late_for_it_and_counts_in_none():
    store = Store()
    store.run([(1, "1.00", ANA, 0)], clock=0, lateness=5_000)
    # the session [0, 30 s) is final at 35 s; an order at 29 s would extend it
    result, _ = store.run([(2, "2.00", ANA, 29_000), (3, "3.00", ED, 29_000)], clock=35_000,
                          lateness=5_000)
    [late] = result.late
    assert late.order.order_number == 2
    assert [(m.window.name, m.start_ms, m.end_ms) for m in late.missed] == [
        ("session_30s", 0, 30_000)]
    sessions = store.sessions()
    assert sessions[ANA, 0][:2] == [30_000, 1]
    assert sessions[ED, 29_000][:2] == [59_000, 1]  # on time: its own window is open
    # an order whose own window is final, touching nothing: late for its own window
    result, _ = store.run([(4, "1.00", ("Bo", "Li"), 1_000)], clock=36_000, lateness=5_000)
    assert [(m.start_ms, m.end_ms) for m in result.late[0].missed] == [(1_000, 31_000)]


def test_final_sessions_are_published_once_and_forgotten_after_retention():
    store = Store()
    store.run([(1, "1.00", ANA, 0), (2, "3.00", ANA, 10_000), (3, "5.00", ED, 50_000)],
              clock=0, lateness=1_000, retention=60_000)
    _, closing = store.run([], clock=41_000, lateness=1_000, retention=60_000)
    assert [(orjson.loads(k), orjson.loads(v)) for k, v in closing.finals] == [
        (["session_30s", 0, "Ana", "Ruiz"], {
            "window_start": "1970-01-01T00:00:00.000Z",
            "window_end": "1970-01-01T00:00:40.000Z",
            "buyer": {"first_name": "Ana", "last_name": "Ruiz"}, "count": 2,
            "sum_price": "4.00", "min_price": "1.00", "max_price": "3.00",
            "avg_price": "2.00", "final": True})]
    _, closing = store.run([], clock=41_500, lateness=1_000, retention=60_000)
    assert closing.finals == []  # published once
    _, closing = store.run([], clock=101_000, lateness=1_000, retention=60_000)
    assert [orjson.loads(k)[1] for k, _ in closing.finals] == [50_000]  # ED's [50 s, 80 s)
    assert set(store.sessions()) == {(ED, 50_000)}  # Ana's past 40 s + 1 s + 60 s
    assert not any(k.startswith(("e|session_30s|", "b|session_30s|")) and "Ana" in k
                   for k in store)


def test_sessions_ending_together_are_published_and_forgotten_in_one_step():
    """A closing step never cuts the sessions of one end apart, even past its limit: the
    mark is that end, so one left behind would never be published."""
    store = Store()
    # Ana's session [0 s, 40 s) and Ed's [10 s, 40 s) end together, Bo's [12 s, 42 s) later
    store.run([(1, "1.00", ANA, 0), (2, "1.00", ANA, 10_000), (3, "1.00", ED, 10_000),
               (4, "1.00", ("Bo", "Li"), 12_000)], clock=0)
    config = AggregateConfig((SESSION,), 0, 0)
    store.run([], clock=45_000, lateness=FAR)  # the watermark moves; nothing closes yet
    first = close_windows(config, store.read, store.scan, limit=1)
    assert sorted(orjson.loads(k)[1:3] for k, _ in first.finals) == [[0, "Ana"], [10_000, "Ed"]]
    assert first.updates["f|session_30s"] == "40000" and first.more
    assert first.updates["r|session_30s"] == "40000"  # past retention 0, and published
    assert window_key("session_30s", 10_000, ED) in first.updates  # deleted with Ana's
    store.apply(first.updates)
    second = close_windows(config, store.read, store.scan, limit=1)
    assert [orjson.loads(k)[1:3] for k, _ in second.finals] == [[12_000, "Bo"]]
    assert not second.more and second.updates["f|session_30s"] == "45000"


def _oracle(orders, gap, lateness):
    """Every counted order kept, sessions recomputed from them before each order: each
    order, in log order, judged by its own clock against the sessions before it."""
    counted = {}
    late = set()
    for number, price, buyer, ms, clock in orders:
        before = _components(counted.get(buyer, []), gap)
        touching = [(s, e) for s, e, _ in before if s <= ms + gap and ms <= e]
        if any(e + lateness <= clock for s, e in touching) or (
                not touching and ms + gap + lateness <= clock):
            late.add(number)
            continue
        counted.setdefault(buyer, []).append((ms, Decimal(price)))
    rows = {}
    for buyer, times in counted.items():
        for start, end, prices in _components(times, gap):
            rows[buyer, start] = [end, len(prices), sum(prices), min(prices), max(prices)]
    return rows, late


def _components(times, gap):
    """Touching `[t, t + gap)` of one buyer's orders, merged: (start, end, prices)."""
    found = []
    for ms, price in sorted(times):
        if found and ms <= found[-1][1]:
            found[-1][1] = max(found[-1][1], ms + gap)
            found[-1][2].append(price)
        else:
            found.append([ms, ms + gap, [price]])
    return [(s, e, p) for s, e, p in found]


def _random_log(rng):
    """Orders of two buyers with random times, each with a clock that mostly grows."""
    orders, clock = [], -FAR
    for number in range(1, rng.randrange(1, 80)):
        clock = max(clock, rng.randrange(-50_000, 200_000)) if rng.random() < 0.7 else (
            rng.randrange(-50_000, 200_000))  # an order of another origin, its own clock
        orders.append((number, f"{rng.randrange(1, 10_000) / 100:.2f}", rng.choice([ANA, ED]),
                       rng.randrange(0, 200_000), clock))
    return orders


@pytest.mark.parametrize("seed", range(40))
def test_any_cut_into_batches_matches_the_naive_oracle(seed):
    rng = random.Random(seed)
    lateness = rng.choice([0, 2_000, 10_000])
    orders = _random_log(rng)
    rows, expected_late = _oracle(orders, GAP, lateness)
    for most in (1, 7, 1000):
        store, late, rest = Store(), set(), list(orders)
        while rest:
            cut = rng.randint(1, most)
            result, _ = store.run(rest[:cut], lateness=lateness)
            late |= {item.order.order_number for item in result.late}
            rest = rest[cut:]
        assert store.sessions() == rows
        assert late == expected_late


def test_the_oracle_test_meets_late_orders_and_merges():
    found = [_oracle(_random_log(random.Random(seed)), GAP, 2_000) for seed in range(40)]
    assert sum(len(late) for _, late in found) > 100
    assert sum(row[1] > 1 for rows, _ in found for row in rows.values()) > 50

