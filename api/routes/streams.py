"""Live push with server-sent events, from any worker: every change of buyer totals, and
every final window, read from the output topics (`buyer-totals`, `window-results`), which
hold the same values in every worker's view.

Each event's id is the position after it in every partition of the topics it reads
(`0:12,1:7`, or `u0:12,f0:3` where a stream reads two topics); a client reconnecting
with `Last-Event-ID` resumes exactly there, so it misses nothing still in the topics.
Without it a stream starts at the end (live). Window streams read the window updates
(event `update`) and `window-results` (event `final`).
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

from api.deps import RuntimeDep
from app.runtime import Runtime

log = logging.getLogger(__name__)
router = APIRouter(tags=["streams"])
MAX_BEHIND = 100_000
STREAM = {200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}}


Position = tuple[str, int]  # (source tag, partition)
_POSITION = re.compile(r"([a-z]?)(\d+):(\d+)")


def parse_event_id(text: str | None) -> dict[Position, int]:
    """`0:12,1:7` -> {("", 0): 12, ("", 1): 7}; 400 naming the header when malformed."""
    if not text:
        return {}
    found = [_POSITION.fullmatch(part) for part in text.split(",")]
    if not all(found):
        raise HTTPException(400, f"Last-Event-ID {text!r} is not like 0:12,1:7")
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


async def _events(request: Request, runtime: Runtime, sources: Mapping[str, str],
                  kinds: Mapping[str, str], positions: dict[Position, int],
                  keep: Callable[[Any, Any], bool]) -> AsyncIterator[bytes]:
    """Events of the sources (tag -> topic), each of the kind its tag names."""
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
                kind = kinds[tag]
                for record in records:
                    positions[(tag, tp.partition)] = record.offset + 1
                    key, value = orjson.loads(record.key), orjson.loads(record.value)
                    if keep(key, value):
                        data = orjson.dumps({**value, "event": kind}).decode()
                        yield (f"id: {event_id(positions)}\nevent: {kind}\n"
                               f"data: {data}\n\n").encode()
    finally:
        metrics.sse_clients.dec()
        await consumer.stop()


@router.get("/buyers/stream", response_class=StreamingResponse, responses=STREAM)
async def stream_buyers(
    request: Request, runtime: RuntimeDep,
    first_name: str | None = None, last_name: str | None = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Every change of buyer totals (event `update`, data as a /buyers item), in order per
    buyer; optionally one buyer's only."""
    positions = parse_event_id(last_event_id)

    def keep(key: Any, value: Any) -> bool:
        return ((first_name is None or key[0] == first_name)
                and (last_name is None or key[1] == last_name))

    return StreamingResponse(
        _events(request, runtime, {"": runtime.names.buyer_totals}, {"": "update"}, positions,
                keep), media_type="text/event-stream")


@router.get("/windows/{name}/stream", response_class=StreamingResponse, responses=STREAM)
async def stream_window(
    request: Request, runtime: RuntimeDep, name: str,
    first_name: str | None = None, last_name: str | None = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
) -> StreamingResponse:
    """Every change of a row of window `name` (event `update`) and every row as it becomes
    final (event `final`), data as a /windows item."""
    if name not in {w.name for w in runtime.settings.windows}:
        raise HTTPException(404, f"unknown window {name!r}")
    positions = parse_event_id(last_event_id)

    def keep(key: Any, value: Any) -> bool:
        return (key[0] == name and (first_name is None or key[2] == first_name)
                and (last_name is None or key[3] == last_name))

    names = runtime.names
    return StreamingResponse(
        _events(request, runtime, {"u": names.window_updates, "f": names.window_results},
                {"u": "update", "f": "final"}, positions, keep),
        media_type="text/event-stream")
