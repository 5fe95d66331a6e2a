"""Window kinds as a protocol, like quix-streams' `windows/base.py` and Bytewax's
`Windower`: the rest of the job folds, closes and reads windows only through `Window`.

A kind is one class implementing it (core.fixed: tumbling and hopping; core.sessions:
session), registered with the settings parser by the composition root. Times are epoch
ms; a window holds `[start_ms, end_ms)`.
"""

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, NamedTuple, Protocol, TypeVar

from core import jsonbytes
from core.aggregators import COUNT, ROW
from core.models import Buyer, Order, WindowResult, buyer_json
from core.schema import final_key, parse_window_key, retired_key, window_prefix
from core.storage import ReadMany, ReadStore, ScanFrom
from core.timefmt import format_time_ms

Fresh = tuple[Order, bytes | None, int]  # an order to apply, its key, its late clock
T = TypeVar("T")

# Rows one step of closing takes (to publish, or to delete past retention) before it stops
# at the next whole window start (or session end), so a step's work and memory stay
# bounded however far one watermark moves: a 1M-order run over 100k buyers closed up to
# 67k rows per partition at once, and its Python objects set the worker's RSS
# (`make bench-state`, memory; BENCHMARKS.md). The caller repeats the step until done.
CLOSE_ROWS = 5_000


class Span(NamedTuple):
    """A window's extent, `[start_ms, end_ms)`."""

    start_ms: int
    end_ms: int


class Missed(NamedTuple):
    """A window an order came too late for."""

    window: "Window"
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One window row as a store holds it: its window, buyer and the aggregators' state
    as stored (core.schema), `final` by the store's watermark."""

    start_ms: int
    end_ms: int
    buyer: Buyer
    state: list[Any]

    @property
    def count(self) -> int:
        return int(self.state[COUNT])

    def as_json(self, final: bool) -> dict[str, object]:
        """The row as in the API and on window-results."""
        return {"window_start": _window_time(self.start_ms),
                "window_end": _window_time(self.end_ms),
                "buyer": buyer_json(*self.buyer), **ROW.results(self.state), "final": final}


# A window's start and end repeat in every row of it: format each once.
_window_time = lru_cache(maxsize=4096)(format_time_ms)


def final_record(window: str, row: StoredRow) -> WindowResult:
    """The window-results record of a row made final."""
    return (jsonbytes.dumps([window, row.start_ms, *row.buyer]),
            jsonbytes.dumps(row.as_json(final=True)))


@dataclass(slots=True)
class WindowFold:
    """What folding a batch into the windows of one kind changes: store updates, and per
    order (by its index in the batch) the windows it missed."""

    updates: dict[str, str | None] = field(default_factory=dict)
    missed: dict[int, list[Missed]] = field(default_factory=dict)


@dataclass(slots=True)
class Closed:
    """What a watermark does to one window: rows made final (window-results records) and
    the updates recording it, rows past retention deleted; `more` when the step stopped
    at its row limit with rows left to close."""

    finals: list[WindowResult] = field(default_factory=list)
    updates: dict[str, str | None] = field(default_factory=dict)
    more: bool = False


def whole_groups(items: Iterable[T], group: Callable[[T], Hashable],
                 limit: int) -> tuple[list[T], bool]:
    """The first items, in order, up to the end of the group in which `limit` is reached
    (a group is never cut: a close's mark names whole starts or ends), and whether any
    were left."""
    taken: list[T] = []
    last: Hashable = None
    for item in items:
        this = group(item)
        if len(taken) >= limit and this != last:
            return taken, True
        taken.append(item)
        last = this
    return taken, False


def read_marks(name: str, read: ReadMany) -> tuple[int | None, int | None]:
    """The marks closing keeps for window `name`: the last start (or end) it published
    as final, and the last whose rows it deleted; None before the first."""
    published, retired = read([final_key(name), retired_key(name)])
    return (None if published is None else int(published),
            None if retired is None else int(retired))


@dataclass(frozen=True, slots=True)
class RowChange:
    """A window row as one aggregation changelog record left it: `row` None when the record
    deleted it (`start_ms` and `buyer` say which)."""

    window: str
    start_ms: int
    buyer: Buyer
    row: StoredRow | None

    def as_json(self) -> dict[str, object]:
        """An updated row as a /windows item; a deleted one as its start and buyer."""
        if self.row is None:
            return {"window_start": _window_time(self.start_ms),
                    "buyer": buyer_json(*self.buyer)}
        return self.row.as_json(final=False)


