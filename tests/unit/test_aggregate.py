"""The aggregation step over a batch, against a dict standing in for the store."""

from decimal import Decimal

import orjson

from core.aggregate import apply_batch, parse_window_key, total_key, window_key
from core.models import Order
from tables.windows import WindowSpec

TUMBLE = WindowSpec("tumble_10s", "tumbling", 10_000, 10_000)
HOP = WindowSpec("hop_20s_10s", "hopping", 20_000, 10_000)


class DictStore(dict):
    def read(self, keys):
        return [self.get(k) for k in keys]

    def apply(self, updates):
        for key, value in updates.items():
            if value is None:
                self.pop(key, None)
            else:
                self[key] = value


def order(number, price, first, last, ms):
    return Order(number, Decimal(price), first, last, ms)


def test_totals_and_windows_of_one_batch():
    store = DictStore()
    batch = [("orders:0", [(5, order(1, "10.50", "Ana", "Ruiz", 1_000)),
                           (6, order(2, "0.25", "Ana", "Ruiz", 12_000)),
                           (7, order(3, "99.99", "Zoë", "Brontë", 9_999))])]
    result = apply_batch(batch, [TUMBLE, HOP], store.read)
    store.apply(result.updates)
    assert result.counted == 3
    assert orjson.loads(store[total_key(("Ana", "Ruiz"))]) == [2, "10.75"]
    assert orjson.loads(store[total_key(("Zoë", "Brontë"))]) == [1, "99.99"]
    assert orjson.loads(store[window_key("tumble_10s", 0, ("Ana", "Ruiz"))]) == [
        1, "10.50", "10.50", "10.50"]
    assert orjson.loads(store[window_key("tumble_10s", 10_000, ("Ana", "Ruiz"))]) == [
        1, "0.25", "0.25", "0.25"]
    # hop 20s/10s: 1000 is in [-10000, 10000) and [0, 20000); 12000 in [0, 20000), [10000, 30000)
    assert orjson.loads(store[window_key("hop_20s_10s", 0, ("Ana", "Ruiz"))]) == [
        2, "10.75", "0.25", "10.50"]
    assert orjson.loads(store[window_key("hop_20s_10s", -10_000, ("Ana", "Ruiz"))]) == [
        1, "10.50", "10.50", "10.50"]
    assert store["s|orders:0"] == "7"
    assert [(c.buyer, c.old, c.new.count) for c in result.total_changes] == [
        (("Ana", "Ruiz"), None, 2), (("Zoë", "Brontë"), None, 1)]


def test_a_repeated_batch_changes_nothing_and_a_later_one_adds():
    store = DictStore()
    first = [("orders:1", [(0, order(1, "1.00", "Ana", "Ruiz", 0)),
                           (1, order(2, "2.00", "Ana", "Ruiz", 0))])]
    store.apply(apply_batch(first, [TUMBLE], store.read).updates)
    again = apply_batch(first, [TUMBLE], store.read)
    assert again.counted == 0 and again.updates == {}
    # a redelivery overlapping what was applied: only offset 2 is new
    overlap = [("orders:1", [(1, order(2, "2.00", "Ana", "Ruiz", 0)),
                             (2, order(3, "4.00", "Ana", "Ruiz", 0))])]
    result = apply_batch(overlap, [TUMBLE], store.read)
    store.apply(result.updates)
    assert result.counted == 1
    assert orjson.loads(store[total_key(("Ana", "Ruiz"))]) == [3, "7.00"]
    change = result.total_changes[0]
    assert (change.old.count, change.new.count) == (2, 3)
    # offsets are per source: the same offset from another partition is new
    other = [("orders:2", [(0, order(9, "1.00", "Ana", "Ruiz", 0))])]
    assert apply_batch(other, [TUMBLE], store.read).counted == 1


def test_sums_stay_exact_beyond_28_digits():
    store = DictStore()
    big = "123456789012345678901234567890.99"  # 30 digits before the point
    batch = [("orders:0", [(i, order(i, big, "Ana", "Ruiz", 0)) for i in range(3)])]
    store.apply(apply_batch(batch, [TUMBLE], store.read).updates)
    assert orjson.loads(store[total_key(("Ana", "Ruiz"))])[1] == "370370367037037036703703703672.97"


def test_min_and_max_merge_with_stored_rows():
    store = DictStore()
    store.apply(apply_batch([("o:0", [(0, order(1, "5.00", "A", "B", 0))])], [TUMBLE],
                            store.read).updates)
    store.apply(apply_batch([("o:0", [(1, order(2, "7.00", "A", "B", 1)),
                                      (2, order(3, "3.00", "A", "B", 2))])], [TUMBLE],
                            store.read).updates)
    assert orjson.loads(store[window_key("tumble_10s", 0, ("A", "B"))]) == [
        3, "15.00", "3.00", "7.00"]


def test_window_keys_sort_by_start_and_round_trip():
    keys = [window_key("w", start, ("Ana", "Ruiz")) for start in (-5_000, 0, 20_000, 100_000)]
    assert sorted(keys) == keys
    assert parse_window_key(keys[0]) == ("w", -5_000, ("Ana", "Ruiz"))
    assert parse_window_key(window_key("w", 7, ("a|b", "c"))) == ("w", 7, ("a|b", "c"))
