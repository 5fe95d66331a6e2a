"""The aggregation step over a batch, against a dict standing in for the store."""

from decimal import Decimal

import orjson

from core.aggregate import read_watermark
from core.aggregation import AggregateConfig, Clock, apply_batch, close_windows, outbox
from core.fixed import FixedWindow
from core.models import Order
from core.schema import parse_window_key, total_key, window_key
from core.shuffle import Shuffled
from core.watermarks import NO_WATERMARK
from tests.unit.dictstore import DictStore as BaseStore

TUMBLE = FixedWindow("tumble_10s", "tumbling", 10_000, 10_000)
HOP = FixedWindow("hop_20s_10s", "hopping", 20_000, 10_000)
FAR = 10**12  # lateness and retention that never close a window in these tests
IDLE = 30_000


class DictStore(BaseStore):
    def run(self, items, windows=(TUMBLE,), lateness=FAR, retention=FAR, carriers=1,
            clock=None):
        """Apply a batch, commit it, then close windows on the committed state, as the agent."""
        config = AggregateConfig(windows, lateness, retention, carriers=carriers,
                                 idle_timeout_ms=IDLE)
        result = apply_batch(items, config, self.read, clock or Clock(0))
        self.apply(result.updates)
        result.finals = self.close(config).finals
        return result


def order(number, price, first, last, ms):
    return Order(number, Decimal(price), first, last, ms)


def at(source, *orders, watermark=NO_WATERMARK, carrier=0, idle_until=None):
    """A repartition record of `carrier`: orders with their source offsets and late clocks
    (`(offset, order)` or `(offset, order, clock)`), and the watermark it carries."""
    rows = [(item[0], item[1], None, item[2] if len(item) > 2 else None) for item in orders]
    return Shuffled(carrier, watermark, idle_until, [(source, rows)] if rows else [])


def mark(watermark, carrier=0, idle_until=None):
    """A watermark-only repartition record."""
    return Shuffled(carrier, watermark, idle_until, [])


def test_totals_and_windows_of_one_batch():
    store = DictStore()
    result = store.run([at("orders:0", (5, order(1, "10.50", "Ana", "Ruiz", 1_000)),
                           (6, order(2, "0.25", "Ana", "Ruiz", 12_000)),
                           (7, order(3, "99.99", "Zoë", "Brontë", 9_999), 12_000),
                           watermark=12_000)],
                       windows=(TUMBLE, HOP), lateness=0)
    assert result.counted == 3
    assert orjson.loads(store[total_key(("Ana", "Ruiz"))]) == [2, "10.75"]
    assert orjson.loads(store[total_key(("Zoë", "Brontë"))]) == [1, "99.99"]
    assert orjson.loads(store[window_key("tumble_10s", 0, ("Ana", "Ruiz"))]) == [
        1, "10.50", "10.50", "10.50"]
    # 9_999 after 12_000 in its partition, with no lateness: late for the windows ending
    # at 10_000, counted in [0, 20000)
    [late] = result.late
    assert sorted((w.name, start) for w, start, _ in late.missed) == [
        ("hop_20s_10s", -10_000), ("tumble_10s", 0)]
    assert window_key("tumble_10s", 0, ("Zoë", "Brontë")) not in store
    assert orjson.loads(store[window_key("hop_20s_10s", 0, ("Zoë", "Brontë"))])[0] == 1
    # hop 20s/10s: 1000 is in [-10000, 10000) and [0, 20000); 12000 in [0, 20000), [10000, 30000)
    assert orjson.loads(store[window_key("hop_20s_10s", 0, ("Ana", "Ruiz"))]) == [
        2, "10.75", "0.25", "10.50"]
    assert store["s|orders:0"] == "7" and store["m|watermark"] == "12000"
    # lateness 0: [0, 10000) is final at watermark 12_000 and published with its one row
    assert sorted(orjson.loads(k)[3] for k, _ in result.finals if b"tumble" in k) == ["Ruiz"]
    assert [(c.buyer, c.old, c.new.count) for c in result.total_changes] == [
        (("Ana", "Ruiz"), None, 2), (("Zoë", "Brontë"), None, 1)]


