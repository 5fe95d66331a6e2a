"""Reading the aggregation stores for the API: totals and window rows, in SPEC.md's orders."""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from core.aggregate import read_watermark
from core.models import Buyer, Total
from core.ranking import buyer_count, first_ranked
from core.schema import (
    CHANNEL_PREFIX,
    TOTAL_RANK_PREFIX,
    buyer_of_total_key,
    decode_total,
    total_key,
)
from core.shuffle import buyer_partition
from core.storage import ReadStore
from core.watermarks import NO_WATERMARK, Channel, decode_channel
from core.windows import StoredRow, Window

Stores = Mapping[int, ReadStore]


def ranking_key(count: int, buyer: Buyer) -> tuple[int, str, str]:
    """Count descending, then last name, then first name (code points)."""
    return (-count, buyer[1], buyer[0])


def json_ranking_key(item: Mapping[str, Any]) -> tuple[int, str, str]:
    """`ranking_key` of a total or window row as the API renders it (`count`, `buyer`)."""
    buyer = item["buyer"]
    return ranking_key(item["count"], (buyer["first_name"], buyer["last_name"]))


def top_totals(stores: Stores, upto: int | None) -> tuple[list[tuple[Buyer, Total]], int]:
    """The first `upto` buyer totals ranked (all with None), from the index by count, and
    how many buyers have one."""
    found = [(buyer_of_total_key(key), decode_total(value)) for store in stores.values()
             for key, value in first_ranked(store, TOTAL_RANK_PREFIX, upto)]
    found.sort(key=lambda item: ranking_key(item[1].count, item[0]))
    return found[:upto], sum(buyer_count(store) for store in stores.values())


def one_total(stores: Stores, buyer: Buyer, partitions: int) -> Total | None:
    """The total of one buyer, read from the partition that owns it."""
    store = stores.get(buyer_partition(buyer[0], buyer[1], partitions))
    value = None if store is None else store.get(total_key(buyer))
    return None if value is None else decode_total(value)


@dataclass(frozen=True, slots=True)
class WindowRow:
    """One stored window row with whether it is final by its partition's watermark."""

    row: StoredRow
    final: bool

    @property
    def start_ms(self) -> int:
        return self.row.start_ms

    @property
    def buyer(self) -> Buyer:
        return self.row.buyer

    @property
    def count(self) -> int:
        return self.row.count

    def as_json(self) -> dict[str, object]:
        return self.row.as_json(self.final)


def _judged(store: ReadStore, rows: Iterator[StoredRow], lateness_ms: int) -> Iterator[WindowRow]:
    watermark = read_watermark(store.get_many)
    for row in rows:
        yield WindowRow(row, watermark != NO_WATERMARK and row.end_ms + lateness_ms <= watermark)


def window_rows(stores: Stores, window: Window, lateness_ms: int, *,
                start_ms: int | None = None, end_ms: int | None = None,
                first_name: str | None = None, last_name: str | None = None) -> list[WindowRow]:
    """Rows of windows overlapping `[start_ms, end_ms)`, by window start, last, first name."""
    rows = []
    for store in stores.values():
        for row in _judged(store, window.rows(store, start_ms), lateness_ms):
            if end_ms is not None and row.start_ms >= end_ms:
                break
            if start_ms is not None and row.row.end_ms <= start_ms:
                continue
            if first_name is not None and row.buyer[0] != first_name:
                continue
            if last_name is not None and row.buyer[1] != last_name:
                continue
            rows.append(row)
    rows.sort(key=lambda r: (r.start_ms, r.buyer[1], r.buyer[0]))
    return rows


def rows_holding(stores: Stores, window: Window, at_ms: int, lateness_ms: int,
                 k: int) -> list[WindowRow]:
    """Rows /top ranks for `at_ms`, ranked, the first `k` among them (Window.rows_holding:
    a fixed window's first k per store, a session window's all)."""
    rows = [row for store in stores.values()
            for row in _judged(store, window.rows_holding(store, at_ms, k), lateness_ms)]
    rows.sort(key=lambda r: ranking_key(r.count, r.buyer))
    return rows


def window_final(stores: Stores, end_ms: int, lateness_ms: int) -> bool:
    """True once every partition's watermark has passed `end_ms` plus lateness."""
    marks = [read_watermark(store.get_many) for store in stores.values()]
    return bool(marks) and all(m != NO_WATERMARK and end_ms + lateness_ms <= m for m in marks)


def latest_ms(stores: Stores, window: Window) -> int | None:
    """The time /top without `at` looks at, over these stores."""
    found = [t for store in stores.values() if (t := window.latest_ms(store)) is not None]
    return max(found) if found else None


def partition_channels(store: ReadStore) -> tuple[int, list[tuple[int, Channel]]]:
    """An aggregation partition's watermark and the channels it is the minimum of (one per
    dedup partition feeding it, idle ones left out), by carrier."""
    channels = [(int(key.removeprefix(CHANNEL_PREFIX)), decode_channel(value))
                for key, value in store.scan(CHANNEL_PREFIX)]
    return read_watermark(store.get_many), sorted(channels)
