"""The aggregation step for one partition: apply a batch exactly once per order, each
judged by its own clock; move the watermark with the channels; then, on the committed
state, close the windows the watermark passed."""

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple

import orjson

from core.aggregate import (
    BatchResult,
    TotalChange,
    fold,
    merge_totals,
    read_watermark,
    select_new,
    stored_totals,
)
from core.schema import (
    LATEST_ORDER_KEY,
    OUTBOX_KEY,
    READ_KEY,
    WATERMARK_KEY,
    channel_key,
    total_key,
    window_prefixes,
)
from core.shuffle import Shuffled
from core.storage import ReadMany, ScanFrom
from core.watermarks import (
    NO_WATERMARK,
    Channel,
    combine,
    decode_channel,
    encode_channel,
    idle_catch_up_ms,
)
from core.windows import CLOSE_ROWS, Window


@dataclass(frozen=True, slots=True)
class AggregateConfig:
    """Windows and the event-time rules."""

    windows: Sequence[Window]
    allowed_lateness_ms: int
    retention_ms: int
    dropped: Sequence[str] = ()  # names of windows removed from WINDOWS: rows to delete
    carriers: int = 1  # dedup partitions feeding every aggregation partition
    idle_timeout_ms: int = 30_000


class Clock(NamedTuple):
    """The wall clock, and since when every channel has been idle (None: not all are)."""

    now_ms: int
    all_idle_since_ms: int | None = None


def read_channels(config: AggregateConfig, read: ReadMany) -> list[Channel]:
    """Every carrier's channel, in carrier order."""
    return [decode_channel(v) for v in read([channel_key(c) for c in range(config.carriers)])]


def apply_batch(items: Sequence[Shuffled], config: AggregateConfig, read: ReadMany,
                clock: Clock) -> BatchResult:
    """Skip what was applied, fold by each order's clock, merge; move the watermark.

    With no items it only moves the watermark by the idle rule (a timer calls it so)."""
    before = read_watermark(read)
    stored = read_channels(config, read)
    channels = list(stored)
    read_offset = read_watermark(read, READ_KEY)
    fresh, offsets, watermark = select_new(items, read, channels, before, clock.now_ms,
                                           read_offset)
    last_read = max((item.offset for item in items), default=-1)
    folded = fold(fresh, config.windows, config.allowed_lateness_ms, read)
    result = BatchResult(counted=folded.counted, late=folded.late)
    latest = read_watermark(read, LATEST_ORDER_KEY)
    if folded.counted:
        merge_totals(folded.totals, read, result)
        result.updates.update(folded.updates)
        result.updates.update(offsets)
        [previous] = read([OUTBOX_KEY])
        sequence = 1 if previous is None else orjson.loads(previous)[0] + 1
        result.updates[OUTBOX_KEY] = orjson.dumps(
            [sequence, [total_key(c.buyer) for c in result.total_changes]]).decode()
        result.outbox_sequence = sequence
        batch_latest = max(order.order_time_ms for order, _, _ in fresh)
        if batch_latest > latest:
            latest = batch_latest
            result.updates[LATEST_ORDER_KEY] = str(latest)
    result.updates.update({channel_key(c): encode_channel(channel)
                           for c, channel in enumerate(channels) if channel != stored[c]})
    if last_read > read_offset:
        result.updates[READ_KEY] = str(last_read)
    combined = combine(channels, clock.now_ms)
    if latest != NO_WATERMARK:
        watermark = max(watermark, idle_catch_up_ms(
            combined, clock.all_idle_since_ms, clock.now_ms,
            config.idle_timeout_ms, config.allowed_lateness_ms + max(
                w.final_end_ms(latest) for w in config.windows)))
    result.watermark_ms = watermark
    result.all_idle = combined.idle_until_ms is not None
    if watermark != before:
        result.updates[WATERMARK_KEY] = str(watermark)
    return result


def outbox(read: ReadMany) -> tuple[int, list[TotalChange]]:
    """The last batch's number and its buyers' current totals, which a restart publishes
    again unless this store remembers they were."""
    [value] = read([OUTBOX_KEY])
    if value is None:
        return 0, []
    sequence, keys = orjson.loads(value)
    return sequence, stored_totals(keys, read)


def close_windows(config: AggregateConfig, read: ReadMany, scan: ScanFrom,
                  limit: int = CLOSE_ROWS) -> BatchResult:
    """Publish what the committed watermark made final, delete what it put past retention:
    one step, each part of it stopping near `limit` rows (`more`: commit it and call
    again)."""
    watermark = read_watermark(read)
    result = BatchResult(watermark_ms=watermark)
    for name in config.dropped:
        for prefix in window_prefixes(name):
            gone = list(islice(scan(prefix, None), limit + 1))
            result.more |= len(gone) > limit
            result.updates.update(dict.fromkeys((key for key, _ in gone[:limit]), None))
    if watermark == NO_WATERMARK:
        return result
    for window in config.windows:
        closed = window.close(watermark, config.allowed_lateness_ms, config.retention_ms,
                              read, scan, limit)
        result.finals.extend(closed.finals)
        result.updates.update(closed.updates)
        result.more |= closed.more
    return result
