"""How the agents take their input: whole fetches per partition, acked by hand."""

from collections.abc import Awaitable, Callable
from typing import Any

import faust

from app.producer import Outgoing
from app.runtime import Runtime
from tables.changelog import encode_updates
from tables.manager import StoreManager
from tables.store import PartitionStore, Updates

PartitionHandler = Callable[[int, list[Any]], Awaitable[None]]


async def each_batch(stream: faust.StreamT[Any], runtime: Runtime,
                     to_item: Callable[[Any], Any], handle: PartitionHandler) -> None:
    """Hand each fetched batch (one partition's records, see `app.transport`) to `handle`;
    ack it only once handled.

    An error stops the worker with the batch unacked: it is read again after a restart,
    and the offsets kept in the stores make that harmless.
    """
    async for event in stream.noack().events():
        try:
            await handle(event.message.partition, [to_item(record) for record in event.value])
        except Exception as error:  # noqa: BLE001 - the worker must stop, not skip the batch
            runtime.fail(error)
            return
        await stream.ack(event)


async def commit_durably(runtime: Runtime, stores: StoreManager, partition: int,
                         store: PartitionStore, updates: Updates, outputs: list[Outgoing]) -> None:
    """The rule both stages follow: a batch's changelog record and outputs first; once the
    broker has them all, the store commits (with the changelog offset it now reflects)."""
    sent = await runtime.producer.send_all(
        [(stores.changelog_topic, None, encode_updates(updates), partition), *outputs])
    store.commit(updates, changelog_offset=sent[0].offset)