def test_a_repeated_batch_changes_nothing_and_a_later_one_adds():
    store = DictStore()
    first = [at("orders:1", (0, order(1, "1.00", "Ana", "Ruiz", 0)),
                (1, order(2, "2.00", "Ana", "Ruiz", 0)))]
    store.run(first)
    again = store.run(first)
    assert again.counted == 0 and again.updates == {} and again.finals == []
    overlap = [at("orders:1", (1, order(2, "2.00", "Ana", "Ruiz", 0)),
                  (2, order(3, "4.00", "Ana", "Ruiz", 0)))]
    result = store.run(overlap)
    assert result.counted == 1
    assert orjson.loads(store[total_key(("Ana", "Ruiz"))]) == [3, "7.00"]
    assert (result.total_changes[0].old.count, result.total_changes[0].new.count) == (2, 3)
    assert store.run([at("orders:2", (0, order(9, "1.00", "Ana", "Ruiz", 0)))]).counted == 1


def test_sums_stay_exact_beyond_28_digits():
    store = DictStore()
    big = "123456789012345678901234567890.99"  # 30 digits before the point
    store.run([at("orders:0", *[(i, order(i, big, "Ana", "Ruiz", 0)) for i in range(3)])])
    assert orjson.loads(store[total_key(("Ana", "Ruiz"))])[1] == "370370367037037036703703703672.97"


def test_min_and_max_merge_with_stored_rows():
    store = DictStore()
    store.run([at("o:0", (0, order(1, "5.00", "A", "B", 0)))])
    store.run([at("o:0", (1, order(2, "7.00", "A", "B", 1)), (2, order(3, "3.00", "A", "B", 2)))])
    assert orjson.loads(store[window_key("tumble_10s", 0, ("A", "B"))]) == [
        3, "15.00", "3.00", "7.00"]


def test_window_keys_sort_by_start_and_round_trip():
    keys = [window_key("w", start, ("Ana", "Ruiz")) for start in (-5_000, 0, 20_000, 100_000)]
    assert sorted(keys) == keys
    assert parse_window_key(keys[0]) == ("w", -5_000, ("Ana", "Ruiz"))
    assert parse_window_key(window_key("w", 7, ("a|b", "c"))) == ("w", 7, ("a|b", "c"))


def test_final_exactly_when_the_watermark_reaches_end_plus_lateness():
    store = DictStore()
    store.run([at("o:0", (0, order(1, "1.00", "A", "B", 9_999)), watermark=9_999)],
              lateness=5_000)
    # watermark 14_999 < 10_000 + 5_000: [0, 10000) not final, nothing published
    assert store.run([at("o:0", (1, order(2, "1.00", "C", "D", 14_999)), watermark=14_999)],
                     lateness=5_000).finals == []
    # an order at 0 after one at 14_999 of its partition: on time, the window is not final
    assert store.run([at("o:0", (2, order(3, "2.00", "A", "B", 0), 14_999),
                         watermark=14_999)], lateness=5_000).late == []
    # watermark 15_000 == end + lateness: final, published once with both orders of A B
    result = store.run([at("o:0", (3, order(4, "1.00", "C", "D", 15_000)), watermark=15_000)],
                       lateness=5_000)
    published = {tuple(orjson.loads(k)): orjson.loads(v) for k, v in result.finals}
    # C D's orders (14_999, 15_000) are in [10000, 20000), still open
    assert set(published) == {("tumble_10s", 0, "A", "B")}
    assert published[("tumble_10s", 0, "A", "B")] == {
        "window_start": "1970-01-01T00:00:00.000Z", "window_end": "1970-01-01T00:00:10.000Z",
        "buyer": {"first_name": "A", "last_name": "B"}, "count": 2, "sum_price": "3.00",
        "min_price": "1.00", "max_price": "2.00", "avg_price": "1.50", "final": True}
    assert store.run([mark(15_000)], lateness=5_000).finals == []  # published once only
    # now late: counted in the total, not in the final window, reported with that window
    late = store.run([at("o:0", (4, order(5, "9.00", "A", "B", 10), 15_000), watermark=15_000)],
                     lateness=5_000)
    assert late.finals == [] and late.counted == 1
    assert [(spec.name, start) for spec, start, _ in late.late[0].missed] == [("tumble_10s", 0)]
    assert orjson.loads(store[window_key("tumble_10s", 0, ("A", "B"))])[0] == 2
    assert orjson.loads(store[total_key(("A", "B"))])[0] == 3


def test_a_late_order_still_counts_in_its_windows_that_are_not_final():
    store = DictStore()
    # its partition had reached 25_000: hop [0, 20000) is closed for it, [10000, 30000) is not
    result = store.run([at("o:0", (1, order(2, "4.00", "A", "B", 15_000), 25_000))],
                       windows=(HOP,), lateness=0)
    assert [start for _, start, _ in result.late[0].missed] == [0]
    assert orjson.loads(store[window_key("hop_20s_10s", 10_000, ("A", "B"))])[:2] == [1, "4.00"]


