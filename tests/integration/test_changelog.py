"""Changelog restore against the real broker."""

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tables.changelog import StoreAheadOfChangelog, encode_updates, restore
from tables.store import PartitionStore

pytestmark = pytest.mark.integration


async def _write(broker: str, topic: str, records: list[dict]) -> list[int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 2, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=broker)
    await producer.start()
    try:
        sent = [await producer.send_and_wait(topic, encode_updates(r), partition=1)
                for r in records]
    finally:
        await producer.stop()
    return [meta.offset for meta in sent]


def test_restore_replays_records_in_order_and_resumes_from_the_local_offset(broker, tmp_path):
    topic = f"changelog-{uuid.uuid4().hex[:8]}"
    records = [{"t|a": "1", "t|b": "1"}, {"t|a": "2"}, {"t|b": None, "t|c": "9"}]
    offsets = asyncio.run(_write(broker, topic, records))
    fresh = PartitionStore(tmp_path / "fresh")
    asyncio.run(restore([broker], topic, {1: fresh}))
    assert dict(fresh.scan("t|")) == {"t|a": "2", "t|c": "9"}
    assert fresh.changelog_offset == offsets[-1]

    # a store that already holds the first record reads only the rest
    partial = PartitionStore(tmp_path / "partial")
    partial.commit({"t|a": "1", "t|b": "1", "t|z": "local"}, changelog_offset=offsets[0])
    asyncio.run(restore([broker], topic, {1: partial}))
    assert dict(partial.scan("t|")) == {"t|a": "2", "t|c": "9", "t|z": "local"}


def test_a_store_ahead_of_the_changelog_is_refused(broker, tmp_path):
    topic = f"changelog-{uuid.uuid4().hex[:8]}"
    asyncio.run(_write(broker, topic, [{"t|a": "1"}]))
    ahead = PartitionStore(tmp_path / "ahead")
    ahead.commit({"t|a": "5"}, changelog_offset=40)
    expected = "offset 40 but the broker's changelog ends at 1"
    with pytest.raises(StoreAheadOfChangelog, match=expected):
        asyncio.run(restore([broker], topic, {1: ahead}))
