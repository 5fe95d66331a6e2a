"""How the agents take their input: whole fetches per partition, acked by hand."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from app.producer import Outgoing
from app.runtime import Runtime
from tables.changelog import encode_updates
from tables.manager import StoreManager
from tables.store import PartitionStore, Updates

PartitionHandler = Callable[[int, list[Any]], Awaitable[None]]
LANE_DEPTH = 2  # batches waiting per partition: enough to keep a lane busy


async def each_batch(stream: faust.StreamT[Any], runtime: Runtime, handle: PartitionHandler,
                     to_item: Callable[[Any], Any] | None = None) -> None:
    """Hand each fetched batch (one partition's records, see `app.transport`, each passed
    through `to_item` if given) to `handle`; ack it only once handled.

    Each partition has its own lane: its batches are handled one after another, while
    other partitions' batches are handled meanwhile, so one partition's wait for the
    broker's acknowledgement does not stall the others. An error stops the worker with
    the batch unacked: it is read again after a restart, and the offsets kept in the
    stores make that harmless.
    """
    lanes: dict[int, asyncio.Queue[Any]] = {}
    tasks: list[asyncio.Task[None]] = []

    async def lane(partition: int, queue: asyncio.Queue[Any]) -> None:
        while True:
            event = await queue.get()
            try:
                records = event.value
                await handle(partition, records if to_item is None else
                             [to_item(record) for record in records])
            except Exception as error:  # noqa: BLE001 - the worker must stop, not skip it
                runtime.fail(error)
                return
            await stream.ack(event)

    try:
        async for event in stream.noack().events():
            partition = event.message.partition
            queue = lanes.get(partition)
            if queue is None:
                queue = lanes[partition] = asyncio.Queue(maxsize=LANE_DEPTH)
                tasks.append(asyncio.create_task(lane(partition, queue)))
            await queue.put(event)
    finally:
        for task in tasks:
            task.cancel()


async def commit_durably(runtime: Runtime, stores: StoreManager, partition: int,
                         store: PartitionStore, updates: Updates, outputs: list[Outgoing]) -> None:
    """The rule both stages follow: a batch's changelog record and outputs first; once the
    broker has them all, the store commits (with the changelog offset it now reflects)."""
    sent = await runtime.producer.send_all(
        [(stores.changelog_topic, None, encode_updates(updates), partition), *outputs])
    store.commit(updates, changelog_offset=sent[0].offset)
