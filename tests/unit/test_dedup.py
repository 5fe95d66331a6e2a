"""Dedup decisions, the horizon and expiry, against a dict store."""

import random
from decimal import Decimal

from core.dedup import dedup_batch, expire
from core.models import Order
from core.schema import entry_key
from tests.unit.dictstore import DictStore

DAY = 86_400_000


def order(number, price="1.00", ms=0, first="Ana"):
    return Order(number, Decimal(price), first, "Ruiz", ms)


def run(store, orders, horizon=DAY, watermark=-(2**63), before=None, expire_at=None):
    """Decide `orders`, each judged at its origin's watermark `before` (default: its own
    time, an in-order stream), then expire what the partition watermark left behind."""
    result = dedup_batch([(i, o, o.order_time_ms if before is None else before)
                          for i, o in enumerate(orders)], horizon, watermark, store.read)
    if expire_at is not None:
        expire(expire_at - horizon, store.scan, result.updates)
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
        run(store, [order(day * 1000 + i, ms=day * DAY + i) for i in range(50)],
            expire_at=day * DAY + 49)
        entries = sum(1 for key in store if key.startswith("d|"))
        assert entries <= 2 * 50  # this day's and the previous day's at most
    assert entry_key(0) not in store and entry_key(9000) in store


def test_an_order_behind_the_horizon_is_too_old_and_an_expired_number_is_not_remembered():
    store = DictStore()
    run(store, [order(1, ms=0), order(2, ms=3 * DAY)], expire_at=3 * DAY)
    result = run(store, [order(3, ms=2 * DAY - 1), order(4, ms=2 * DAY)], before=3 * DAY,
                 expire_at=3 * DAY)
    assert [o.order_number for _, o in result.too_old] == [3]
    assert [o.order_number for _, o in result.accepted] == [4]
    assert entry_key(1) not in store  # 0 < 3 days - horizon: expired


def test_a_number_is_remembered_from_when_it_was_recorded_not_from_its_own_time():
    """The first copy, dated 0, arrives when its partition is at 0.9 days: recorded at
    0.9 days. A copy with other content dated 1.5 days is within the horizon of that, so
    it is a conflict; expiry by the first copy's own time would have let it count twice."""
    store = DictStore()
    run(store, [order(1, ms=0)], before=int(0.9 * DAY))
    later = run(store, [order(1, price="9.99", ms=int(1.5 * DAY))], expire_at=int(1.5 * DAY))
    assert (len(later.conflicts), later.accepted) == (1, [])
    assert entry_key(1) in store
    # past 0.9 days + horizon the number is free again: a new order
    again = run(store, [order(1, price="9.99", ms=int(1.95 * DAY))],
                expire_at=int(1.95 * DAY))
    assert [o.order_number for _, o in again.accepted] == [1]


def test_expiry_never_changes_a_decision():
    """Random copies judged with and without expiry must be decided alike: an entry is only
    deleted once no later copy's clock can see it within the horizon."""
    rng = random.Random(3)
    for _ in range(50):
        kept, expired = DictStore(), DictStore()
        clock = 0
        for _ in range(30):
            clock += rng.randrange(0, DAY // 2)
            batch = [order(rng.randrange(8), price=rng.choice(["1.00", "2.00"]),
                           ms=clock - rng.randrange(0, DAY)) for _ in range(rng.randrange(1, 4))]
            a = run(kept, batch, before=clock, watermark=clock - DAY // 3)
            b = run(expired, batch, before=clock, watermark=clock - DAY // 3,
                    expire_at=clock - DAY // 3)
            assert [(len(r.accepted), len(r.duplicates), len(r.conflicts), len(r.too_old))
                    for r in (a, b)] == [(len(a.accepted), len(a.duplicates),
                                          len(a.conflicts), len(a.too_old))] * 2
        assert len(expired) <= len(kept)
