"""Buyer totals and window aggregates over one batch: read current values, return updates.

State is text in a key-value store (tables.store), fixed-size per key:
- `t|<buyer json>`                   -> `[count, "sum"]`
- `w|<window>|<start>|<buyer json>`  -> `[count, "sum", "min", "max"]`
- `s|<source topic:partition>`       -> the last source offset applied
The batch is first folded in memory (one entry per touched key), then merged with
the stored values in one multi-get: the store is read and written once per batch.
"""

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

import orjson

from core.models import Order
from core.money import MONEY_CONTEXT
from core.shuffle import Positioned
from tables.windows import WindowSpec, window_starts_ms

Buyer = tuple[str, str]
ReadMany = Callable[[Sequence[str]], list[str | None]]
START_BIAS_MS = 100_000_000_000_000  # makes every start from year 1 on a positive 15-digit number


def total_key(buyer: Buyer) -> str:
    """Store key of a buyer's total."""
    return "t|" + orjson.dumps(buyer).decode()


def window_prefix(name: str) -> str:
    """Store key prefix of every row of one window."""
    return f"w|{name}|"


def window_key(name: str, start_ms: int, buyer: Buyer) -> str:
    """Store key of one window row; keys of a window sort by start."""
    return f"w|{name}|{start_ms + START_BIAS_MS:016d}|" + orjson.dumps(buyer).decode()


def parse_window_key(key: str) -> tuple[str, int, Buyer]:
    """Inverse of window_key."""
    _, name, start, buyer = key.split("|", 3)
    first, last = orjson.loads(buyer)
    return name, int(start) - START_BIAS_MS, (first, last)


def source_key(source: str) -> str:
    """Store key of the last offset applied from one source stream."""
    return "s|" + source


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


@dataclass(slots=True)
class BatchResult:
    """What applying one batch changes: store updates and the buyer totals that moved."""

    updates: dict[str, str | None] = field(default_factory=dict)
    total_changes: list[TotalChange] = field(default_factory=list)
    counted: int = 0


def select_new(
    batches: Iterable[tuple[str, list[Positioned]]], read: ReadMany
) -> tuple[list[Order], dict[str, str | None]]:
    """Orders beyond the offset already applied from their source, and the new offsets.

    A batch repeated by a crash or a replay carries offsets already applied: skipped.
    """
    batches = list(batches)
    sources = sorted({source for source, _ in batches})
    applied = {s: -1 if v is None else int(v) for s, v in
               zip(sources, read([source_key(s) for s in sources]), strict=True)}
    fresh: list[Order] = []
    for source, orders in batches:
        last = applied[source]
        for offset, order in orders:
            if offset > last:
                fresh.append(order)
                last = offset
        applied[source] = last
    return fresh, {source_key(s): str(o) for s, o in applied.items()}


def fold_orders(
    orders: Iterable[Order], windows: Sequence[WindowSpec]
) -> tuple[dict[Buyer, list], dict[str, list]]:  # type: ignore[type-arg]
    """Per buyer `[count, sum]` and per window row `[count, sum, min, max]` of a batch."""
    totals: dict[Buyer, list] = {}  # type: ignore[type-arg]
    rows: dict[str, list] = {}  # type: ignore[type-arg]
    specs = [(w.name, w.size_ms, w.slide_ms) for w in windows]
    with localcontext(MONEY_CONTEXT):
        for order in orders:
            buyer, price = (order.first_name, order.last_name), order.price
            total = totals.get(buyer)
            if total is None:
                totals[buyer] = [1, price]
            else:
                total[0] += 1
                total[1] += price
            for name, size_ms, slide_ms in specs:
                for start in window_starts_ms(order.order_time_ms, size_ms, slide_ms):
                    _fold_row(rows, window_key(name, start, buyer), price)
    return totals, rows


def _fold_row(rows: dict[str, list], key: str, price: Decimal) -> None:  # type: ignore[type-arg]
    row = rows.get(key)
    if row is None:
        rows[key] = [1, price, price, price]
        return
    row[0] += 1
    row[1] += price
    if price < row[2]:
        row[2] = price
    if price > row[3]:
        row[3] = price


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
            new = Total(count, price_sum)
            result.updates[key] = orjson.dumps([count, str(price_sum)]).decode()
            result.total_changes.append(TotalChange(buyer, old, new))


def merge_rows(rows: dict[str, list], read: ReadMany, result: BatchResult) -> None:  # type: ignore[type-arg]
    """Add a batch's per-row window deltas to the stored rows."""
    keys = list(rows)
    with localcontext(MONEY_CONTEXT):
        for key, stored in zip(keys, read(keys), strict=True):
            count, price_sum, low, high = rows[key]
            if stored is not None:
                old_count, old_sum, old_low, old_high = orjson.loads(stored)
                count += old_count
                price_sum += Decimal(old_sum)
                low, high = min(low, Decimal(old_low)), max(high, Decimal(old_high))
            result.updates[key] = orjson.dumps(
                [count, str(price_sum), str(low), str(high)]
            ).decode()


def apply_batch(
    batches: Iterable[tuple[str, list[Positioned]]], windows: Sequence[WindowSpec], read: ReadMany
) -> BatchResult:
    """The aggregation step for one partition: skip what was applied, fold, merge."""
    orders, offsets = select_new(batches, read)
    result = BatchResult(counted=len(orders))
    if not orders:
        return result
    totals, rows = fold_orders(orders, windows)
    merge_totals(totals, read, result)
    merge_rows(rows, read, result)
    result.updates.update(offsets)
    return result
