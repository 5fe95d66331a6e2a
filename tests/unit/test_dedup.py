"""Dedup decisions, the horizon and expiry, against a dict store."""

from decimal import Decimal

from core.dedup import dedup_batch, entry_key
from core.models import Order
from tests.unit.test_aggregate import DictStore

DAY = 86_400_000


def order(number, price="1.00", ms=0, first="Ana"):
    return Order(number, Decimal(price), first, "Ruiz", ms)


def run(store, orders, horizon=DAY):
    result = dedup_batch([(i, o) for i, o in enumerate(orders)], horizon, store.read, store.scan)
    store.apply(result.updates)
    return result


def test_first_copy_wins_repeats_are_duplicates_other_content_conflicts():
    store = DictStore()
    result = run(store, [order(1), order(1), order(1, price="1.01"), order(1, first="Anna"),
                         order(2)])
    assert [o.order_number for _, o in result.accepted] == [1, 2]
    assert len(result.duplicates) == 1 and len(result.conflicts) == 2
    later = run(store, [order(1), order(1, ms=5)])
    assert (len(later.duplicates), len(later.conflicts), later.accepted) == (1, 1, [])


def test_entries_expire_behind_the_horizon_so_the_store_stops_growing():
    store = DictStore()
    for day in range(10):
        run(store, [order(day * 1000 + i, ms=day * DAY + i) for i in range(50)])
        entries = sum(1 for key in store if key.startswith("d|"))
        assert entries <= 2 * 50  # this day's and the previous day's at most
    assert entry_key(0) not in store and entry_key(9000) in store


def test_an_order_behind_the_horizon_is_too_old_and_an_expired_number_is_not_remembered():
    store = DictStore()
    run(store, [order(1, ms=0), order(2, ms=3 * DAY)])
    result = run(store, [order(3, ms=2 * DAY - 1), order(4, ms=2 * DAY)])
    assert [o.order_number for _, o in result.too_old] == [3]
    assert [o.order_number for _, o in result.accepted] == [4]
    assert entry_key(1) not in store  # 0 < 3 days - horizon: expired
