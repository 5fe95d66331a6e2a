"""Buyer totals and window aggregates over one partition's batch, in event time.

State is text in a key-value store, fixed-size per key (core.schema: the aggregation
stores). An order is late for a window whose end plus ALLOWED_LATENESS its origin's source watermark
before it had reached, or the partition's watermark had (SPEC.md, Event time): nothing
else, so the order in which a batch is applied does not matter. The batch is folded in
memory and merged with the stored values in one multi-get. Closing windows
(core.closing) works on committed state only.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any, TypeVar

import orjson

from core.models import Buyer, Order, Total, WindowResult
from core.money import MONEY_CONTEXT
from core.schema import (
    WATERMARK_KEY,
    buyer_of_total_key,
    decode_row,
    decode_total,
    encode_row,
    encode_total,
    source_key,
    start_prefix,
    total_key,
)
from core.shuffle import Shuffled
from core.sources import applied_offsets
from core.storage import ReadMany
from core.watermarks import NO_WATERMARK, Channel, advance, combine
from core.windows import WindowSpec, window_starts_ms


@dataclass(slots=True)
class TotalChange:
    """A buyer total before and after a batch; `old` is None for a new buyer."""

    buyer: Buyer
    old: Total | None
    new: Total


@dataclass(frozen=True, slots=True)
class LateOrder:
    """An order that met windows already final, and which."""

    order: Order
    key: bytes | None
    missed: list[tuple[WindowSpec, int]]


@dataclass(slots=True)
class BatchResult:
    """What applying one batch changes, and what it sends."""

    updates: dict[str, str | None] = field(default_factory=dict)
    total_changes: list[TotalChange] = field(default_factory=list)
    late: list[LateOrder] = field(default_factory=list)
    finals: list[WindowResult] = field(default_factory=list)
    counted: int = 0
    watermark_ms: int = NO_WATERMARK
    all_idle: bool = False  # every channel idle after the batch (the idle rule's clock)
    outbox_sequence: int = 0  # the batch's number in the outbox, when it changed totals

    @property
    def changed(self) -> bool:
        return bool(self.updates)


Fresh = tuple[Order, bytes | None, int]  # an order to apply, its key, its late clock


def select_new(items: Sequence[Shuffled], read: ReadMany, channels: list[Channel],
               watermark_ms: int, now_ms: int,
               read_offset: int = -1) -> tuple[list[Fresh], dict[str, str | None], int]:
    """Orders beyond what was applied from their source, in log order, each with the clock
    it is judged by: its origin's watermark before it or the partition's, the later. Each
    record's channel moves after its orders, and the watermark with the channels; a record
    at or below `read_offset` (read again after a restart) moves nothing: its lease is
    older than the channel's. Returns the orders, the offsets to record, and the watermark
    after the records."""
    sources = {source for item in items for source, _ in item.groups}
    applied = applied_offsets(sources, read)
    fresh: list[Fresh] = []
    for item in items:
        for source, rows in item.groups:
            last = applied[source]
            for offset, order, key, late_clock in rows:
                if offset > last:
                    last = offset
                    fresh.append((order, key, watermark_ms if late_clock is None
                                  or late_clock < watermark_ms else late_clock))
            applied[source] = last
        if 0 <= item.offset <= read_offset:
            continue
        channels[item.carrier] = advance(channels[item.carrier], item.watermark_ms,
                                         item.idle_until_ms, item.top_ms)
        combined = combine(channels, now_ms)
        if combined.idle_until_ms is None and combined.watermark_ms > watermark_ms:
            watermark_ms = combined.watermark_ms
    return fresh, {source_key(s): str(o) for s, o in applied.items()}, watermark_ms


RowKey = tuple[str, int, Buyer]  # window name, start, buyer
Stats = list[Any]  # [count, sum] or [count, sum, min, max]: an int, then Decimals
K = TypeVar("K")


@dataclass(slots=True)
class Fold:
    """A batch folded in memory: per buyer `[count, sum]`, per row `[count, sum, min, max]`."""

    totals: dict[Buyer, Stats] = field(default_factory=dict)
    rows: dict[RowKey, Stats] = field(default_factory=dict)
    late: list[LateOrder] = field(default_factory=list)
    counted: int = 0


def fold(fresh: Sequence[Fresh], windows: Sequence[WindowSpec], lateness_ms: int) -> Fold:
    """Fold orders, each late for the windows whose end plus lateness its clock reached.

    An order that misses no window (the usual case) is only added to its buyer's slide
    bucket, `[start, start + slide)`: every window of a slide holds whole buckets, so each
    bucket is spread over its windows' rows once per batch, not once per order.
    """
    folded = Fold()
    slides = sorted({spec.slide_ms for spec in windows})
    buckets: dict[int, dict[tuple[int, Buyer], Stats]] = {s: {} for s in slides}
    with localcontext(MONEY_CONTEXT):
        for order, key, clock_ms in fresh:
            time_ms = order.order_time_ms
            # The oldest window holding the order ends first: at the end of its bucket.
            if slides and min(time_ms - time_ms % s + s for s in slides) + lateness_ms > (
                    clock_ms):
                buyer, price = (order.first_name, order.last_name), order.price
                _fold_total(folded, buyer, price)
                for slide in slides:
                    _add(buckets[slide], (time_ms - time_ms % slide, buyer), price)
            else:
                _fold_order(folded, order, key, windows, lateness_ms, clock_ms)
        for spec in windows:
            size, slide, name, rows = spec.size_ms, spec.slide_ms, spec.name, folded.rows
            for (bucket_start, buyer), stats in buckets[slide].items():
                for start in range(bucket_start - size + slide, bucket_start + 1, slide):
                    _merge(rows, (name, start, buyer), stats)
    return folded


def _fold_total(folded: Fold, buyer: Buyer, price: Decimal) -> None:
    folded.counted += 1
    total = folded.totals.get(buyer)
    if total is None:
        folded.totals[buyer] = [1, price]
    else:
        total[0] += 1
        total[1] += price


def _add(stats_by_key: dict[K, Stats], key: K, price: Decimal) -> None:
    """One price into `[count, sum, min, max]`."""
    stats = stats_by_key.get(key)
    if stats is None:
        stats_by_key[key] = [1, price, price, price]
        return
    stats[0] += 1
    stats[1] += price
    if price < stats[2]:
        stats[2] = price
    elif price > stats[3]:
        stats[3] = price


def _merge(stats_by_key: dict[K, Stats], key: K, other: Stats) -> None:
    """`[count, sum, min, max]` of a bucket into a row."""
    stats = stats_by_key.get(key)
    if stats is None:
        stats_by_key[key] = list(other)
        return
    stats[0] += other[0]
    stats[1] += other[1]
    if other[2] < stats[2]:
        stats[2] = other[2]
    if other[3] > stats[3]:
        stats[3] = other[3]


def _fold_order(folded: Fold, order: Order, key: bytes | None, windows: Sequence[WindowSpec],
                lateness_ms: int, watermark_ms: int) -> None:
    """An order that may be late for some of its windows: window by window."""
    buyer, price, time_ms = (order.first_name, order.last_name), order.price, order.order_time_ms
    _fold_total(folded, buyer, price)
    missed = []
    for spec in windows:
        for start in window_starts_ms(time_ms, spec.size_ms, spec.slide_ms):
            if start + spec.size_ms + lateness_ms <= watermark_ms:
                missed.append((spec, start))
            else:
                _add(folded.rows, (spec.name, start, buyer), price)
    if missed:
        folded.late.append(LateOrder(order, key, missed))


def stored_totals(keys: Sequence[str], read: ReadMany) -> list[TotalChange]:
    """The current totals of buyers by their store keys, as changes from nothing."""
    return [TotalChange(buyer_of_total_key(key), None, decode_total(stored))
            for key, stored in zip(keys, read(keys), strict=True) if stored is not None]


def merge_totals(totals: dict[Buyer, Stats], read: ReadMany, result: BatchResult) -> None:
    """Add a batch's per-buyer deltas to the stored totals."""
    buyers = list(totals)
    keys = [total_key(b) for b in buyers]
    with localcontext(MONEY_CONTEXT):
        for buyer, key, stored in zip(buyers, keys, read(keys), strict=True):
            count, price_sum = totals[buyer]
            old = None
            if stored is not None:
                old = decode_total(stored)
                count, price_sum = count + old.count, price_sum + old.total_price
            result.updates[key] = encode_total(count, price_sum)
            result.total_changes.append(TotalChange(buyer, old, Total(count, price_sum)))


def merge_rows(rows: dict[RowKey, Stats], read: ReadMany, result: BatchResult) -> None:
    """Add a batch's per-row window deltas to the stored rows."""
    buyer_json: dict[Buyer, str] = {}
    keys = []
    for name, start, buyer in rows:
        text = buyer_json.get(buyer)
        if text is None:
            text = buyer_json[buyer] = orjson.dumps(buyer).decode()
        keys.append(start_prefix(name, start) + text)
    with localcontext(MONEY_CONTEXT):
        for key, delta, stored in zip(keys, rows.values(), read(keys), strict=True):
            count, price_sum, low, high = delta
            if stored is not None:
                old_count, old_sum, old_low, old_high = decode_row(stored)
                count += old_count
                price_sum += old_sum
                low, high = min(low, old_low), max(high, old_high)
            result.updates[key] = encode_row(count, price_sum, low, high)


def read_watermark(read: ReadMany, key: str = WATERMARK_KEY) -> int:
    """A partition's stored watermark (or latest order time), NO_WATERMARK before any."""
    [value] = read([key])
    return NO_WATERMARK if value is None else int(value)
