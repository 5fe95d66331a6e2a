"""Live push with server-sent events, from any worker: every change of buyer totals, and
every final window, read from the output topics (`buyer-totals`, `window-results`), which
hold the same values in every worker's view.

Each event's id is the position after it in every partition of the topics it reads
(`0:12,1:7`, or `u0:12,f0:3` where a stream reads two topics); a client reconnecting
with `Last-Event-ID` resumes exactly there, so it misses nothing still in the topics.
Without it a stream starts at the end (live). Window streams read the aggregation
changelog, whose records hold every row a batch changed (event `update`), and
`window-results` (event `final`): row updates cost no extra record.
Each client reads at its own pace through its own consumer; one that falls more than
MAX_BEHIND records behind is dropped (logged and counted), so no client slows the worker.
"""

import logging
import re
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Annotated, Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.responses import StreamingResponse

from api.deps import FirstNameFilter, LastNameFilter, RuntimeDep, WindowName
from app.runtime import Runtime
from core.aggregate import parse_window_key, window_prefix
from core.closing import row_json
from tables.changelog import decode_updates

log = logging.getLogger(__name__)
router = APIRouter(tags=["streams"])
MAX_BEHIND = 100_000
STREAM = {200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}}


Position = tuple[str, int]  # (source tag, partition)
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


async def _open(runtime: Runtime, sources: Mapping[str, str],
                positions: dict[Position, int]) -> AIOKafkaConsumer:
    """A consumer on every partition of the sources (tag -> topic), at the positions given,
    else at the end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=runtime.settings.broker_urls, group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    tps = {TopicPartition(topic, p): tag for tag, topic in sources.items()
           for p in sorted(consumer.partitions_for_topic(topic) or ())}
    consumer.assign(list(tps))
    ends = await consumer.end_offsets(list(tps))
    for tp, tag in tps.items():
        consumer.seek(tp, positions.get((tag, tp.partition), ends[tp]))
        positions.setdefault((tag, tp.partition), ends[tp])
    return consumer


Expand = Callable[[Any], list[dict[str, Any]]]  # a record -> the events it holds


async def _events(request: Request, runtime: Runtime, sources: Mapping[str, str],
                  expand: Mapping[str, Expand],
                  positions: dict[Position, int]) -> AsyncIterator[bytes]:
    """Events of the sources (tag -> topic), as each tag's `expand` reads its records.

    Events of one record but its last carry the position of the record itself, so a
    client resuming from one of them reads the record again: at least once, never lost.
    """
    metrics = runtime.metrics
    tags = {topic: tag for tag, topic in sources.items()}
    consumer = await _open(runtime, sources, positions)
    metrics.sse_clients.inc()
    try:
        yield b": connected\n\n"
        while not await request.is_disconnected():
            batch = await consumer.getmany(timeout_ms=1000, max_records=500)
            if not batch:
                yield b": keep-alive\n\n"
                continue
            for tp, records in batch.items():
                behind = (consumer.highwater(tp) or 0) - records[-1].offset
                if behind > MAX_BEHIND:
                    log.warning("dropped a slow %s stream client %d records behind",
                                tp.topic, behind)
                    metrics.sse_dropped.inc()
                    return
                tag = tags[tp.topic]
                for record in records:
                    items = expand[tag](record)
                    for index, item in enumerate(items):
                        last = index == len(items) - 1
                        positions[(tag, tp.partition)] = record.offset + (1 if last else 0)
                        yield (f"id: {event_id(positions)}\nevent: {item['event']}\n"
                               f"data: {orjson.dumps(item).decode()}\n\n").encode()
                    positions[(tag, tp.partition)] = record.offset + 1
    finally:
        metrics.sse_clients.dec()
        await consumer.stop()


def _named(first_name: str | None, last_name: str | None, first: str, last: str) -> bool:
    return (first_name is None or first == first_name) and (last_name is None or last == last_name)


@router.get("/buyers/stream", response_class=StreamingResponse, responses=STREAM)
async def stream_buyers(
    request: Request, runtime: RuntimeDep,
    first_name: FirstNameFilter = None, last_name: LastNameFilter = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Every change of buyer totals (event `update`, data as a /buyers item), in order per
    buyer; optionally one buyer's only."""
    positions = parse_event_id(last_event_id)

    def updates(record: Any) -> list[dict[str, Any]]:
        first, last = orjson.loads(record.key)
        if not _named(first_name, last_name, first, last):
            return []
        return [{**orjson.loads(record.value), "event": "update"}]

    return StreamingResponse(
        _events(request, runtime, {"": runtime.names.buyer_totals}, {"": updates}, positions),
        media_type="text/event-stream")


@router.get("/windows/{name}/stream", response_class=StreamingResponse, responses=STREAM)
async def stream_window(
    request: Request, runtime: RuntimeDep, name: WindowName,
    first_name: FirstNameFilter = None, last_name: LastNameFilter = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Every change of a row of window `name` (event `update`) and every row as it becomes
    final (event `final`), data as a /windows item."""
    specs = {w.name: w for w in runtime.settings.windows}
    if name not in specs:
        raise HTTPException(404, f"unknown window {name!r}")
    spec, prefix = specs[name], window_prefix(name)
    positions = parse_event_id(last_event_id)

    def updates(record: Any) -> list[dict[str, Any]]:
        """Rows of the window a batch changed, from its changelog record."""
        items = []
        for key, value in decode_updates(record.value).items():
            if value is not None and key.startswith(prefix):
                _, _, (first, last) = parse_window_key(key)
                if _named(first_name, last_name, first, last):
                    items.append({**row_json(spec, key, value, final=False), "event": "update"})
        return items

    def finals(record: Any) -> list[dict[str, Any]]:
        window, _, first, last = orjson.loads(record.key)
        if window != name or not _named(first_name, last_name, first, last):
            return []
        return [{**orjson.loads(record.value), "event": "final"}]

    names = runtime.names
    return StreamingResponse(
        _events(request, runtime, {"u": names.aggregate_changelog, "f": names.window_results},
                {"u": updates, "f": finals}, positions),
        media_type="text/event-stream")