def test_late_by_its_own_partition_even_where_the_aggregation_is_far_behind():
    """SPEC.md: late for a window when the largest earlier order time of its own partition
    reached its end plus lateness, wherever batches are cut; the other carrier has said
    nothing, so this partition's watermark is still unknown."""
    store = DictStore()
    result = store.run([at("o:0", (0, order(1, "1.00", "A", "B", 1_000), 3_601_000),
                           (1, order(2, "1.00", "A", "B", 3_600_999)), watermark=3_601_000)],
                       lateness=0, carriers=2)
    assert [(o.order.order_number, o.missed[0][1]) for o in result.late] == [(1, 0)]
    assert read_watermark(store.read) == NO_WATERMARK


def test_the_watermark_is_the_min_over_the_carriers_and_an_idle_one_drops_out():
    store = DictStore()
    store.run([mark(50_000, carrier=1)], carriers=2, lateness=0)
    assert read_watermark(store.read) == NO_WATERMARK  # carrier 0 holds it
    # an order far behind carrier 1, on time for its own partition: not late
    result = store.run([at("o:0", (0, order(1, "1.00", "A", "B", 1_000)), watermark=1_000)],
                       carriers=2, lateness=0)
    assert result.late == [] and read_watermark(store.read) == 1_000
    # carrier 0 idle until 10_000 on the wall clock: carrier 1 alone holds it
    store.run([mark(1_000, carrier=0, idle_until=10_000)], carriers=2, lateness=0,
              clock=Clock(5_000))
    assert read_watermark(store.read) == 50_000
    assert [orjson.loads(k)[:2] for k, _ in store.run([], lateness=0, carriers=2,
                                                      clock=Clock(5_000)).finals] == []
    # the lease ran out: carrier 0 holds it again at 1_000, and it never moves back
    store.run([mark(60_000, carrier=1)], carriers=2, lateness=0, clock=Clock(10_000))
    assert read_watermark(store.read) == 50_000


def test_when_every_carrier_is_idle_the_watermark_follows_the_clock_until_all_is_final():
    store = DictStore()
    store.run([at("o:0", (0, order(1, "1.00", "A", "B", 1_000)), watermark=1_000,
                  idle_until=10**9),
               mark(4_000, carrier=1, idle_until=10**9)], carriers=2, lateness=0)
    assert read_watermark(store.read) == NO_WATERMARK  # all idle, but not for IDLE yet
    # idle since 0, IDLE plus 2 s later: from the largest watermark (4_000), 2 s on
    store.run([], carriers=2, lateness=0, clock=Clock(IDLE + 2_000, all_idle_since_ms=0))
    assert read_watermark(store.read) == 6_000
    # it stops once every window holding an order is final: [0, 10000) at 10_000
    result = store.run([], carriers=2, lateness=0, clock=Clock(IDLE + 60_000, 0))
    assert read_watermark(store.read) == 10_000
    assert [orjson.loads(k) for k, _ in result.finals] == [["tumble_10s", 0, "A", "B"]]


def test_retention_deletes_rows_and_a_watermark_only_record_moves_the_watermark():
    store = DictStore()
    store.run([at("o:0", (0, order(1, "1.00", "A", "B", 1_000)))], lateness=0, retention=20_000)
    result = store.run([mark(29_999)], lateness=0, retention=20_000)
    assert [orjson.loads(k) for k, _ in result.finals] == [["tumble_10s", 0, "A", "B"]]
    assert window_key("tumble_10s", 0, ("A", "B")) in store  # 10_000 + 20_000 > 29_999
    store.run([mark(30_000)], lateness=0, retention=20_000)
    assert window_key("tumble_10s", 0, ("A", "B")) not in store
    assert store["m|watermark"] == "30000"
    assert orjson.loads(store[total_key(("A", "B"))]) == [1, "1.00"]  # totals have no window


def test_the_outbox_holds_the_last_batchs_buyers_and_their_current_totals():
    store = DictStore()
    store.run([at("o:0", (0, order(1, "1.00", "A", "B", 0)), (1, order(2, "2.50", "C", "D", 0)))])
    store.run([at("o:0", (2, order(3, "4.00", "A", "B", 0)))])
    sequence, changes = outbox(store.read)
    assert sequence == 2
    assert [(c.buyer, c.new.count, str(c.new.total_price)) for c in changes] == [
        (("A", "B"), 2, "5.00")]
    store.run([mark(5)])  # no orders: the outbox stays
    assert outbox(store.read)[0] == 2


