"""Where a partition's log ends, as a fetch tells it: tansu answers ListOffsets with the
first offset of the partition's last record batch, short of the end; a fetch's high
watermark is the real end (and a committed reader's end is the last stable offset, which
is what Apache Kafka lists to such a reader)."""

import time

from aiokafka import AIOKafkaConsumer, TopicPartition


async def fetched_ends(consumer: AIOKafkaConsumer, tps: list[TopicPartition],
                       timeout_s: float) -> dict[TopicPartition, int]:
    """Each assigned partition's high watermark, from a fetch at its listed end; those no
    fetch answered for within `timeout_s` are left out. The consumer is left positioned at
    the listed ends."""
    listed = await consumer.end_offsets(tps)
    for tp in tps:
        consumer.seek(tp, listed[tp])
    deadline = time.monotonic() + timeout_s
    while (unknown := [tp for tp in tps if consumer.highwater(tp) is None]) and (
            time.monotonic() < deadline):
        await consumer.getmany(*unknown, timeout_ms=200, max_records=1)
    return {tp: mark for tp in tps if (mark := consumer.highwater(tp)) is not None}
