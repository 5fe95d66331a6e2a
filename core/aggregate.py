"""Buyer totals and window aggregates over one partition's batch, in event time.

State is text in a key-value store (tables.store), fixed-size per key:
- `t|<buyer json>`                   -> `[count, "sum"]`
- `w|<window>|<start>|<buyer json>`  -> `[count, "sum", "min", "max"]`
- `s|<source topic:partition>`       -> the last source offset applied (core.sources)
- `m|watermark`                      -> the largest order time applied (or ticked to)
- `m|latest-order`                   -> the largest order time applied
- `f|<window>` / `r|<window>`        -> the last window start published as final / deleted
A batch's new orders are applied in event-time order (as Kafka Streams picks the input
record with the smallest timestamp), each late for the windows already final at the
watermark it meets (SPEC.md, Event time), each then moving the watermark; ticks apply
after them. The batch is folded in memory and merged with the stored values in one
multi-get. Closing windows (core.closing) works on committed state only.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

import orjson

from core.models import Order, Tick
from core.money import MONEY_CONTEXT
from core.shuffle import Positioned
from core.sources import applied_offsets, source_key
from tables.windows import WindowSpec, window_starts_ms

Buyer = tuple[str, str]
ReadMany = Callable[[Sequence[str]], list[str | None]]
ScanFrom = Callable[[str, str], Iterator[tuple[str, str]]]  # (prefix, start key)
START_BIAS_MS = 100_000_000_000_000  # makes every start from year 1 on a positive 15-digit number
WATERMARK_KEY = "m|watermark"
LATEST_ORDER_KEY = "m|latest-order"  # the watermark without ticks: the latest order time
NO_WATERMARK = -(2**63)


def total_key(buyer: Buyer) -> str:
    """Store key of a buyer's total."""
    return "t|" + orjson.dumps(buyer).decode()


def window_prefix(name: str) -> str:
    """Store key prefix of every row of one window."""
    return f"w|{name}|"


def start_prefix(name: str, start_ms: int) -> str:
    """Store key prefix of every row of one window start."""
    return f"w|{name}|{start_ms + START_BIAS_MS:016d}|"


def window_key(name: str, start_ms: int, buyer: Buyer) -> str:
    """Store key of one window row; keys of a window sort by start."""
    return start_prefix(name, start_ms) + orjson.dumps(buyer).decode()


def parse_window_key(key: str) -> tuple[str, int, Buyer]:
    """Inverse of window_key."""
    _, name, start, buyer = key.split("|", 3)
    first, last = orjson.loads(buyer)
    return name, int(start) - START_BIAS_MS, (first, last)


@dataclass(frozen=True, slots=True)
class Total:
    """A buyer's count and exact sum."""

    count: int
    total_price: Decimal


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
    finals: list[tuple[bytes, bytes]] = field(default_factory=list)  # window-results records
    counted: int = 0
    watermark_ms: int = NO_WATERMARK

    @property
    def changed(self) -> bool:
        return bool(self.updates)


Item = tuple[str, list[Positioned]] | Tick


def select_new(items: Sequence[Item], read: ReadMany) -> tuple[list[Order | Tick], list,  # type: ignore[type-arg]
                                                                   dict[str, str | None]]:
    """Orders beyond what was applied from their source (and ticks), in log order."""
    applied = applied_offsets([i[0] for i in items if not isinstance(i, Tick)], read)
    fresh: list[Order | Tick] = []
    keys: list[bytes | None] = []
    for item in items:
        if isinstance(item, Tick):
            fresh.append(item)
            keys.append(None)
            continue
        source, orders = item
        for offset, order, key in orders:
            if offset > applied[source]:
                applied[source] = offset
                fresh.append(order)
                keys.append(key)
    return fresh, keys, {source_key(s): str(o) for s, o in applied.items()}


RowKey = tuple[str, int, Buyer]  # window name, start, buyer


@dataclass(slots=True)
class Fold:
    """A batch folded in memory: per buyer `[count, sum]`, per row `[count, sum, min, max]`."""

    totals: dict[Buyer, list] = field(default_factory=dict)  # type: ignore[type-arg]
    rows: dict[RowKey, list] = field(default_factory=dict)  # type: ignore[type-arg]
    late: list[LateOrder] = field(default_factory=list)
    counted: int = 0


