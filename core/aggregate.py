"""Buyer totals and window aggregates over one partition's batch, in event time.

State is text in a key-value store, fixed-size per key (core.schema: the aggregation
stores). An order is late for a window whose end plus ALLOWED_LATENESS its origin's source watermark
before it had reached, or the partition's watermark had (SPEC.md, Event time): nothing
else, so the order in which a batch is applied does not matter. Each window kind folds
the batch and merges it with the stored rows (core.windows.Folder); closing windows
(Window.close) works on committed state only.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import localcontext
from typing import Any

from core.models import Buyer, Order, Total, WindowResult
from core.money import MONEY_CONTEXT
from core.schema import (
    WATERMARK_KEY,
    buyer_of_total_key,
    decode_total,
    encode_total,
    source_key,
    total_key,
)
from core.shuffle import Shuffled
from core.sources import applied_offsets
from core.storage import ReadMany
from core.watermarks import NO_WATERMARK, Channel, advance, combine
from core.windows import Fresh, Missed, Window, by_folder


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
    missed: list[Missed]


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
    more: bool = False  # closing stopped at its row limit: commit, then close again

    @property
    def changed(self) -> bool:
        return bool(self.updates)


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


Stats = list[Any]  # a buyer total's [count, sum]


@dataclass(slots=True)
class Fold:
    """A batch folded: per buyer `[count, sum]` in memory, the windows' store updates, and
    the orders late for some window."""

    totals: dict[Buyer, Stats] = field(default_factory=dict)
    updates: dict[str, str | None] = field(default_factory=dict)
    late: list[LateOrder] = field(default_factory=list)
    counted: int = 0


def fold(fresh: Sequence[Fresh], windows: Sequence[Window], lateness_ms: int,
         read: ReadMany) -> Fold:
    """Every order into its buyer's total; each kind's windows fold the batch together."""
    folded = Fold(totals=fold_totals(fresh), counted=len(fresh))
    missed: dict[int, list[Missed]] = {}
    for folder, group in by_folder(windows):
        part = folder(group, fresh, lateness_ms, read)
        folded.updates.update(part.updates)
        for index, windows_missed in part.missed.items():
            missed.setdefault(index, []).extend(windows_missed)
    if missed:  # in WINDOWS order, whichever kind found them
        position = {window.name: i for i, window in enumerate(windows)}
        folded.late = [LateOrder(fresh[i][0], fresh[i][1], sorted(
            missed[i], key=lambda m: (position[m.window.name], m.start_ms)))
            for i in sorted(missed)]
    return folded


def fold_totals(fresh: Sequence[Fresh]) -> dict[Buyer, Stats]:
    """Per buyer, the count and sum of the batch's orders."""
    totals: dict[Buyer, Stats] = {}
    with localcontext(MONEY_CONTEXT):
        for order, _, _ in fresh:
            buyer = (order.first_name, order.last_name)
            total = totals.get(buyer)
            if total is None:
                totals[buyer] = [1, order.price]
            else:
                total[0] += 1
                total[1] += order.price
    return totals


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


def read_watermark(read: ReadMany, key: str = WATERMARK_KEY) -> int:
    """A partition's stored watermark (or latest order time), NO_WATERMARK before any."""
    [value] = read([key])
    return NO_WATERMARK if value is None else int(value)
