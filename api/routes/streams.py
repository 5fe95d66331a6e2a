"""Live push with server-sent events, from any worker: every change of buyer totals, and
every final window, read from the output topics (`buyer-totals`, `window-results`), which
hold the same values in every worker's view.

Each event's id is the position after it in every partition of the topics it reads
(`0:12,1:7`, or `u0:12,f0:3` where a stream reads two topics); a client reconnecting
with `Last-Event-ID` resumes exactly there, so it misses nothing still in the topics.
Without it a stream starts at the end (live). Window streams read the aggregation
changelog, which has a record per row a batch changed (event `update`), and
`window-results` (event `final`): row updates cost no extra record.

One consumer per worker reads for every client (api.fanout): a client is a position in
a shared ring of recent records, and a record is decoded once for all clients. A client
further back than the ring (resumed from an old id, or too slow for the ring) reads
through a short-lived catch-up consumer of its own (a few at a time) until it is back on
the ring. One more than MAX_BEHIND records behind is dropped (counted in
orderstream_sse_dropped_total, logged at most once a minute), so no client slows the
worker or the others. At most SSE_MAX_CLIENTS streams are open; beyond, and while the
worker stops, `503` with `Retry-After`. Connecting and leaving log nothing.
"""

import asyncio
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, MutableMapping
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import StreamingResponse

from api.deps import FirstNameFilter, LastNameFilter, ServiceDep, WindowName
from api.fanout import (
    HubStopped,
    HubUnavailable,
    Lease,
    Position,
    StreamEnded,
    StreamHub,
    raise_fd_limit,
)
from api.fanout_ring import Entry
from api.schemas import ErrorDetail
from core.closing import row_update
from core.windows import Window

router = APIRouter(tags=["streams"])
KEEPALIVE_S = 1.0  # a comment after this long without an event
RETRY_AFTER_S = 5  # clients leave one by one: a full worker frees a place slowly
STREAM: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "server-sent events"},
    503: {"model": ErrorDetail,
          "description": "SSE_MAX_CLIENTS streams are open, or the broker does not answer"}}

_POSITION = re.compile(r"([a-z]?)([0-9]{1,9}):([0-9]{1,19})")  # ASCII, and int() can read it


def parse_event_id(text: str | None) -> dict[Position, int]:
    """`0:12,1:7` -> {("", 0): 12, ("", 1): 7}; 400 naming the header when malformed."""
    if not text:
        return {}
    found = [_POSITION.fullmatch(part) for part in text.split(",", 4096)]
    if not all(found):
        shown = text if len(text) <= 100 else text[:100] + "…"
        raise HTTPException(400, f"Last-Event-ID {shown!r} is not like 0:12,1:7")
    return {(m[1], int(m[2])): int(m[3]) for m in found if m}


def event_id(positions: Mapping[Position, int]) -> str:
    return ",".join(f"{tag}{p}:{o}" for (tag, p), o in sorted(positions.items()))


async def get_hub(request: Request, service: ServiceDep) -> StreamHub:
    """The API's stream hub, made on the API's loop with its first stream (async: a plain
    function would run in the thread pool, and the hub belongs to the loop)."""
    hub: StreamHub | None = getattr(request.app.state, "sse_hub", None)
    if hub is None:
        raise_fd_limit()
        settings = service.settings
        hub = request.app.state.sse_hub = StreamHub(
            settings.kafka_client, service.metrics, settings.sse_max_clients,
            stopping=lambda: service.should_stop)
    return hub


HubDep = Annotated[StreamHub, Depends(get_hub)]
# ASGI's types as starlette spells them (starlette comes with fastapi, not declared itself)
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Event = tuple[bytes, bytes]  # (event name, data as JSON)
Expand = Callable[[Entry], list[Event]]  # a record -> the events it holds for one client


class EventStream(StreamingResponse):
    """A stream that gives its client's place back however it ends, even unstarted."""

    def __init__(self, content: AsyncIterator[bytes], lease: Lease) -> None:
        super().__init__(content, media_type="text/event-stream",
                         headers={"Cache-Control": "no-cache"})
        self._lease = lease

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._lease.close()


async def _open(hub: StreamHub, sources: Mapping[str, str],
                positions: Mapping[Position, int], expand: Mapping[str, Expand]) -> EventStream:
    """A client's stream (tag -> topic), once its start is fixed; 503 when it cannot be."""
    retry = {"Retry-After": str(RETRY_AFTER_S)}
    try:
        lease = hub.admit(sources)
    except HubUnavailable as error:  # full, or stopping
        raise HTTPException(503, str(error), headers=retry) from None
    try:
        await lease.start(positions)
    except HubUnavailable as error:
        lease.close()
        raise HTTPException(503, str(error), headers=retry) from None
    except BaseException:
        lease.close()
        raise
    return EventStream(_events(hub, lease, expand), lease)


