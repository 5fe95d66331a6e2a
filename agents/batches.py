"""How the agents take their input: batches of events, per partition, acked by hand."""

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from app.runtime import Runtime

PartitionHandler = Callable[[int, list[Any]], Awaitable[None]]


async def each_batch(
    stream: faust.StreamT[Any], runtime: Runtime, size: int, within_s: float,
    to_item: Callable[[Any], Any], handle: PartitionHandler,
) -> None:
    """Hand each batch, split by partition, to `handle`; ack it only once handled.

    An error stops the worker with the batch unacked: it is read again after a restart,
    and the offsets kept in the stores make that harmless.
    """
    async for events in stream.noack_take(size, within=within_s):
        by_partition: dict[int, list[Any]] = defaultdict(list)
        for event in events:
            by_partition[event.message.partition].append(to_item(event.message))
        try:
            for partition, items in by_partition.items():
                await handle(partition, items)
        except Exception as error:  # noqa: BLE001 - the worker must stop, not skip the batch
            runtime.fail(error)
            return
        for event in events:
            await stream.ack(event)