def fold(fresh: Sequence[Order | Tick], keys: Sequence[bytes | None],
         windows: Sequence[WindowSpec], lateness_ms: int, watermark_ms: int) -> tuple[Fold, int]:
    """Fold orders by event time, each against the watermark it meets; return the new one.

    An order that misses no window (the usual case) is only added to its buyer's slide
    bucket, `[start, start + slide)`: every window of a slide holds whole buckets, so each
    bucket is spread over its windows' rows once per batch, not once per order.
    """
    folded = Fold()
    orders = sorted(((item, key) for item, key in zip(fresh, keys, strict=True)
                     if not isinstance(item, Tick)), key=lambda pair: pair[0].order_time_ms)
    slides = sorted({spec.slide_ms for spec in windows})
    buckets: dict[int, dict[tuple[int, Buyer], list]] = {s: {} for s in slides}  # type: ignore[type-arg]
    with localcontext(MONEY_CONTEXT):
        for order, key in orders:
            time_ms = order.order_time_ms
            # The oldest window holding the order ends first: at the end of its bucket.
            if slides and min(time_ms - time_ms % s + s for s in slides) + lateness_ms > (
                    watermark_ms):
                _fold_total(folded, order)
                buyer, price = (order.first_name, order.last_name), order.price
                for slide in slides:
                    _add(buckets[slide], (time_ms - time_ms % slide, buyer), price)
            else:
                _fold_order(folded, order, key, windows, lateness_ms, watermark_ms)
            if time_ms > watermark_ms:
                watermark_ms = time_ms
        for spec in windows:
            size, slide, name, rows = spec.size_ms, spec.slide_ms, spec.name, folded.rows
            for (bucket_start, buyer), stats in buckets[slide].items():
                for start in range(bucket_start - size + slide, bucket_start + 1, slide):
                    _merge(rows, (name, start, buyer), stats)
    for item in fresh:
        if isinstance(item, Tick):
            watermark_ms = max(watermark_ms, item.watermark_ms)
    return folded, watermark_ms


def _fold_total(folded: Fold, order: Order) -> None:
    buyer = (order.first_name, order.last_name)
    folded.counted += 1
    total = folded.totals.get(buyer)
    if total is None:
        folded.totals[buyer] = [1, order.price]
    else:
        total[0] += 1
        total[1] += order.price


def _add(stats_by_key: dict, key: object, price: Decimal) -> None:  # type: ignore[type-arg]
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


def _merge(stats_by_key: dict, key: object, other: list) -> None:  # type: ignore[type-arg]
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
    _fold_total(folded, order)
    buyer, price, time_ms = (order.first_name, order.last_name), order.price, order.order_time_ms
    missed = []
    for spec in windows:
        for start in window_starts_ms(time_ms, spec.size_ms, spec.slide_ms):
            if start + spec.size_ms + lateness_ms <= watermark_ms:
                missed.append((spec, start))
            else:
                _add(folded.rows, (spec.name, start, buyer), price)
    if missed:
        folded.late.append(LateOrder(order, key, missed))


def merge_totals(totals: dict[Buyer, list], read: ReadMany, result: BatchResult) -> None:  # type: ignore[type-arg]
    """Add a batch's per-buyer deltas to the stored totals."""
    buyers = list(totals)
    keys = [total_key(b) for b in buyers]
    with localcontext(MONEY_CONTEXT):
        for buyer, key, stored in zip(buyers, keys, read(keys), strict=True):
            count, price_sum = totals[buyer]
            old = None
            if stored is not None:
                old_count, old_sum = orjson.loads(stored)
                old = Total(old_count, Decimal(old_sum))
                count, price_sum = count + old.count, price_sum + old.total_price
            result.updates[key] = orjson.dumps([count, str(price_sum)]).decode()
            result.total_changes.append(TotalChange(buyer, old, Total(count, price_sum)))


def merge_rows(rows: dict[RowKey, list], read: ReadMany, result: BatchResult) -> None:  # type: ignore[type-arg]
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
                old_count, old_sum, old_low, old_high = orjson.loads(stored)
                count += old_count
                price_sum += Decimal(old_sum)
                low, high = min(low, Decimal(old_low)), max(high, Decimal(old_high))
            result.updates[key] = orjson.dumps(
                [count, str(price_sum), str(low), str(high)]
            ).decode()


def read_watermark(read: ReadMany, key: str = WATERMARK_KEY) -> int:
    """A partition's stored watermark (or latest order time), NO_WATERMARK before any."""
    [value] = read([key])
    return NO_WATERMARK if value is None else int(value)
