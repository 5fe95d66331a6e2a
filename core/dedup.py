"""Deduplication by order number over one partition's batch, within DEDUP_HORIZON of event time.

State (text, in the dedup stage's store):
- `d|<order_number>`           -> `[price, first_name, last_name, order_time_ms]|<recorded_ms>`:
                                  the content of the copy counted, and when it was recorded
- `x|<recorded_ms>|<order_number>` -> `""`, an index by recorded time: expiry is a range scan

Every copy is judged by a clock: its origin partition's source watermark just before it,
or the dedup partition's own watermark if that is later (it is later only when the origin
was idle). A number is recorded at its origin's source watermark just after the copy
counted (never before the copy's own time), and remembered while `recorded >= clock -
DEDUP_HORIZON` for the copy judged. An order with `order_time < clock - DEDUP_HORIZON` is
too old to check, and counts nowhere. Entries are deleted once `recorded < watermark -
DEDUP_HORIZON`, which no later copy's clock can be below: deleting never changes a
decision, and a copy of a deleted entry is always too old or beyond the horizon.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import orjson

from core.models import Order
from core.schema import ENTRY_PREFIX, EXPIRY_PREFIX, entry_key, expiry_key
from core.storage import ReadMany, Scan

T = TypeVar("T")


def content(order: Order) -> str:
    """What makes two copies of an order number the same order (SPEC.md: after parsing)."""
    return orjson.dumps(
        [str(order.price), order.first_name, order.last_name, order.order_time_ms]
    ).decode()


def split_entry(value: str) -> tuple[str, int]:
    """An entry's content and recorded time (entries of earlier versions: the order time)."""
    text, sep, recorded = value.rpartition("|")
    if sep and text.endswith("]"):
        return text, int(recorded)
    return value, int(orjson.loads(value)[3])


@dataclass(slots=True)
class DedupResult(Generic[T]):
    """A batch split by what dedup decided; `T` is whatever the caller tags orders with."""

    accepted: list[tuple[T, Order]] = field(default_factory=list)
    duplicates: list[tuple[T, Order]] = field(default_factory=list)
    conflicts: list[tuple[T, Order]] = field(default_factory=list)
    too_old: list[tuple[T, Order]] = field(default_factory=list)
    updates: dict[str, str | None] = field(default_factory=dict)


def dedup_batch(orders: Iterable[tuple[T, Order, int]], horizon_ms: int, watermark_ms: int,
                read: ReadMany) -> DedupResult[T]:
    """Decide each `(tag, order, origin watermark before it)` in arrival order."""
    orders = list(orders)
    result: DedupResult[T] = DedupResult()
    keys = [entry_key(order.order_number) for _, order, _ in orders]
    known = dict(zip(keys, read(keys), strict=True))
    for (tag, order, before_ms), key in zip(orders, keys, strict=True):
        clock_ms = before_ms if before_ms > watermark_ms else watermark_ms
        _decide(result, tag, order, key, known, clock_ms - horizon_ms, before_ms)
    return result


def _decide(result: DedupResult[T], tag: T, order: Order, key: str,
            known: dict[str, str | None], oldest_ms: int, before_ms: int) -> None:
    if order.order_time_ms < oldest_ms:
        result.too_old.append((tag, order))
        return
    seen, mine = known[key], content(order)
    if seen is not None:
        seen, recorded_ms = split_entry(seen)
        if recorded_ms < oldest_ms:  # beyond the horizon for this copy: a new order
            result.updates[expiry_key(recorded_ms, order.order_number)] = None
            seen = None
    if seen is None:
        recorded_ms = max(before_ms, order.order_time_ms)
        known[key] = result.updates[key] = f"{mine}|{recorded_ms}"
        result.updates[expiry_key(recorded_ms, order.order_number)] = ""
        result.accepted.append((tag, order))
    elif seen == mine:
        result.duplicates.append((tag, order))
    else:
        result.conflicts.append((tag, order))


def expire(before_ms: int, scan: Scan, updates: dict[str, str | None]) -> None:
    """Delete entries recorded before `before_ms`, with their index keys, into `updates`.

    An index key this batch already dropped (its number was recorded again) is skipped;
    an entry this batch added that is already that old goes with the next batch: expiry
    only has to be eventual to keep the store bounded.
    """
    bound = expiry_key(before_ms, 0).rsplit("|", 1)[0]
    for key, _ in scan(EXPIRY_PREFIX):
        prefix, _, number = key.rpartition("|")
        if prefix >= bound:
            break
        if key not in updates:
            updates[key] = None
            updates[ENTRY_PREFIX + number] = None
