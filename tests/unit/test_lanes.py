"""A partition's lane (app.faust.batches): batches in order, one put aside until the batch
it waits for has gone, and the next batch named to the handler."""

import asyncio
from types import SimpleNamespace

from app.faust.batches import each_batch


def event(topic: str, offset: int) -> SimpleNamespace:
    message = SimpleNamespace(topic=topic, partition=2, offset=offset)
    return SimpleNamespace(message=message, value=[f"{topic}@{offset}"])


class Stream:
    """faust's stream as each_batch uses it: noack().events(), and ack()."""

    def __init__(self, events: list[SimpleNamespace]) -> None:
        self.pending, self.acked = events, []

    def noack(self) -> "Stream":
        return self

    async def events(self):  # noqa: ANN201
        for item in self.pending:
            yield item
        await asyncio.sleep(0.2)  # the lane finishes what it holds

    async def ack(self, item: SimpleNamespace) -> None:
        self.acked.append(item.value[0])


def test_a_batch_put_aside_goes_after_the_one_it_waits_for_and_before_newer_ones():
    stream = Stream([event("rekey", 0), event("orders", 0), event("rekey", 1)])
    taken, peeked = [], []

    async def handle(partition, records, peek):  # noqa: ANN001, ANN202
        [name] = records
        if name == "rekey@0" and "orders@0" not in taken:
            return False  # orders up to 0 was named first
        taken.append(name)
        peeked.append(peek())
        return True

    asyncio.run(each_batch(stream, handle, fail=lambda error: taken.append(f"failed: {error}"),
                           release=lambda message: taken.append("released")))
    assert taken == ["orders@0", "rekey@0", "rekey@1"]
    assert stream.acked == taken
    # while orders@0 ran, the batch put aside was the next one, ahead of any newer one
    assert peeked[0] == ("rekey:2", 0)


def test_a_partitions_batches_are_acked_in_offset_order_when_several_wait_aside():
    # faust commits past an unacked offset when the group has no committed offset yet
    # (its gap check starts from the committed one): a lane must never ack a later batch
    # of a topic partition before an earlier one. rekey@0 and rekey@1 both wait for
    # orders@0; they go after it, in their order.
    stream = Stream([event("rekey", 0), event("rekey", 1), event("orders", 0),
                     event("rekey", 2)])
    taken = []

    async def handle(partition, records, peek):  # noqa: ANN001, ANN202
        [name] = records
        if name.startswith("rekey") and "orders@0" not in taken:
            return False
        taken.append(name)
        return True

    asyncio.run(each_batch(stream, handle, fail=lambda error: taken.append(f"failed: {error}"),
                           release=lambda message: taken.append("released")))
    assert stream.acked == ["orders@0", "rekey@0", "rekey@1", "rekey@2"]