async def _events(hub: StreamHub, lease: Lease,
                  expand: Mapping[str, Expand]) -> AsyncIterator[bytes]:
    """`: connected`, then the client's events, a chunk per read, and keep-alives."""
    clock = asyncio.get_running_loop().time
    try:
        yield b": connected\n\n"
        written = clock()
        while True:
            entries = await lease.read(max(0.0, written + KEEPALIVE_S - clock()))
            chunk = _render(lease, entries, expand)
            # asyncio runs a timer up to its clock's resolution early: allow for it
            if chunk or clock() - written >= KEEPALIVE_S * 0.95:
                yield chunk or b": keep-alive\n\n"
                written = clock()
    except StreamEnded as error:
        hub.ended(error)
    except HubStopped:
        pass
    finally:
        lease.close()


def _render(lease: Lease, entries: list[Entry], expand: Mapping[str, Expand]) -> bytes:
    """The events of `entries`, moving the client's positions past each.

    Events of one record but its last carry the position of the record itself, so a
    client resuming from one of them reads the record again: at least once, never lost.
    """
    positions, out = lease.positions, []
    for entry in entries:
        tag = lease.tags[entry.topic]
        key = (tag, entry.partition)
        events = expand[tag](entry)
        for index, (name, data) in enumerate(events):
            positions[key] = entry.offset + (1 if index == len(events) - 1 else 0)
            out.append(b"id: %s\nevent: %s\ndata: %s\n\n"
                       % (event_id(positions).encode(), name, data))
        positions[key] = entry.offset + 1
    return b"".join(out)


def _named(first_name: str | None, last_name: str | None, first: str, last: str) -> bool:
    return (first_name is None or first == first_name) and (last_name is None or last == last_name)


def _with_event(value: bytes, name: str) -> bytes:
    return orjson.dumps({**orjson.loads(value), "event": name})


@router.get("/buyers/stream", response_class=StreamingResponse, responses=STREAM)
async def stream_buyers(
    service: ServiceDep, hub: HubDep,
    first_name: FirstNameFilter = None, last_name: LastNameFilter = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Every change of buyer totals (event `update`, data as a /buyers item), in order per
    buyer; optionally one buyer's only."""
    positions = parse_event_id(last_event_id)

    def updates(entry: Entry) -> list[Event]:
        if entry.key is None or entry.value is None:
            return []
        first, last = entry.memoized("buyer", lambda: tuple(orjson.loads(entry.key or b"")))
        if not _named(first_name, last_name, first, last):
            return []
        value = entry.value
        return [(b"update", entry.memoized("update", lambda: _with_event(value, "update")))]

    return await _open(hub, {"": service.topics.buyer_totals}, positions, {"": updates})


def _rendered_rows(entry: Entry, spec: Window,
                   specs: Iterable[Window]) -> list[tuple[str, str, bytes, bytes]]:
    """(first, last, event, data) of the row of window `spec` a changelog record set or
    deleted (`update` or `delete`), if any."""
    change = entry.memoized("row", lambda: row_update(entry.key, entry.value, specs))
    if change is None or change.window != spec.name:
        return []
    first, last = change.buyer
    event = "update" if change.row is not None else "delete"
    return [(first, last, event.encode(), orjson.dumps({**change.as_json(), "event": event}))]


@router.get("/windows/{name}/stream", response_class=StreamingResponse, responses=STREAM)
async def stream_window(
    service: ServiceDep, hub: HubDep, name: WindowName,
    first_name: FirstNameFilter = None, last_name: LastNameFilter = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Every change of a row of window `name` (event `update`), every row as it becomes
    final (event `final`), data as a /windows item, and for session windows every row that
    went away (event `delete`: its window_start and buyer)."""
    specs = {w.name: w for w in service.settings.windows}
    if name not in specs:
        raise HTTPException(404, f"unknown window {name!r}")
    spec = specs[name]
    positions = parse_event_id(last_event_id)

    def updates(entry: Entry) -> list[Event]:
        """Rows of the window a batch changed, from its changelog record."""
        rows = entry.memoized(f"rows:{name}", lambda: _rendered_rows(entry, spec, specs.values()))
        return [(event, data) for first, last, event, data in rows
                if _named(first_name, last_name, first, last)]

    def finals(entry: Entry) -> list[Event]:
        if entry.key is None or entry.value is None:
            return []
        window, _, first, last = entry.memoized("final", lambda: orjson.loads(entry.key or b""))
        if window != name or not _named(first_name, last_name, first, last):
            return []
        value = entry.value
        return [(b"final", entry.memoized("data", lambda: _with_event(value, "final")))]

    names = service.topics
    return await _open(hub, {"u": names.aggregate_changelog, "f": names.window_results},
                       positions, {"u": updates, "f": finals})
