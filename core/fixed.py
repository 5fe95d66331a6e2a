"""Tumbling and hopping windows: fixed by time alone, so a row's key (its start) implies
its end.

Windows start at multiples of their slide since the Unix epoch (as in Flink) and hold
`[start_ms, start_ms + size_ms)`; a tumbling window is a hopping window whose slide
equals its size. Final pointers (`f|`, `r|`) hold window starts.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any, cast

import orjson

from core.aggregators import ROW, State
from core.durations import format_duration_ms, parse_duration_ms
from core.models import Buyer
from core.money import MONEY_CONTEXT
from core.ranking import first_ranked
from core.schema import (
    decode_row,
    encode_row,
    final_key,
    parse_window_key,
    retired_key,
    row_rank_prefix,
    start_prefix,
    window_prefix,
)
from core.storage import ReadMany, ReadStore, ScanFrom
from core.windows import (
    CLOSE_ROWS,
    Closed,
    Folder,
    Fresh,
    Missed,
    RowChange,
    Span,
    StoredRow,
    WindowFold,
    WindowParser,
    final_record,
    parse_window,
    parse_windows,
    read_marks,
    row_change,
    whole_groups,
    window_name,
)

WIDTH = len(ROW.stored)


@dataclass(frozen=True, slots=True)
class FixedWindow:
    """One configured `tumble:<size>` or `hop:<size>/<slide>`."""

    name: str
    kind: str  # "tumbling" or "hopping"
    size_ms: int
    slide_ms: int

    @property
    def spec(self) -> str:
        if self.kind == "tumbling":
            return f"tumble:{format_duration_ms(self.size_ms)}"
        return f"hop:{format_duration_ms(self.size_ms)}/{format_duration_ms(self.slide_ms)}"

    @property
    def reach_ms(self) -> int:
        return self.size_ms

    @property
    def folder(self) -> Folder:
        return fold_fixed

    @property
    def ranks_by_start(self) -> bool:
        return True

    def info(self) -> dict[str, int | None]:
        return {"size_ms": self.size_ms, "slide_ms": self.slide_ms}

    def spans(self, time_ms: int) -> list[Span]:
        return [Span(s, s + self.size_ms)
                for s in window_starts_ms(time_ms, self.size_ms, self.slide_ms)]

    def final_end_ms(self, latest_ms: int) -> int:
        return latest_ms - latest_ms % self.slide_ms + self.size_ms

    def holding(self, at_ms: int) -> Span:
        start_ms = window_starts_ms(at_ms, self.size_ms, self.slide_ms)[-1]
        return Span(start_ms, start_ms + self.size_ms)

    def close(self, watermark_ms: int, lateness_ms: int, retention_ms: int, read: ReadMany,
              scan: ScanFrom, limit: int = CLOSE_ROWS) -> Closed:
        """Publish rows of windows the watermark made final, delete those past retention,
        whole starts at a time; each mark is the last start it reached, and rows go only
        once published."""
        closed = Closed()
        published, retired = read_marks(self.name, read)
        newest_final = self.last_start_before_ms(watermark_ms - lateness_ms)
        if published is None or newest_final > published:
            rows, more = self._take(published, newest_final, scan, limit)
            closed.finals.extend(final_record(self.name, self.row(key, value))
                                 for key, value in rows)
            published = parse_window_key(rows[-1][0])[1] if more else newest_final
            closed.updates[final_key(self.name)] = str(published)
            closed.more |= more
        newest_gone = min(self.last_start_before_ms(watermark_ms - lateness_ms - retention_ms),
                          published)
        if retired is None or newest_gone > retired:
            rows, more = self._take(retired, newest_gone, scan, limit)
            closed.updates.update(dict.fromkeys((key for key, _ in rows), None))
            closed.updates[retired_key(self.name)] = str(
                parse_window_key(rows[-1][0])[1] if more else newest_gone)
            closed.more |= more
        return closed

    def rows(self, store: ReadStore, from_ms: int | None = None) -> Iterator[StoredRow]:
        # windows ending after from_ms start after from_ms - size
        first = None if from_ms is None else start_prefix(self.name, from_ms - self.size_ms + 1)
        for key, value in store.scan(window_prefix(self.name), first):
            yield self.row(key, value)

    def rows_holding(self, store: ReadStore, at_ms: int, k: int) -> Iterator[StoredRow]:
        # the first k of the index by count (core.ranking), not every row of the start
        start_ms = self.holding(at_ms).start_ms
        for key, value in first_ranked(store, row_rank_prefix(self.name, start_ms), k):
            yield self.row(key, value)

    def latest_ms(self, store: ReadStore) -> int | None:
        key = store.last_key(window_prefix(self.name))
        return None if key is None else parse_window_key(key)[1]

    def change(self, key: str, value: str | None) -> RowChange | None:
        # a row deleted is past retention: its final was sent before
        return row_change(self.name, key, value, self.row, deletes=False)

    def row(self, key: str, value: str) -> StoredRow:
        _, start_ms, buyer = parse_window_key(key)
        return StoredRow(start_ms, start_ms + self.size_ms, buyer, decode_row(value, WIDTH)[0])

    def last_start_before_ms(self, bound_ms: int) -> int:
        """Largest window start whose `start + size <= bound_ms`."""
        latest = bound_ms - self.size_ms
        return latest - latest % self.slide_ms

    def _take(self, mark: int | None, last_start: int, scan: ScanFrom,
              limit: int) -> tuple[list[tuple[str, str]], bool]:
        """Stored rows with `mark < start <= last_start`, in key order, whole starts up to
        about `limit` rows, and whether rows were left."""
        prefix = window_prefix(self.name)
        first = prefix if mark is None else start_prefix(self.name, mark + 1)
        stop = start_prefix(self.name, last_start + 1)
        starts = len(stop)  # a start's rows share their key up to the start

        def between() -> Iterator[tuple[str, str]]:
            for key, value in scan(prefix, first):
                if key >= stop:
                    return
                yield key, value

        return whole_groups(between(), lambda row: row[0][:starts], limit)


def window_starts_ms(time_ms: int, size_ms: int, slide_ms: int) -> range:
    """Starts of every window holding `time_ms`, oldest first.

    The latest start is `time_ms` floored to the slide (Python's floor division keeps
    this right before the epoch too); the window starting at `latest - size` ends
    exactly at `time_ms`, which `[start, end)` excludes.
    """
    latest_start_ms = time_ms - time_ms % slide_ms
    return range(latest_start_ms - size_ms + slide_ms, latest_start_ms + 1, slide_ms)


RowKey = tuple[str, int, Buyer]  # window name, start, buyer


def fold_rows(windows: Sequence[FixedWindow], fresh: Sequence[Fresh], lateness_ms: int,
              ) -> tuple[dict[RowKey, State], dict[int, list[Missed]]]:
    """Fold orders in memory into row deltas, each order late for the windows whose end
    plus lateness its clock reached.

    An order that misses no window (the usual case) is only added to its buyer's slide
    bucket, `[start, start + slide)`: every window of a slide holds whole buckets, so each
    bucket is spread over its windows' rows once per batch, not once per order.
    """
    rows: dict[RowKey, State] = {}
    missed: dict[int, list[Missed]] = {}
    slides = sorted({w.slide_ms for w in windows})
    buckets: dict[int, dict[tuple[int, Buyer], State]] = {s: {} for s in slides}
    with localcontext(MONEY_CONTEXT):
        for index, (order, _, clock_ms) in enumerate(fresh):
            time_ms = order.order_time_ms
            # The oldest window holding the order ends first: at the end of its bucket.
            if min(time_ms - time_ms % s + s for s in slides) + lateness_ms > clock_ms:
                buyer, price = (order.first_name, order.last_name), order.price
                for slide in slides:
                    _add(buckets[slide], (time_ms - time_ms % slide, buyer), price)
                continue
            for window in windows:
                for span in window.spans(time_ms):
                    if span.end_ms + lateness_ms <= clock_ms:
                        missed.setdefault(index, []).append(Missed(window, *span))
                    else:
                        _add(rows, (window.name, span.start_ms, order.buyer), order.price)
        for window in windows:
            size, slide, name = window.size_ms, window.slide_ms, window.name
            for (bucket_start, buyer), state in buckets[slide].items():
                for start in range(bucket_start - size + slide, bucket_start + 1, slide):
                    key = (name, start, buyer)
                    row = rows.get(key)
                    if row is None:
                        rows[key] = list(state)
                    else:
                        ROW.merge(row, state)
    return rows, missed


def _add(states: dict[Any, State], key: Any, price: Decimal) -> None:
    state = states.get(key)
    if state is None:
        states[key] = ROW.initial(price)
    else:
        ROW.add(state, price)


def fold_fixed(windows: Sequence[FixedWindow], fresh: Sequence[Fresh], lateness_ms: int,
               read: ReadMany) -> WindowFold:
    """Fold a batch into fixed windows and merge the deltas with the stored rows."""
    rows, missed = fold_rows(windows, fresh, lateness_ms)
    buyer_json: dict[Buyer, str] = {}
    keys = []
    for name, start, buyer in rows:
        text = buyer_json.get(buyer)
        if text is None:
            text = buyer_json[buyer] = orjson.dumps(buyer).decode()
        keys.append(start_prefix(name, start) + text)
    folded = WindowFold(missed=missed)
    with localcontext(MONEY_CONTEXT):
        for key, state, stored in zip(keys, rows.values(), read(keys), strict=True):
            if stored is not None:
                ROW.merge(state, decode_row(stored, WIDTH)[0])
            folded.updates[key] = encode_row(state)
    return folded


def _parse_tumble(spec: str, rest: str) -> FixedWindow:
    return _checked(spec, "tumbling", parse_duration_ms(rest), parse_duration_ms(rest))


def _parse_hop(spec: str, rest: str) -> FixedWindow:
    size_text, sep, slide_text = rest.partition("/")
    if not sep:
        raise ValueError(f"{spec!r}: a hopping window needs <size>/<slide>")
    return _checked(spec, "hopping", parse_duration_ms(size_text), parse_duration_ms(slide_text))


def _checked(spec: str, kind: str, size_ms: int, slide_ms: int) -> FixedWindow:
    if slide_ms <= 0 or size_ms <= 0:
        raise ValueError(f"{spec!r}: size and slide must be positive")
    if size_ms % slide_ms:
        raise ValueError(f"{spec!r}: size must be a multiple of the slide")
    return FixedWindow(window_name(spec), kind, size_ms, slide_ms)


FIXED_KINDS: dict[str, tuple[str, WindowParser]] = {
    "tumble": ("tumble:<size>", _parse_tumble),
    "hop": ("hop:<size>/<slide>", _parse_hop),
}


def parse_window_specs(text: str) -> tuple[FixedWindow, ...]:
    """A comma-separated list of tumbling and hopping windows (scripts and tests)."""
    return tuple(cast(FixedWindow, w) for w in parse_windows(text, FIXED_KINDS))


def parse_window_spec(text: str) -> FixedWindow:
    """One tumbling or hopping window."""
    return cast(FixedWindow, parse_window(text, FIXED_KINDS))