def test_rows_of_a_dropped_window_are_deleted_and_others_kept():
    store = DictStore()
    store.run([at("o:0", (0, order(1, "1.00", "A", "B", 0)), (1, order(2, "1.00", "C", "D", 0)))],
              windows=(TUMBLE, HOP))
    # two buyers, each in hop windows starting at -10 s and 0 s: four rows, one per step
    store.close(AggregateConfig((TUMBLE,), FAR, FAR, dropped=("hop_20s_10s",)))
    assert store.close_steps == 4
    assert not any(key.startswith("w|hop_20s_10s|") for key in store)
    assert {key for key in store if key.startswith("w|")} == {
        window_key("tumble_10s", 0, ("A", "B")), window_key("tumble_10s", 0, ("C", "D"))}


def test_closing_takes_whole_window_starts_per_step():
    """A step stops at the first start boundary after its row limit; its mark is the last
    start it published, and the next step goes on from there."""
    store = DictStore()
    store.run([at("o:0", *[(n, order(n, "1.00", name, "X", 1_000 + n))
                           for n, name in enumerate("ABC")],
                  (3, order(3, "2.00", "D", "X", 12_000)), watermark=25_000)])  # never final
    config = AggregateConfig((TUMBLE,), 0, FAR)
    first = close_windows(config, store.read, store.scan, limit=2)
    assert [orjson.loads(k) for k, _ in first.finals] == [
        ["tumble_10s", 0, name, "X"] for name in "ABC"]  # all of start 0, past the limit
    assert first.more and first.updates["f|tumble_10s"] == "0"
    store.apply(first.updates)
    second = close_windows(config, store.read, store.scan, limit=2)
    assert [orjson.loads(k) for k, _ in second.finals] == [["tumble_10s", 10_000, "D", "X"]]
    assert not second.more and second.updates["f|tumble_10s"] == "10000"
    store.apply(second.updates)
    assert close_windows(config, store.read, store.scan, limit=2).finals == []


def test_retention_deletes_whole_window_starts_per_step():
    store = DictStore()
    store.run([at("o:0", (0, order(0, "1.00", "A", "X", 1_000)),
                  (1, order(1, "1.00", "B", "X", 2_000)),
                  (2, order(2, "1.00", "A", "X", 11_000)), watermark=45_000)])
    config = AggregateConfig((TUMBLE,), 0, 10_000)  # starts 0 and 10 s are past retention
    first = close_windows(config, store.read, store.scan, limit=1)
    assert first.more and first.updates["r|tumble_10s"] == "0"
    assert {k for k, v in first.updates.items() if v is None} == {
        window_key("tumble_10s", 0, ("A", "X")), window_key("tumble_10s", 0, ("B", "X"))}
    store.apply(first.updates)
    second = close_windows(config, store.read, store.scan, limit=1)
    assert not second.more and second.updates["r|tumble_10s"] == "20000"
    assert {k for k, v in second.updates.items() if v is None} == {
        window_key("tumble_10s", 10_000, ("A", "X"))}


def test_retention_stops_at_its_own_limit_when_nothing_is_left_to_publish():
    store = DictStore()
    store.run([at("o:0", *[(n, order(n, "1.00", "A", "X", 1_000 + 10_000 * n))
                           for n in range(3)], watermark=35_000)])  # starts 0, 10 s, 20 s
    store.close(AggregateConfig((TUMBLE,), 0, FAR), limit=10**9)
    assert store["f|tumble_10s"] == "20000"  # all three published, none deleted
    store.run([mark(65_000)])  # lateness FAR: nothing closes
    config = AggregateConfig((TUMBLE,), 0, 10_000)  # now starts up to 40 s are past it
    steps = [close_windows(config, store.read, store.scan, limit=1)]
    store.apply(steps[0].updates)
    while steps[-1].more:
        steps.append(close_windows(config, store.read, store.scan, limit=1))
        store.apply(steps[-1].updates)
    assert [step.finals for step in steps] == [[], [], []]
    assert [step.updates["r|tumble_10s"] for step in steps] == ["0", "10000", "40000"]
    assert [sorted(k for k, v in step.updates.items() if v is None) for step in steps] == [
        [window_key("tumble_10s", start, ("A", "X"))] for start in (0, 10_000, 20_000)]
    assert not any(key.startswith("w|") for key in store)


