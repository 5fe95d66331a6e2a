"""Session windows (`session:<gap>`, Flink's SESSION): per buyer, each order opens
`[order_time, order_time + gap)`, and windows that intersect or touch merge, so two orders
exactly `gap` apart are one session. A session's start is its first order time and its end
its last order time plus the gap; a buyer's sessions never overlap.

State, beside the rows (`w|<window>|<start>|<buyer>`, the row's states then its end):
- the end index (`e|...`), which closing reads in end order;
- per buyer, the sessions kept (`b|...`, `[[start, end], ...]`), which a new order may join.
A row's key is its start, so a session that only grows later is updated in place, and one
whose start moves earlier is deleted and written anew (SPEC.md, Windows). Final pointers
(`f|`, `r|`) hold window ends.

Lateness, judged per order by its clock as for fixed windows: an order that touches a
session final by its clock would extend or merge a final session, and is late for it; an
order that touches no stored session is late when its own window is final. Orders of one
batch are judged against the stored sessions, not against each other, so the order in
which a batch is applied does not matter.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import localcontext
from typing import Any

import orjson

from core.aggregators import ROW, State
from core.durations import format_duration_ms, parse_duration_ms
from core.models import Buyer
from core.money import MONEY_CONTEXT
from core.schema import (
    buyer_windows_key,
    decode_row,
    encode_row,
    end_bound,
    end_key,
    end_prefix,
    final_key,
    parse_end_key,
    parse_window_key,
    retired_key,
    start_prefix,
    window_key,
    window_prefix,
)
from core.storage import ReadMany, ReadStore, ScanFrom
from core.windows import (
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
    window_name,
)

WIDTH = len(ROW.stored)


@dataclass(frozen=True, slots=True)
class SessionWindow:
    """One configured `session:<gap>`."""

    name: str
    gap_ms: int

    @property
    def kind(self) -> str:
        return "session"

    @property
    def spec(self) -> str:
        return f"session:{format_duration_ms(self.gap_ms)}"

    @property
    def reach_ms(self) -> int:
        return self.gap_ms

    @property
    def folder(self) -> Folder:
        return fold_sessions

    def info(self) -> dict[str, int | None]:
        return {"gap_ms": self.gap_ms, "size_ms": None, "slide_ms": None}

    def spans(self, time_ms: int) -> list[Span]:
        return [Span(time_ms, time_ms + self.gap_ms)]

    def final_end_ms(self, latest_ms: int) -> int:
        return latest_ms + self.gap_ms

    def holding(self, at_ms: int) -> Span | None:
        return None

    def close(self, watermark_ms: int, lateness_ms: int, retention_ms: int, read: ReadMany,
              scan: ScanFrom) -> Closed:
        """Publish sessions whose end plus lateness the watermark reached, delete those
        past retention too."""
        closed = Closed()
        published, retired = read([final_key(self.name), retired_key(self.name)])
        final_end = watermark_ms - lateness_ms
        if published is None or final_end > int(published):
            ends = list(self._ends_between(published, final_end, scan))
            keys = [window_key(self.name, start, buyer) for _, start, buyer in ends]
            for key, value in zip(keys, read(keys), strict=True):
                if value is not None:
                    closed.finals.append(final_record(self.name, self.row(key, value)))
            closed.updates[final_key(self.name)] = str(final_end)
        gone_end = final_end - retention_ms
        if retired is None or gone_end > int(retired):
            gone = list(self._ends_between(retired, gone_end, scan))
            closed.updates.update(self._forget(gone, read))
            closed.updates[retired_key(self.name)] = str(gone_end)
        return closed

    def rows(self, store: ReadStore, from_ms: int | None = None) -> Iterator[StoredRow]:
        for key, value in store.scan(window_prefix(self.name)):  # any start may end later
            yield self.row(key, value)

    def rows_holding(self, store: ReadStore, at_ms: int) -> Iterator[StoredRow]:
        stop = start_prefix(self.name, at_ms + 1)
        for key, value in store.scan(window_prefix(self.name)):
            if key >= stop:
                return
            row = self.row(key, value)
            if row.end_ms > at_ms:
                yield row

    def latest_ms(self, store: ReadStore) -> int | None:
        key = store.last_key(end_prefix(self.name))
        return None if key is None else parse_end_key(key)[0] - 1

    def change(self, key: str, value: str | None) -> RowChange | None:
        if not key.startswith(window_prefix(self.name)):
            return None
        if value is None:  # merged into another session, or past retention
            _, start_ms, buyer = parse_window_key(key)
            return RowChange(self.name, start_ms, buyer, None)
        row = self.row(key, value)
        return RowChange(self.name, row.start_ms, row.buyer, row)

    def row(self, key: str, value: str) -> StoredRow:
        _, start_ms, buyer = parse_window_key(key)
        state, end_ms = decode_row(value, WIDTH)
        return StoredRow(start_ms, start_ms + self.gap_ms if end_ms is None else end_ms, buyer,
                         state)

    def _ends_between(self, after: str | None, last_end: int,
                      scan: ScanFrom) -> Iterator[tuple[int, int, Buyer]]:
        """(end, start, buyer) of sessions with `after < end <= last_end`, by end."""
        prefix = end_prefix(self.name)
        first = prefix if after is None else end_bound(self.name, int(after) + 1)
        stop = end_bound(self.name, last_end + 1)
        for key, _ in scan(prefix, first):
            if key >= stop:
                return
            yield parse_end_key(key)

    def _forget(self, gone: list[tuple[int, int, Buyer]],
                read: ReadMany) -> dict[str, str | None]:
        """Delete sessions: their rows, end index entries and places in their buyers' lists."""
        updates: dict[str, str | None] = {}
        starts: dict[Buyer, set[int]] = {}
        for end, start, buyer in gone:
            updates[window_key(self.name, start, buyer)] = None
            updates[end_key(self.name, end, start, buyer)] = None
            starts.setdefault(buyer, set()).add(start)
        keys = [buyer_windows_key(self.name, buyer) for buyer in starts]
        for key, buyer, stored in zip(keys, starts, read(keys), strict=True):
            kept = [s for s in _sessions(stored) if s[0] not in starts[buyer]]
            updates[key] = orjson.dumps(kept).decode() if kept else None
        return updates


