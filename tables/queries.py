"""Reading the aggregation stores for the API: totals and window rows, in SPEC.md's orders."""

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

import orjson

from core.aggregate import Buyer, Total, parse_window_key, total_key, window_key, window_prefix
from core.shuffle import buyer_partition
from tables.store import PartitionStore
from tables.windows import WindowSpec

Stores = Mapping[int, PartitionStore]


@dataclass(frozen=True, slots=True)
class WindowRow:
    """One window, start and buyer."""

    start_ms: int
    end_ms: int
    buyer: Buyer
    count: int
    sum_price: Decimal
    min_price: Decimal
    max_price: Decimal


def ranking_key(count: int, buyer: Buyer) -> tuple[int, str, str]:
    """Count descending, then last name, then first name (code points)."""
    return (-count, buyer[1], buyer[0])


def decode_total(value: str) -> Total:
    count, price_sum = orjson.loads(value)
    return Total(count, Decimal(price_sum))


def all_totals(stores: Stores) -> list[tuple[Buyer, Total]]:
    """Every buyer total, ranked."""
    found = []
    for store in stores.values():
        for key, value in store.scan("t|"):
            first, last = orjson.loads(key[2:])
            found.append(((first, last), decode_total(value)))
    found.sort(key=lambda item: ranking_key(item[1].count, item[0]))
    return found


def one_total(stores: Stores, buyer: Buyer, partitions: int) -> Total | None:
    """The total of one buyer, read from the partition that owns it."""
    store = stores.get(buyer_partition(buyer[0], buyer[1], partitions))
    value = None if store is None else store.get(total_key(buyer))
    return None if value is None else decode_total(value)


def _row(spec: WindowSpec, key: str, value: str) -> WindowRow:
    _, start_ms, buyer = parse_window_key(key)
    count, price_sum, low, high = orjson.loads(value)
    return WindowRow(start_ms, start_ms + spec.size_ms, buyer, count, Decimal(price_sum),
                     Decimal(low), Decimal(high))


def window_rows(
    stores: Stores, spec: WindowSpec, *, start_ms: int | None = None, end_ms: int | None = None,
    buyer: Buyer | None = None, first_name: str | None = None, last_name: str | None = None,
) -> list[WindowRow]:
    """Rows of windows overlapping `[start_ms, end_ms)`, by window start, last, first name."""
    rows = []
    for store in stores.values():
        for key, value in store.scan(window_prefix(spec.name)):
            row = _row(spec, key, value)
            if start_ms is not None and row.end_ms <= start_ms:
                continue
            if end_ms is not None and row.start_ms >= end_ms:
                continue
            if first_name is not None and row.buyer[0] != first_name:
                continue
            if last_name is not None and row.buyer[1] != last_name:
                continue
            rows.append(row)
    rows.sort(key=lambda r: (r.start_ms, r.buyer[1], r.buyer[0]))
    return rows


def rows_of_window(stores: Stores, spec: WindowSpec, start_ms: int) -> list[WindowRow]:
    """Every buyer's row of one window, ranked."""
    prefix = window_key(spec.name, start_ms, ("", ""))[: -len('["",""]')]
    rows = [_row(spec, k, v) for store in stores.values() for k, v in store.scan(prefix)]
    rows.sort(key=lambda r: ranking_key(r.count, r.buyer))
    return rows


def latest_start(stores: Stores, spec: WindowSpec) -> int | None:
    """Largest window start with data."""
    keys = (store.last_key(window_prefix(spec.name)) for store in stores.values())
    starts = [parse_window_key(key)[1] for key in keys if key is not None]
    return max(starts) if starts else None