def row_change(window: str, key: str, value: str | None,
               row: Callable[[str, str], StoredRow], *, deletes: bool) -> RowChange | None:
    """What a changelog record did to a row of `window`, read by its kind's `row`; a
    delete only where the kind reports them (`deletes`); None for another key."""
    if not key.startswith(window_prefix(window)) or (value is None and not deletes):
        return None
    if value is None:
        _, start_ms, buyer = parse_window_key(key)
        return RowChange(window, start_ms, buyer, None)
    changed = row(key, value)
    return RowChange(window, changed.start_ms, changed.buyer, changed)


class Folder(Protocol):
    """Folds a batch into the windows of one kind together (fixed windows share slide
    buckets), against the store for what a kind must look up (sessions to merge)."""

    def __call__(self, windows: Sequence[Any], fresh: Sequence[Fresh], lateness_ms: int,
                 read: ReadMany) -> WindowFold: ...


class Window(Protocol):
    """A configured window of some kind."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> str: ...  # "tumbling", "hopping", "session": /windows shows it

    @property
    def spec(self) -> str: ...  # as written in WINDOWS

    @property
    def reach_ms(self) -> int:
        """How far past an order its windows may end before it merges with others: at
        least this much retention after lateness keeps every window an order may join."""
        ...

    @property
    def folder(self) -> Folder: ...

    @property
    def ranks_by_start(self) -> bool:
        """True where `/top` ranks the rows of one window start: the index by count keeps
        them ranked (core.ranking)."""
        ...

    def info(self) -> dict[str, int | None]:
        """The kind's fields in `GET /windows` (size_ms, slide_ms, gap_ms)."""
        ...

    def spans(self, time_ms: int) -> list[Span]:
        """The windows an order at `time_ms` opens or joins, before any merging."""
        ...

    def final_end_ms(self, latest_ms: int) -> int:
        """The largest end of a window holding an order at `latest_ms`, the latest order:
        the watermark at which (plus lateness) every window with data is final."""
        ...

    def holding(self, at_ms: int) -> Span | None:
        """The window /top ranks for `at_ms`: the latest holding it, where a kind's windows
        are fixed by time alone; None where they come from the data (sessions)."""
        ...

    def close(self, watermark_ms: int, lateness_ms: int, retention_ms: int, read: ReadMany,
              scan: ScanFrom, limit: int = CLOSE_ROWS) -> Closed:
        """Publish rows the watermark made final, delete those past retention: at most
        about `limit` of each per call (`Closed.more`: call again)."""
        ...

    def rows(self, store: ReadStore, from_ms: int | None = None) -> Iterator[StoredRow]:
        """Rows by window start, from those that may end after `from_ms` (not filtered)."""
        ...

    def rows_holding(self, store: ReadStore, at_ms: int, k: int) -> Iterator[StoredRow]:
        """Rows /top ranks for `at_ms`, at least the first `k` by rank among them."""
        ...

    def latest_ms(self, store: ReadStore) -> int | None:
        """The time /top without `at` looks at, as far as this store knows."""
        ...

    def change(self, key: str, value: str | None) -> RowChange | None:
        """The row of this window a changelog record set or deleted; None for other keys
        and for deletes nobody follows (a fixed window's rows past retention)."""
        ...


WindowParser = Callable[[str, str], Window]  # (whole spec, text after "kind:") -> window


def window_name(spec: str) -> str:
    """`hop:1m/10s` -> `hop_1m_10s`."""
    return spec.replace(":", "_").replace("/", "_")


def parse_windows(text: str, kinds: Mapping[str, tuple[str, WindowParser]]) -> tuple[Window, ...]:
    """Parse a comma-separated WINDOWS value with the kinds by prefix (each with its form,
    `tumble:<size>`); ValueError says what is wrong. Names must be unique."""
    specs = tuple(parse_window(part, kinds) for part in text.split(",") if part.strip())
    if not specs:
        raise ValueError("at least one window is needed")
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"window {duplicates[0]} is configured twice")
    return specs


def parse_window(text: str, kinds: Mapping[str, tuple[str, WindowParser]]) -> Window:
    """Parse one spec with the kinds by prefix."""
    spec = text.strip()
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in kinds:
        raise ValueError(f"{spec!r} is not " + " or ".join(form for form, _ in kinds.values()))
    return kinds[kind][1](spec, rest)


def by_folder(windows: Sequence[Window]) -> list[tuple[Folder, list[Window]]]:
    """Windows grouped by the folder that folds them together, in configured order."""
    groups: dict[Folder, list[Window]] = {}
    for window in windows:
        groups.setdefault(window.folder, []).append(window)
    return list(groups.items())