def _sessions(stored: str | None) -> list[list[int]]:
    return [] if stored is None else list(orjson.loads(stored))


def fold_sessions(windows: Sequence[SessionWindow], fresh: Sequence[Fresh], lateness_ms: int,
                  read: ReadMany) -> WindowFold:
    """Fold a batch into session windows: judge each order, then merge each buyer's orders
    with the stored sessions they touch."""
    folded = WindowFold()
    by_buyer: dict[Buyer, list[int]] = {}
    for index, (order, _, _) in enumerate(fresh):
        by_buyer.setdefault((order.first_name, order.last_name), []).append(index)
    buyers = list(by_buyer)
    for window in windows:
        keys = [buyer_windows_key(window.name, buyer) for buyer in buyers]
        stored = dict(zip(buyers, map(_sessions, read(keys)), strict=True))
        joins = {buyer: _judge(window, stored[buyer], [fresh[i] for i in by_buyer[buyer]],
                               by_buyer[buyer], lateness_ms, folded.missed)
                 for buyer in buyers}
        touched = sorted({(buyer, s) for buyer, (_, hit) in joins.items() for s in hit})
        row_keys = [window_key(window.name, start, buyer) for buyer, (start, _) in touched]
        states = {(buyer, start): decode_row(value, WIDTH)[0]
                  for (buyer, (start, _)), value in zip(touched, read(row_keys), strict=True)
                  if value is not None}
        for buyer, (on_time, hit) in joins.items():
            if on_time:
                _merge(window, buyer, stored[buyer], on_time, hit, states, folded.updates)
    return folded


Session = tuple[int, int]  # start, end


def _judge(window: SessionWindow, sessions: list[list[int]], orders: Sequence[Fresh],
           indexes: Sequence[int], lateness_ms: int, missed: dict[int, list[Missed]],
           ) -> tuple[list[Fresh], set[Session]]:
    """A buyer's orders that count, and the stored sessions they touch; the others are
    late, each with the sessions (or its own window) it missed."""
    gap = window.gap_ms
    on_time: list[Fresh] = []
    hit: set[Session] = set()
    for index, item in zip(indexes, orders, strict=True):
        time_ms, clock_ms = item[0].order_time_ms, item[2]
        touching = [(s, e) for s, e in sessions if s <= time_ms + gap and time_ms <= e]
        final = [Missed(window, s, e) for s, e in touching if e + lateness_ms <= clock_ms]
        if not final and not touching and time_ms + gap + lateness_ms <= clock_ms:
            final = [Missed(window, time_ms, time_ms + gap)]
        if final:
            missed.setdefault(index, []).extend(final)
        else:
            on_time.append(item)
            hit.update(touching)
    return on_time, hit


def _merge(window: SessionWindow, buyer: Buyer, sessions: list[list[int]],
           on_time: list[Fresh], hit: set[Session], states: dict[tuple[Buyer, int], State],
           updates: dict[str, str | None]) -> None:
    """Merge a buyer's counted orders with the stored sessions they touch; write the
    merged rows, and delete the rows, end index entries and list places they replace."""
    gap = window.gap_ms
    parts: list[tuple[int, int, Any]] = [(s, e, states.get((buyer, s))) for s, e in hit]
    parts += [(order.order_time_ms, order.order_time_ms + gap, order) for order, _, _ in on_time]
    parts.sort(key=lambda part: (part[0], part[1]))
    merged: list[tuple[int, int, State | None]] = []
    with localcontext(MONEY_CONTEXT):
        for start, end, item in parts:
            if merged and start <= merged[-1][1]:
                first, last, state = merged[-1]
                merged[-1] = (first, max(last, end), _folded(state, item))
            else:
                merged.append((start, end, _folded(None, item)))
    starts = {start for start, _, state in merged if state is not None}
    for start, end in sorted(hit):  # deletes first, as the window stream tells them
        if start not in starts:
            updates[window_key(window.name, start, buyer)] = None
        updates[end_key(window.name, end, start, buyer)] = None
    kept = [s for s in sessions if (s[0], s[1]) not in hit]
    for start, end, state in merged:
        if state is None:
            continue
        updates[window_key(window.name, start, buyer)] = encode_row(state, end)
        updates[end_key(window.name, end, start, buyer)] = ""
        kept.append([start, end])
    kept.sort()
    updates[buyer_windows_key(window.name, buyer)] = orjson.dumps(kept).decode()


def _folded(state: State | None, item: Any) -> State | None:
    """`item` (an order, or a stored session's state) folded into `state`."""
    if item is None:  # a stored session whose row is gone: nothing to add
        return state
    if isinstance(item, list):
        if state is None:
            return list(item)
        ROW.merge(state, item)
        return state
    if state is None:
        return ROW.initial(item.price)
    ROW.add(state, item.price)
    return state


def _parse_session(spec: str, rest: str) -> SessionWindow:
    gap_ms = parse_duration_ms(rest)
    if gap_ms <= 0:
        raise ValueError(f"{spec!r}: the gap must be positive")
    return SessionWindow(window_name(spec), gap_ms)


SESSION_KIND: dict[str, tuple[str, WindowParser]] = {"session": ("session:<gap>",
                                                                  _parse_session)}
