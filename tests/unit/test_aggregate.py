"""The aggregation step over a batch, against a dict standing in for the store."""

from decimal import Decimal

import orjson

from core.aggregate import parse_window_key, total_key, window_key
from core.aggregation import AggregateConfig, apply_batch, close_windows
from core.models import Order, Tick
from tables.windows import WindowSpec

TUMBLE = WindowSpec("tumble_10s", "tumbling", 10_000, 10_000)
HOP = WindowSpec("hop_20s_10s", "hopping", 20_000, 10_000)
FAR = 10**12  # lateness and retention that never close a window in these tests


class DictStore(dict):
    def read(self, keys):
        return [self.get(k) for k in keys]

    def scan(self, prefix, first_key=None):
        for key in sorted(self):
            if key.startswith(prefix) and key >= (first_key or prefix):
                yield key, self[key]

    def apply(self, updates):
        for key, value in updates.items():
            if value is None:
                self.pop(key, None)
            else:
                self[key] = value

    def run(self, items, windows=(TUMBLE,), lateness=FAR, retention=FAR):
        """Apply a batch, commit it, then close windows on the committed state, as the agent."""
        config = AggregateConfig(windows, lateness, retention)
        result = apply_batch(items, config, self.read)
        self.apply(result.updates)
        closing = close_windows(config, self.read, self.scan)
        self.apply(closing.updates)
        result.finals = closing.finals
        return result


def order(number, price, first, last, ms):
    return Order(number, Decimal(price), first, last, ms)


def at(source, *orders):
    """A repartition record: orders with their source offsets (from 0) and no key."""
    return (source, [(offset, o, None) for offset, o in orders])


def test_totals_and_windows_of_one_batch():
    store = DictStore()
    result = store.run([at("orders:0", (5, order(1, "10.50", "Ana", "Ruiz", 1_000)),
                           (6, order(2, "0.25", "Ana", "Ruiz", 12_000)),
                           (7, order(3, "99.99", "Zoë", "Brontë", 9_999)))],
                       windows=(TUMBLE, HOP), lateness=0)
    assert result.counted == 3
    assert orjson.loads(store[total_key(("Ana", "Ruiz"))]) == [2, "10.75"]
    assert orjson.loads(store[total_key(("Zoë", "Brontë"))]) == [1, "99.99"]
    # in one batch, orders apply by event time: 9_999 comes before 12_000 and is on time
    assert orjson.loads(store[window_key("tumble_10s", 0, ("Ana", "Ruiz"))]) == [
        1, "10.50", "10.50", "10.50"]
    assert orjson.loads(store[window_key("tumble_10s", 0, ("Zoë", "Brontë"))])[0] == 1
    assert result.late == []
    # hop 20s/10s: 1000 is in [-10000, 10000) and [0, 20000); 12000 in [0, 20000), [10000, 30000)
    assert orjson.loads(store[window_key("hop_20s_10s", 0, ("Ana", "Ruiz"))]) == [
        2, "10.75", "0.25", "10.50"]
    assert store["s|orders:0"] == "7" and store["m|watermark"] == "12000"
    # lateness 0: [0, 10000) is final at watermark 12_000 and published with both buyers
    assert sorted(orjson.loads(k)[3] for k, _ in result.finals if b"tumble" in k) == [
        "Brontë", "Ruiz"]
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
    store.run([("orders:0", [(i, order(i, big, "Ana", "Ruiz", 0), None) for i in range(3)])])
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
    store.run([at("o:0", (0, order(1, "1.00", "A", "B", 9_999)))], lateness=5_000)
    # watermark 14_999 < 10_000 + 5_000: [0, 10000) not final, nothing published
    assert store.run([at("o:0", (1, order(2, "1.00", "C", "D", 14_999)))],
                     lateness=5_000).finals == []
    # an order at 0 still counts: the window is not final yet
    assert store.run([at("o:0", (2, order(3, "2.00", "A", "B", 0)))], lateness=5_000).late == []
    # watermark 15_000 == end + lateness: final, published once with both orders of A B
    result = store.run([at("o:0", (3, order(4, "1.00", "C", "D", 15_000)))], lateness=5_000)
    published = {tuple(orjson.loads(k)): orjson.loads(v) for k, v in result.finals}
    # C D's orders (14_999, 15_000) are in [10000, 20000), still open
    assert set(published) == {("tumble_10s", 0, "A", "B")}
    assert published[("tumble_10s", 0, "A", "B")] == {
        "window_start": "1970-01-01T00:00:00.000Z", "window_end": "1970-01-01T00:00:10.000Z",
        "buyer": {"first_name": "A", "last_name": "B"}, "count": 2, "sum_price": "3.00",
        "min_price": "1.00", "max_price": "2.00", "avg_price": "1.50", "final": True}
    # now late: counted in the total, not in the final window, reported with that window
    assert store.run([Tick(15_000)], lateness=5_000).finals == []  # published once only
    late = store.run([at("o:0", (4, order(5, "9.00", "A", "B", 10)))], lateness=5_000)
    assert late.finals == [] and late.counted == 1
    assert [(spec.name, start) for spec, start in late.late[0].missed] == [("tumble_10s", 0)]
    assert orjson.loads(store[window_key("tumble_10s", 0, ("A", "B"))])[0] == 2
    assert orjson.loads(store[total_key(("A", "B"))])[0] == 3


