"""How the stages take their input from faust: whole fetches per partition (see
`app.faust.transport`), each partition in its own lane, acked by hand."""

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, cast

import faust

from agents.batches import NOT_OURS, PartitionHandler, Position
from tables.changelog import BrokerLost, Fenced

LANE_DEPTH = 2  # batches waiting per partition: enough to keep a lane busy
log = logging.getLogger(__name__)


def position(event: Any) -> Position:
    """Where a batch event's records come from, and its last offset."""
    message = event.message
    return f"{message.topic}:{message.partition}", message.offset


class Lane:
    """One partition's batches in arrival order, with those put aside ahead of them."""

    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.waiting: deque[Any] = deque()
        self.aside: deque[Any] = deque()
        self._changed = asyncio.Condition()

    async def put(self, event: Any) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.waiting) < self.depth)
            self.waiting.append(event)
            self._changed.notify_all()

    async def get(self) -> Any:
        async with self._changed:
            await self._changed.wait_for(lambda: bool(self.waiting))
            event = self.waiting.popleft()
            self._changed.notify_all()
            return event

    def peek(self) -> Position | None:
        """The batch this lane tries next: the first put aside, else the first waiting."""
        for queue in (self.aside, self.waiting):
            if queue:
                return position(queue[0])
        return None


async def each_batch(stream: faust.StreamT[Any], handle: PartitionHandler, *,
                     fail: Callable[[BaseException], None],
                     release: Callable[[Any], None],
                     to_item: Callable[[Any], Any] | None = None,
                     waiting: Callable[[], AbstractContextManager[Any]] = nullcontext,
                     ) -> None:
    """Hand each fetched batch (one partition's records, see `app.faust.transport`, each
    passed through `to_item` if given) to `handle`; ack it only once handled, `release`
    it when its partition is no longer ours (NOT_OURS), `fail` the worker on an error;
    `waiting` brackets each wait for the next fetched batch.

    Each partition has its own lane: its batches are handled one after another, while
    other partitions' batches are handled meanwhile, so one partition's wait for the
    broker's acknowledgement does not stall the others. A handler may put a batch aside
    (it returns False: not yet); it is tried again, before newer ones, after each batch
    handled. An error stops the worker with the batch unacked: it is read again after a
    restart, and the offsets kept in the stores make that harmless.
    """
    lanes: dict[int, Lane] = {}
    tasks: list[asyncio.Task[None]] = []

    async def run(partition: int, lane: Lane, event: Any) -> bool:
        records = event.value
        try:
            handled = await handle(partition, records if to_item is None else
                                   [to_item(record) for record in records], lane.peek)
        except Fenced as fenced:
            # expelled from the group: the batch is the new owner's to apply, and the
            # partition's stores hand out nothing until it is assigned again
            log.warning("%s: batch not applied, the group assigns the partition again",
                        fenced)
            handled = NOT_OURS
        if handled is False:
            return False
        if handled == NOT_OURS:  # never committed: read again by the partition's owner
            release(event.message)
            return True
        await stream.ack(event)
        return True

    async def retry_aside(partition: int, lane: Lane) -> bool:
        """The first batch put aside that can go now, if any; whether one went."""
        for index in range(len(lane.aside)):
            event = lane.aside[index]
            del lane.aside[index]  # not its own next batch while it runs
            if await run(partition, lane, event):
                return True
            lane.aside.insert(index, event)
        return False

    async def drive(partition: int, lane: Lane) -> None:
        try:
            while True:
                if lane.aside and await retry_aside(partition, lane):
                    continue
                event = await lane.get()
                if not await run(partition, lane, event):
                    lane.aside.append(event)
        except BrokerLost:  # the runtime stops the worker, having said why
            return
        except Exception as error:  # noqa: BLE001 - the worker must stop, not skip it
            fail(error)

    # StreamT does not declare noack(): the agent's stream is a faust Stream, which has it
    events = cast(faust.Stream[Any], stream).noack().events().__aiter__()
    try:
        while True:
            try:
                with waiting():
                    event = await events.__anext__()
            except StopAsyncIteration:
                return
            partition = event.message.partition
            lane = lanes.get(partition)
            if lane is None:
                lane = lanes[partition] = Lane(LANE_DEPTH)
                tasks.append(asyncio.create_task(drive(partition, lane)))
            await lane.put(event)
    finally:
        for task in tasks:
            task.cancel()