def test_stepped_closing_equals_closing_at_once_on_random_input():
    """Whatever the step limit, closing in steps publishes the same finals and leaves the
    same store (rows, marks, index-free) as closing everything at once, batch by batch,
    with windows, sessions and retention that deletes."""
    import random

    from core.sessions import SessionWindow

    windows = (TUMBLE, FixedWindow("hop_30s_10s", "hopping", 30_000, 10_000),
               SessionWindow("session_15s", 15_000))
    for seed in range(12):
        rng = random.Random(seed)
        config = AggregateConfig(windows, rng.choice((0, 2_000)),
                                 rng.choice((0, 7_000, 40_000, FAR)))
        once, stepped = DictStore(), DictStore()
        time_ms, number = 0, 0
        for offset in range(40):
            orders = []
            for _ in range(rng.randrange(0, 12)):  # whole seconds: sessions share ends
                time_ms += rng.randrange(0, 4) * 1_000
                orders.append((number, order(number, "1.25", rng.choice("ABCDE"), "X",
                                             time_ms - rng.randrange(0, 3) * 1_000)))
                number += 1
            watermark = time_ms - rng.randrange(0, 20_000) if rng.random() < 0.7 else time_ms
            item = at("o:0", *[(offset * 100 + i, o) for i, (_, o) in enumerate(orders)],
                      watermark=watermark)
            results = []
            for store, limit in ((once, 10**9), (stepped, rng.choice((1, 2, 3)))):
                result = apply_batch([item], config, store.read, Clock(0))
                store.apply(result.updates)
                results.append((result, store.close(config, limit)))
            (batch_a, closed_a), (batch_b, closed_b) = results
            assert batch_a.updates == batch_b.updates
            assert sorted(closed_a.finals) == sorted(closed_b.finals)
            assert once == stepped


def test_fold_equals_a_window_by_window_fold_of_random_orders():
    """fold_rows() spreads slide buckets over windows; a naive fold, order by order and
    window by window against each order's clock, must give the same rows, totals and lates."""
    import random
    from decimal import Decimal as D

    from core.aggregate import fold_totals
    from core.fixed import fold_rows

    rng = random.Random(5)
    windows = [FixedWindow("t", "tumbling", 10_000, 10_000),
               FixedWindow("h", "hopping", 60_000, 10_000),
               FixedWindow("h2", "hopping", 20_000, 5_000)]
    lateness = 5_000
    for _ in range(30):
        base = rng.randrange(-100_000, 10**9)
        orders = [Order(n, D(rng.randrange(1, 10**6)) / 100, rng.choice("AB"), "X",
                        base + rng.randrange(0, 120_000)) for n in range(rng.randrange(1, 60))]
        clocks = [base + rng.randrange(-20_000, 150_000) for _ in orders]
        fresh = list(zip(orders, [None] * len(orders), clocks, strict=True))
        folded_rows, folded_missed = fold_rows(windows, fresh, lateness)
        folded_totals = fold_totals(fresh)

        rows, totals, late = {}, {}, []
        for order, clock in zip(orders, clocks, strict=True):
            buyer = (order.first_name, order.last_name)
            count, total = totals.get(buyer, (0, D(0)))
            totals[buyer] = (count + 1, total + order.price)
            missed = []
            for w in windows:
                start = order.order_time_ms - order.order_time_ms % w.slide_ms - w.size_ms
                while (start := start + w.slide_ms) <= order.order_time_ms:
                    if start + w.size_ms + lateness <= clock:
                        missed.append((w.name, start))
                        continue
                    c, s, lo, hi = rows.get((w.name, start, buyer), (0, D(0), None, None))
                    rows[w.name, start, buyer] = (
                        c + 1, s + order.price, order.price if lo is None else min(lo, order.price),
                        order.price if hi is None else max(hi, order.price))
            if missed:
                late.append((order.order_number, sorted(missed)))

        assert {k: tuple(v) for k, v in folded_rows.items()} == rows
        assert {b: tuple(v) for b, v in folded_totals.items()} == totals
        assert sorted((orders[i].order_number, sorted((w.name, s) for w, s, _ in missed))
                      for i, missed in folded_missed.items()) == sorted(late)
        assert sum(count for count, _ in folded_totals.values()) == len(orders)


def test_a_record_read_again_after_a_restart_moves_no_channel():
    """A watermark-only record carrying an idle lease, read again from an older offset
    after its carrier said it was active: its stale lease must not make it idle again."""
    store = DictStore()
    store.run([Shuffled(0, 1_000, None, [], offset=0), Shuffled(1, 1_000, 10**9, [], offset=1),
               Shuffled(1, 2_000, None, [], offset=2)], carriers=2)
    assert read_watermark(store.read) == 1_000
    store.run([Shuffled(1, 1_000, 10**9, [], offset=1), Shuffled(0, 50_000, None, [], offset=3)],
              carriers=2)
    assert read_watermark(store.read) == 2_000  # carrier 1, active at 2_000, holds it
