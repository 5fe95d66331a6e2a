"""The aggregation step for one partition: apply a batch exactly once per order, in event
time; then, on the committed state, close the windows the watermark passed."""

from collections.abc import Sequence
from dataclasses import dataclass

from core.aggregate import (
    LATEST_ORDER_KEY,
    NO_WATERMARK,
    WATERMARK_KEY,
    BatchResult,
    Item,
    ReadMany,
    fold,
    merge_rows,
    merge_totals,
    read_watermark,
    select_new,
    window_prefix,
)
from core.closing import ScanFrom, close_window, final_key, retired_key
from core.models import Tick
from tables.windows import WindowSpec


@dataclass(frozen=True, slots=True)
class AggregateConfig:
    """Windows and the event-time rules."""

    windows: Sequence[WindowSpec]
    allowed_lateness_ms: int
    retention_ms: int
    dropped: Sequence[str] = ()  # names of windows removed from WINDOWS: rows to delete


def apply_batch(items: Sequence[Item], config: AggregateConfig, read: ReadMany) -> BatchResult:
    """Skip what was applied, fold by event time, merge; the watermark moves with it."""
    before = read_watermark(read)
    fresh, keys, offsets = select_new(items, read)
    folded, watermark = fold(fresh, keys, config.windows, config.allowed_lateness_ms, before)
    result = BatchResult(counted=folded.counted, late=folded.late, watermark_ms=watermark)
    if folded.counted:
        merge_totals(folded.totals, read, result)
        merge_rows(folded.rows, read, result)
        result.updates.update(offsets)
        latest = max(o.order_time_ms for o in fresh if not isinstance(o, Tick))
        if latest > read_watermark(read, LATEST_ORDER_KEY):
            result.updates[LATEST_ORDER_KEY] = str(latest)
    if watermark != before:
        result.updates[WATERMARK_KEY] = str(watermark)
    return result


def close_windows(config: AggregateConfig, read: ReadMany, scan: ScanFrom) -> BatchResult:
    """Publish what the committed watermark made final, delete what it put past retention."""
    watermark = read_watermark(read)
    result = BatchResult(watermark_ms=watermark)
    for name in config.dropped:
        result.updates.update({key: None for key, _ in scan(window_prefix(name), None)})
    if watermark == NO_WATERMARK:
        return result
    pointer_keys = [k for w in config.windows for k in (final_key(w), retired_key(w))]
    pointers = dict(zip(pointer_keys, read(pointer_keys), strict=True))
    for spec in config.windows:
        finals, updates = close_window(spec, watermark, config.allowed_lateness_ms,
                                       config.retention_ms, pointers, scan)
        result.finals.extend(finals)
        result.updates.update(updates)
    return result
