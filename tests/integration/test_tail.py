"""The dashboard's reader of a topic's last records (api.tail), on tansu and on Apache
Kafka: tansu lists a partition's end a record batch short, and the newest batch must
still be read."""

import asyncio

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from api.tail import read_tail

pytestmark = pytest.mark.integration


async def produce_batches(broker: str, topic: str) -> None:
    """Three record batches of five records each to partition 0, one send call each (the
    topic created first: Apache Kafka here creates none on its own)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=5)
    await producer.start()
    try:
        for batch in range(3):
            sent = [await producer.send(topic, f"{batch}-{i}".encode(), partition=0)
                    for i in range(5)]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()


def test_the_last_records_include_the_newest_batch(on_broker):
    broker, worker_env = on_broker
    topic = f"{worker_env['ORDERS_TOPIC']}-tail"
    asyncio.run(produce_batches(broker, topic))
    client = {"bootstrap_servers": broker}
    every = asyncio.run(read_tail(client, topic, 20))
    assert [e.value for e in every] == [f"{b}-{i}".encode() for b in range(3) for i in range(5)]
    last = asyncio.run(read_tail(client, topic, 4))
    assert [(e.offset, e.value) for e in last] == [(11, b"2-1"), (12, b"2-2"), (13, b"2-3"),
                                                   (14, b"2-4")]
