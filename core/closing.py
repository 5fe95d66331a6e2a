"""Closing windows as the watermark moves: publish each final window once, then forget it.

A window is final once the watermark reaches `end + ALLOWED_LATENESS`; its rows go to
window-results once, and `f|<window>` remembers the last start published. Rows are
deleted once the watermark reaches `end + ALLOWED_LATENESS + WINDOW_RETENTION`;
`r|<window>` remembers the last start deleted.

This runs on committed state only, after the batch that moved the watermark is durable:
a final row can then never change, so publishing it again after a crash repeats the
same value, and a replay (which moves no watermark) publishes nothing.
"""

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache

from core import jsonbytes
from core.models import Buyer, WindowResult
from core.money import average, money_str
from core.schema import (
    decode_row,
    final_key,
    parse_window_key,
    retired_key,
    start_prefix,
    window_prefix,
)
from core.sinks import buyer_json
from core.storage import ScanFrom
from core.timefmt import format_time_ms
from core.windows import WindowSpec

# A window's start and end repeat in every row of it: format each once.
_window_time = lru_cache(maxsize=4096)(format_time_ms)


def last_start_before_ms(bound_ms: int, spec: WindowSpec) -> int:
    """Largest window start whose `start + size <= bound_ms`."""
    latest = bound_ms - spec.size_ms
    return latest - latest % spec.slide_ms


@dataclass(frozen=True, slots=True)
class RowUpdate:
    """A window row as one aggregation changelog record sets it: the row-update format
    the live push reads (the store's key layout stays core.schema's)."""

    window: str
    buyer: Buyer
    key: str
    value: str

    def as_json(self, spec: WindowSpec) -> dict[str, object]:
        return row_json(spec, self.key, self.value, final=False)


def row_update(key: bytes | None, value: bytes | None,
               windows: Iterable[WindowSpec]) -> RowUpdate | None:
    """The row of one of `windows` a changelog record set; None for a deleted row, a
    commit marker, any other key of the store, or another window's row."""
    if key is None or value is None:
        return None
    text = key.decode()
    for spec in windows:
        if text.startswith(window_prefix(spec.name)):
            name, _, buyer = parse_window_key(text)
            return RowUpdate(name, buyer, text, value.decode())
    return None


def row_json(spec: WindowSpec, key: str, value: str, final: bool) -> dict[str, object]:
    """A window row as in the API and on window-results."""
    _, start_ms, (first, last) = parse_window_key(key)
    count, price_sum, low, high = decode_row(value)
    return {
        "window_start": _window_time(start_ms),
        "window_end": _window_time(start_ms + spec.size_ms),
        "buyer": buyer_json(first, last),
        "count": count,
        "sum_price": money_str(price_sum),
        "min_price": money_str(low),
        "max_price": money_str(high),
        "avg_price": money_str(average(price_sum, count)),
        "final": final,
    }


def _rows_between(spec: WindowSpec, after_start: int | None, last_start: int,
                  scan: ScanFrom) -> Iterator[tuple[str, str]]:
    """Stored rows with `after_start < start <= last_start`, in key order."""
    prefix = window_prefix(spec.name)
    first_key = prefix if after_start is None else start_prefix(spec.name, after_start + 1)
    stop = start_prefix(spec.name, last_start + 1)
    for key, value in scan(prefix, first_key):
        if key >= stop:
            return
        yield key, value


def close_window(
    spec: WindowSpec, watermark_ms: int, lateness_ms: int, retention_ms: int,
    pointers: Mapping[str, str | None], scan: ScanFrom,
) -> tuple[list[WindowResult], dict[str, str | None]]:
    """Rows that became final (window-results records), and the updates closing them."""
    results: list[WindowResult] = []
    updates: dict[str, str | None] = {}
    published = pointers.get(final_key(spec.name))
    newest_final = last_start_before_ms(watermark_ms - lateness_ms, spec)
    if published is None or newest_final > int(published):
        after = None if published is None else int(published)
        for key, value in _rows_between(spec, after, newest_final, scan):
            _, start_ms, (first, last) = parse_window_key(key)
            results.append((jsonbytes.dumps([spec.name, start_ms, first, last]),
                            jsonbytes.dumps(row_json(spec, key, value, final=True))))
        updates[final_key(spec.name)] = str(newest_final)
    retired = pointers.get(retired_key(spec.name))
    newest_gone = last_start_before_ms(watermark_ms - lateness_ms - retention_ms, spec)
    if retired is None or newest_gone > int(retired):
        after = None if retired is None else int(retired)
        updates.update({key: None for key, _ in _rows_between(spec, after, newest_gone, scan)})
        updates[retired_key(spec.name)] = str(newest_gone)
    return results, updates

