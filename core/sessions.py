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
order that touches no session is late when its own window is final. A buyer's orders are
applied one by one in log order, each against the sessions the orders before it left, so
how the log is cut into batches does not matter.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

import orjson

from core.aggregators import ROW, State
from core.durations import format_duration_ms, parse_duration_ms
from core.models import Buyer, Order
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
    read_marks,
    row_change,
    whole_groups,
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

    @property
    def ranks_by_start(self) -> bool:
        return False  # /top ranks sessions of many starts

    def info(self) -> dict[str, int | None]:
        return {"gap_ms": self.gap_ms, "size_ms": None, "slide_ms": None}

    def spans(self, time_ms: int) -> list[Span]:
        return [Span(time_ms, time_ms + self.gap_ms)]

    def final_end_ms(self, latest_ms: int) -> int:
        return latest_ms + self.gap_ms

    def holding(self, at_ms: int) -> Span | None:
        return None

    def close(self, watermark_ms: int, lateness_ms: int, retention_ms: int, read: ReadMany,
              scan: ScanFrom, limit: int = CLOSE_ROWS) -> Closed:
        """Publish sessions whose end plus lateness the watermark reached, delete those
        past retention too, all sessions of an end at a time; each mark is the last end it
        reached, and sessions go only once published."""
        closed = Closed()
        published, retired = read_marks(self.name, read)
        final_end = watermark_ms - lateness_ms
        if published is None or final_end > published:
            ends, more = whole_groups(self._ends_between(published, final_end, scan),
                                      _end_of, limit)
            keys = [window_key(self.name, start, buyer) for _, start, buyer in ends]
            for key, value in zip(keys, read(keys), strict=True):
                if value is not None:
                    closed.finals.append(final_record(self.name, self.row(key, value)))
            published = ends[-1][0] if more else final_end
            closed.updates[final_key(self.name)] = str(published)
            closed.more |= more
        gone_end = min(final_end - retention_ms, published)
        if retired is None or gone_end > retired:
            gone, more = whole_groups(self._ends_between(retired, gone_end, scan), _end_of,
                                      limit)
            closed.updates.update(self._forget(gone, read))
            closed.updates[retired_key(self.name)] = str(gone[-1][0] if more else gone_end)
            closed.more |= more
        return closed

    def rows(self, store: ReadStore, from_ms: int | None = None) -> Iterator[StoredRow]:
        for key, value in store.scan(window_prefix(self.name)):  # any start may end later
            yield self.row(key, value)

    def rows_holding(self, store: ReadStore, at_ms: int, k: int) -> Iterator[StoredRow]:
        # every session holding `at_ms`: /top spans them all
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
        # a row deleted was merged into another session, or is past retention
        return row_change(self.name, key, value, self.row, deletes=True)

    def row(self, key: str, value: str) -> StoredRow:
        _, start_ms, buyer = parse_window_key(key)
        state, end_ms = decode_row(value, WIDTH)
        return StoredRow(start_ms, start_ms + self.gap_ms if end_ms is None else end_ms, buyer,
                         state)

    def _ends_between(self, after: int | None, last_end: int,
                      scan: ScanFrom) -> Iterator[tuple[int, int, Buyer]]:
        """(end, start, buyer) of sessions with `after < end <= last_end`, by end."""
        prefix = end_prefix(self.name)
        first = prefix if after is None else end_bound(self.name, after + 1)
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


def _end_of(session: tuple[int, int, Buyer]) -> int:
    return session[0]


def _sessions(stored: str | None) -> list[list[int]]:
    return [] if stored is None else list(orjson.loads(stored))


def fold_sessions(windows: Sequence[SessionWindow], fresh: Sequence[Fresh], lateness_ms: int,
                  read: ReadMany) -> WindowFold:
    """Fold a batch into session windows: each buyer's orders in log order, each judged
    against the sessions as the orders before it left them, as if applied one by one."""
    folded = WindowFold()
    by_buyer: dict[Buyer, list[int]] = {}
    for index, (order, _, _) in enumerate(fresh):
        by_buyer.setdefault((order.first_name, order.last_name), []).append(index)
    buyers = list(by_buyer)
    for window in windows:
        keys = [buyer_windows_key(window.name, buyer) for buyer in buyers]
        timelines = {buyer: _Timeline.of(stored) for buyer, stored in zip(buyers, read(keys),
                                                                           strict=True)}
        for buyer, indexes in by_buyer.items():
            timeline = timelines[buyer]
            for index in indexes:
                order, _, clock_ms = fresh[index]
                missed = timeline.add(window, order, clock_ms, lateness_ms)
                if missed:
                    folded.missed.setdefault(index, []).extend(missed)
        touched = [(buyer, start) for buyer, timeline in timelines.items()
                   for start in timeline.absorbed()]
        row_keys = [window_key(window.name, start, buyer) for buyer, start in touched]
        states = {at: decode_row(value, WIDTH)[0]
                  for at, value in zip(touched, read(row_keys), strict=True) if value is not None}
        for buyer, timeline in timelines.items():
            if timeline.changed:
                timeline.write(window, buyer, states, folded.updates)
    return folded


