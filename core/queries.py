"""Reading the aggregation stores for the API: totals and window rows, in SPEC.md's orders."""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from core.aggregate import read_watermark
from core.closing import row_json
from core.models import Buyer, Total
from core.schema import (
    TOTAL_PREFIX,
    buyer_of_total_key,
    decode_total,
    parse_window_key,
    start_prefix,
    total_key,
    window_prefix,
)
from core.shuffle import buyer_partition
from core.storage import ReadStore
from core.watermarks import NO_WATERMARK
from core.windows import WindowSpec

Stores = Mapping[int, ReadStore]


def ranking_key(count: int, buyer: Buyer) -> tuple[int, str, str]:
    """Count descending, then last name, then first name (code points)."""
    return (-count, buyer[1], buyer[0])


def json_ranking_key(item: Mapping[str, Any]) -> tuple[int, str, str]:
    """`ranking_key` of a total or window row as the API renders it (`count`, `buyer`)."""
    buyer = item["buyer"]
    return ranking_key(item["count"], (buyer["first_name"], buyer["last_name"]))


def all_totals(stores: Stores) -> list[tuple[Buyer, Total]]:
    """Every buyer total, ranked."""
    found = []
    for store in stores.values():
        for key, value in store.scan(TOTAL_PREFIX):
            found.append((buyer_of_total_key(key), decode_total(value)))
    found.sort(key=lambda item: ranking_key(item[1].count, item[0]))
    return found


def one_total(stores: Stores, buyer: Buyer, partitions: int) -> Total | None:
    """The total of one buyer, read from the partition that owns it."""
    store = stores.get(buyer_partition(buyer[0], buyer[1], partitions))
    value = None if store is None else store.get(total_key(buyer))
    return None if value is None else decode_total(value)


@dataclass(frozen=True, slots=True)
class WindowRow:
    """One window, start and buyer, as stored, with whether it is final."""

    start_ms: int
    buyer: Buyer
    count: int
    key: str
    value: str
    final: bool

    def as_json(self, spec: WindowSpec) -> dict[str, object]:
        return row_json(spec, self.key, self.value, self.final)


def _rows(store: ReadStore, spec: WindowSpec, prefix: str, first_key: str | None,
          lateness_ms: int) -> list[WindowRow]:
    watermark = read_watermark(store.get_many)
    rows = []
    for key, value in store.scan(prefix, first_key):
        _, start_ms, buyer = parse_window_key(key)
        final = start_ms + spec.size_ms + lateness_ms <= watermark
        rows.append(WindowRow(start_ms, buyer, orjson.loads(value)[0], key, value, final))
    return rows


def window_rows(stores: Stores, spec: WindowSpec, lateness_ms: int, *,
                start_ms: int | None = None, end_ms: int | None = None,
                first_name: str | None = None, last_name: str | None = None) -> list[WindowRow]:
    """Rows of windows overlapping `[start_ms, end_ms)`, by window start, last, first name."""
    first_key = None
    if start_ms is not None:  # windows ending after start_ms start after start_ms - size
        first_key = start_prefix(spec.name, start_ms - spec.size_ms + 1)
    rows = []
    for store in stores.values():
        for row in _rows(store, spec, window_prefix(spec.name), first_key, lateness_ms):
            if end_ms is not None and row.start_ms >= end_ms:
                break
            if start_ms is not None and row.start_ms + spec.size_ms <= start_ms:
                continue
            if first_name is not None and row.buyer[0] != first_name:
                continue
            if last_name is not None and row.buyer[1] != last_name:
                continue
            rows.append(row)
    rows.sort(key=lambda r: (r.start_ms, r.buyer[1], r.buyer[0]))
    return rows


def rows_of_window(stores: Stores, spec: WindowSpec, start_ms: int,
                   lateness_ms: int) -> list[WindowRow]:
    """Every buyer's row of one window, ranked."""
    prefix = start_prefix(spec.name, start_ms)
    rows = [row for store in stores.values() for row in _rows(store, spec, prefix, None,
                                                               lateness_ms)]
    rows.sort(key=lambda r: ranking_key(r.count, r.buyer))
    return rows


def window_final(stores: Stores, spec: WindowSpec, start_ms: int, lateness_ms: int) -> bool:
    """True once every partition's watermark has passed the window's end plus lateness."""
    marks = [read_watermark(store.get_many) for store in stores.values()]
    end_ms = start_ms + spec.size_ms + lateness_ms
    return bool(marks) and all(m != NO_WATERMARK and end_ms <= m for m in marks)


def latest_start(stores: Stores, spec: WindowSpec) -> int | None:
    """Largest window start with data."""
    keys = (store.last_key(window_prefix(spec.name)) for store in stores.values())
    starts = [parse_window_key(key)[1] for key in keys if key is not None]
    return max(starts) if starts else None
