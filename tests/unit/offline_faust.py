"""A faust app on orderstream's transport (app.faust.transport) that never reaches a broker.

The app, its real consumer (app.faust.transport.Consumer) and faust's bookkeeping are
built as a worker builds them; only the consumer's thread, the part that talks to Kafka,
is swapped for `FakeThread`, which serves canned fetches and records seeks. faust's
consumer reaches its thread through `_getmany`, `_seek`, `seek_to_committed` and
`highwater` (faust.transport.consumer.ThreadDelegateConsumer).
"""

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

import faust
from aiokafka.structs import ConsumerRecord
from faust.types import TP

from app.faust import transport


class FakeThread:
    """faust's consumer thread as the consumer calls it: one canned fetch per call."""

    def __init__(self) -> None:
        self.fetches: deque[dict[TP, list[Any]]] = deque()
        self.asked: list[tuple[set[TP] | None, float]] = []  # (partitions, timeout) per fetch
        self.seeks: list[tuple[TP, int]] = []
        self.committed: dict[TP, int] = {}

    async def getmany(self, active_partitions: set[TP] | None, timeout: float) -> dict[
            TP, list[Any]]:
        self.asked.append((None if active_partitions is None else set(active_partitions),
                           timeout))
        fetched = self.fetches.popleft() if self.fetches else {}
        return {tp: records for tp, records in fetched.items()
                if active_partitions is None or tp in active_partitions}

    def seek(self, partition: TP, offset: int) -> None:
        self.seeks.append((partition, offset))

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        self.seeks.extend(partitions.items())

    async def seek_to_committed(self) -> dict[TP, int]:
        return dict(self.committed)

    def highwater(self, tp: TP) -> int:
        return 1_000_000


def record(topic: str, partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    """An aiokafka record as a fetch returns it: timestamp 1000 + offset ms, key 3 bytes,
    value 5 bytes."""
    return ConsumerRecord(topic=topic, partition=partition, offset=offset,
                          timestamp=1000 + offset, timestamp_type=0, key=b"key",
                          value=b"value", checksum=None, serialized_key_size=3,
                          serialized_value_size=5, headers=[])


@contextlib.contextmanager
def offline_app(**options: Any) -> Iterator[tuple[faust.App, asyncio.AbstractEventLoop]]:
    """A faust app with the `orderstream://` broker, on a loop of its own; the loops it
    made (its own, its consumer thread's) are closed afterwards."""
    transport.register()
    loop = asyncio.new_event_loop()
    # faust's transport takes the current loop when first asked: this one, not a default
    # loop nobody closes
    asyncio.set_event_loop(loop)
    try:
        app = faust.App("offline-test", broker=f"{transport.SCHEME}://127.0.0.1:1",
                        loop=loop, **options)
        thread_loop = app.consumer._thread.thread_loop  # a mode ServiceThread makes its own
        try:
            yield app, loop
        finally:
            thread_loop.close()
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def fake_thread(consumer: Any) -> FakeThread:
    """Put a FakeThread in place of `consumer`'s thread."""
    consumer._thread = fake = FakeThread()
    return fake