@dataclass(slots=True)
class _Session:
    """A session as a batch leaves it: the stored sessions it absorbed, the orders added."""

    start_ms: int
    end_ms: int
    stored: list[tuple[int, int]]  # (start, end) of stored sessions merged into it
    orders: list[Decimal]


@dataclass(slots=True)
class _Timeline:
    """One buyer's sessions of one window, while a batch is folded."""

    sessions: list[_Session]
    changed: bool = False

    @classmethod
    def of(cls, stored: str | None) -> "_Timeline":
        kept = [] if stored is None else orjson.loads(stored)
        return cls([_Session(start, end, [(start, end)], []) for start, end in kept])

    def add(self, window: SessionWindow, order: Order, clock_ms: int,
            lateness_ms: int) -> list[Missed]:
        """Count an order into the session it opens, extends or bridges; or return the
        windows it is late for (final sessions it touches, or its own window)."""
        time_ms, gap = order.order_time_ms, window.gap_ms
        touching = [s for s in self.sessions if s.start_ms <= time_ms + gap
                    and time_ms <= s.end_ms]
        final = [Missed(window, s.start_ms, s.end_ms) for s in touching
                 if s.end_ms + lateness_ms <= clock_ms]
        if not final and not touching and time_ms + gap + lateness_ms <= clock_ms:
            final = [Missed(window, time_ms, time_ms + gap)]
        if final:
            return final
        merged = _Session(min([time_ms, *(s.start_ms for s in touching)]),
                          max([time_ms + gap, *(s.end_ms for s in touching)]),
                          [p for s in touching for p in s.stored],
                          [p for s in touching for p in s.orders] + [order.price])
        gone = {id(s) for s in touching}
        self.sessions = sorted([s for s in self.sessions if id(s) not in gone] + [merged],
                               key=lambda s: s.start_ms)
        self.changed = True
        return []

    def absorbed(self) -> list[int]:
        """Starts of the stored sessions that orders of this batch joined."""
        return [start for s in self.sessions if s.orders for start, _ in s.stored]

    def write(self, window: SessionWindow, buyer: Buyer,
              states: dict[tuple[Buyer, int], State], updates: dict[str, str | None]) -> None:
        """The rows, end index entries and list of sessions the batch changed; the rows
        of stored sessions merged away deleted first, as the window stream tells them."""
        changed = [s for s in self.sessions if s.orders]
        starts = {s.start_ms for s in changed}
        for session in changed:
            for start, end in session.stored:
                if start not in starts:
                    updates[window_key(window.name, start, buyer)] = None
                updates[end_key(window.name, end, start, buyer)] = None
        with localcontext(MONEY_CONTEXT):
            for session in changed:
                state = _state(session, buyer, states)
                updates[window_key(window.name, session.start_ms, buyer)] = encode_row(
                    state, session.end_ms)
                updates[end_key(window.name, session.end_ms, session.start_ms, buyer)] = ""
        updates[buyer_windows_key(window.name, buyer)] = orjson.dumps(
            [[s.start_ms, s.end_ms] for s in self.sessions]).decode()


def _state(session: _Session, buyer: Buyer, states: dict[tuple[Buyer, int], State]) -> State:
    """The merged aggregator states of a session's stored parts and its new orders."""
    state: State | None = None
    for start, _ in session.stored:
        stored = states.get((buyer, start))
        if stored is None:
            continue
        if state is None:
            state = list(stored)
        else:
            ROW.merge(state, stored)
    for price in session.orders:
        if state is None:
            state = ROW.initial(price)
        else:
            ROW.add(state, price)
    assert state is not None  # a changed session has an order
    return state


def _parse_session(spec: str, rest: str) -> SessionWindow:
    gap_ms = parse_duration_ms(rest)
    if gap_ms <= 0:
        raise ValueError(f"{spec!r}: the gap must be positive")
    return SessionWindow(window_name(spec), gap_ms)


SESSION_KIND: dict[str, tuple[str, WindowParser]] = {"session": ("session:<gap>",
                                                                  _parse_session)}
