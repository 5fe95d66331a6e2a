"""Deduplication by order number over one partition's batch, within DEDUP_HORIZON of event time.

State (text, in the dedup stage's store):
- `d|<order_number>`                 -> `[price, first_name, last_name, order_time_ms]`, the
                                        content of the first copy counted
- `x|<order_time_ms>|<order_number>` -> `""`, an index by time so expiry is a range scan
- `m|watermark`                      -> the largest order time this partition has seen
The first copy of a number wins; a later copy with the same content is a duplicate,
with other content a conflict. Entries older than the watermark minus the horizon are
deleted, and an order that old can no longer be checked: it is too old to count.
"""

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import orjson

from core.models import Order

T = TypeVar("T")
ReadMany = Callable[[Sequence[str]], list[str | None]]
Scan = Callable[[str], Iterator[tuple[str, str]]]
WATERMARK_KEY = "m|watermark"
TIME_BIAS_MS = 100_000_000_000_000  # order times from year 1 on sort as 15-digit numbers
NO_WATERMARK = -(2**63)


def entry_key(order_number: int) -> str:
    """Store key of an order number's entry."""
    return f"d|{order_number}"


def expiry_key(order_time_ms: int, order_number: int) -> str:
    """Store key of an entry in the time index."""
    return f"x|{order_time_ms + TIME_BIAS_MS:016d}|{order_number}"


def content(order: Order) -> str:
    """What makes two copies of an order number the same order (SPEC.md: after parsing)."""
    return orjson.dumps(
        [str(order.price), order.first_name, order.last_name, order.order_time_ms]
    ).decode()


@dataclass(slots=True)
class DedupResult(Generic[T]):
    """A batch split by what dedup decided; `T` is whatever the caller tags orders with."""

    accepted: list[tuple[T, Order]] = field(default_factory=list)
    duplicates: list[tuple[T, Order]] = field(default_factory=list)
    conflicts: list[tuple[T, Order]] = field(default_factory=list)
    too_old: list[tuple[T, Order]] = field(default_factory=list)
    updates: dict[str, str | None] = field(default_factory=dict)
    watermark_ms: int = NO_WATERMARK


def read_watermark(read: ReadMany) -> int:
    """The partition's stored watermark, NO_WATERMARK when it has seen nothing."""
    [value] = read([WATERMARK_KEY])
    return NO_WATERMARK if value is None else int(value)


def dedup_batch(
    orders: Iterable[tuple[T, Order]], horizon_ms: int, read: ReadMany, scan: Scan
) -> DedupResult[T]:
    """Decide each order in arrival order, then expire what fell behind the horizon."""
    orders = list(orders)
    before = read_watermark(read)
    result: DedupResult[T] = DedupResult(watermark_ms=before)
    keys = [entry_key(order.order_number) for _, order in orders]
    known = dict(zip(keys, read(keys), strict=True))
    for (tag, order), key in zip(orders, keys, strict=True):
        _decide(result, tag, order, key, known, horizon_ms)
    if result.watermark_ms != before:
        result.updates[WATERMARK_KEY] = str(result.watermark_ms)
    _expire(result, result.watermark_ms - horizon_ms, scan)
    return result


def _decide(result: DedupResult[T], tag: T, order: Order, key: str,
            known: dict[str, str | None], horizon_ms: int) -> None:
    if order.order_time_ms < result.watermark_ms - horizon_ms:
        result.too_old.append((tag, order))
        return
    result.watermark_ms = max(result.watermark_ms, order.order_time_ms)
    seen, mine = known[key], content(order)
    if seen is None:
        known[key] = mine
        result.updates[key] = mine
        result.updates[expiry_key(order.order_time_ms, order.order_number)] = ""
        result.accepted.append((tag, order))
    elif seen == mine:
        result.duplicates.append((tag, order))
    else:
        result.conflicts.append((tag, order))


def _expire(result: DedupResult[T], before_ms: int, scan: Scan) -> None:
    """Delete entries whose order time is before `before_ms`, with their index keys."""
    bound = expiry_key(before_ms, 0).rsplit("|", 1)[0]
    for key, _ in scan("x|"):
        if key.rsplit("|", 1)[0] >= bound:
            break
        result.updates[key] = None
        result.updates["d|" + key.rsplit("|", 1)[1]] = None
    # An entry this batch added and its own later orders pushed behind the horizon is
    # expired by the next batch: expiry only has to be eventual to keep the store bounded.