def test_a_late_order_still_counts_in_its_windows_that_are_not_final():
    store = DictStore()
    store.run([at("o:0", (0, order(1, "1.00", "A", "B", 25_000)))], windows=(HOP,), lateness=0)
    # watermark 25_000: hop [0, 20000) is final, [10000, 30000) is not
    result = store.run([at("o:0", (1, order(2, "4.00", "A", "B", 15_000)))], windows=(HOP,),
                       lateness=0)
    assert [start for _, start in result.late[0].missed] == [0]
    assert orjson.loads(store[window_key("hop_20s_10s", 10_000, ("A", "B"))])[:2] == [2, "5.00"]


def test_retention_deletes_rows_and_a_tick_moves_the_watermark_in_log_order():
    store = DictStore()
    store.run([at("o:0", (0, order(1, "1.00", "A", "B", 1_000)))], lateness=0, retention=20_000)
    result = store.run([Tick(29_999)], lateness=0, retention=20_000)
    assert [orjson.loads(k) for k, _ in result.finals] == [["tumble_10s", 0, "A", "B"]]
    assert window_key("tumble_10s", 0, ("A", "B")) in store  # 10_000 + 20_000 > 29_999
    store.run([Tick(30_000)], lateness=0, retention=20_000)
    assert window_key("tumble_10s", 0, ("A", "B")) not in store
    assert store["m|watermark"] == "30000"
    assert orjson.loads(store[total_key(("A", "B"))]) == [1, "1.00"]  # totals have no window


def test_a_late_order_across_batches_is_late_in_log_order():
    store = DictStore()
    store.run([at("o:0", (0, order(1, "1.00", "A", "B", 30_000)))], lateness=0)
    result = store.run([at("o:1", (0, order(2, "1.00", "A", "B", 5_000)))], lateness=0)
    assert [start for _, start in result.late[0].missed] == [0]


def test_rows_of_a_dropped_window_are_deleted_and_others_kept():
    store = DictStore()
    store.run([at("o:0", (0, order(1, "1.00", "A", "B", 0)))], windows=(TUMBLE, HOP))
    closing = close_windows(AggregateConfig((TUMBLE,), FAR, FAR, dropped=("hop_20s_10s",)),
                            store.read, store.scan)
    store.apply(closing.updates)
    assert not any(key.startswith("w|hop_20s_10s|") for key in store)
    assert window_key("tumble_10s", 0, ("A", "B")) in store


def test_fold_equals_a_window_by_window_fold_of_random_orders():
    """fold() spreads slide buckets over windows; a naive fold, order by order and window
    by window against the moving watermark, must give the same rows, totals and lates."""
    import random
    from decimal import Decimal as D

    from core.aggregate import fold
    from core.models import Order
    from tables.windows import WindowSpec

    rng = random.Random(5)
    windows = [WindowSpec("t", "tumbling", 10_000, 10_000),
               WindowSpec("h", "hopping", 60_000, 10_000),
               WindowSpec("h2", "hopping", 20_000, 5_000)]
    lateness = 5_000
    for _ in range(30):
        base = rng.randrange(-100_000, 10**9)
        orders = [Order(n, D(rng.randrange(1, 10**6)) / 100, rng.choice("AB"), "X",
                        base + rng.randrange(0, 120_000)) for n in range(rng.randrange(1, 60))]
        watermark = base + rng.randrange(-20_000, 100_000)
        folded, after = fold(orders, [None] * len(orders), windows, lateness, watermark)

        rows, totals, late, mark = {}, {}, [], watermark
        for order in sorted(orders, key=lambda o: o.order_time_ms):
            buyer = (order.first_name, order.last_name)
            count, total = totals.get(buyer, (0, D(0)))
            totals[buyer] = (count + 1, total + order.price)
            missed = []
            for w in windows:
                start = order.order_time_ms - order.order_time_ms % w.slide_ms - w.size_ms
                while (start := start + w.slide_ms) <= order.order_time_ms:
                    if start + w.size_ms + lateness <= mark:
                        missed.append((w.name, start))
                        continue
                    c, s, lo, hi = rows.get((w.name, start, buyer), (0, D(0), None, None))
                    rows[w.name, start, buyer] = (
                        c + 1, s + order.price, order.price if lo is None else min(lo, order.price),
                        order.price if hi is None else max(hi, order.price))
            if missed:
                late.append((order.order_number, sorted(missed)))
            mark = max(mark, order.order_time_ms)

        assert {k: tuple(v) for k, v in folded.rows.items()} == rows
        assert {b: tuple(v) for b, v in folded.totals.items()} == totals
        assert sorted((o.order.order_number, sorted((w.name, s) for w, s in o.missed))
                      for o in folded.late) == sorted(late)
        assert after == mark and folded.counted == len(orders)
