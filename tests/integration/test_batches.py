"""The batch transport (app.faust.transport) end to end: faust's committed offsets reach the end
of every input, and a backlog read a partition at a time is not late (per-partition
watermarks, core.watermarks)."""

import asyncio
import json

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import murmur2

from tests.integration.conftest import metric, produce, wait_for

pytestmark = pytest.mark.integration

T0 = 1_795_514_400_000  # 2026-11-24T10:00:00.000Z
ORDERS = 3_000
SPACING_MS = 10  # 30 s of event time: 750 orders and 30 s per orders partition
PARTITIONS = 4


def committed_and_ends(broker: str, group: str, topic: str) -> tuple[list[int], list[int]]:
    """The group's committed offset and the end of each partition of `topic`, found by
    reading it (tansu's ListOffsets can report less than the real end)."""
    async def run() -> tuple[list[int], list[int]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=group,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await consumer.start()
        try:
            tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
            committed = [await consumer.committed(tp) or 0 for tp in tps]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while await consumer.getmany(timeout_ms=500):
                pass
            return committed, [await consumer.position(tp) for tp in tps]
        finally:
            await consumer.stop()
    return asyncio.run(run())


def test_batches_commit_to_the_end_and_a_backlog_is_not_late(broker, worker_env, make_worker):
    orders = [(str(n).encode(), json.dumps({
        "order_number": n, "price": "1.00", "order_time": T0 + n * SPACING_MS,
        "buyer": {"first_name": f"F{n % 7}", "last_name": "L"}}).encode())
        for n in range(ORDERS)]
    produce(broker, worker_env["ORDERS_TOPIC"], orders)
    per_partition = [0] * PARTITIONS
    for key, _ in orders:
        per_partition[(murmur2(key) & 0x7FFFFFFF) % PARTITIONS] += 1
    # A whole partition arrives in one fetch from tansu (30 s of event time): with stream
    # time as the watermark, the partitions read later would be late by far more than 10 s.
    worker = make_worker({**worker_env, "BATCH_MAX_ORDERS": "25", "ALLOWED_LATENESS": "10s",
                          "PRINT_SINK": "0"})
    worker.wait_ready()
    wait_for(lambda: metric(worker, "orders_counted_total") == ORDERS, 120, "all counted")
    assert metric(worker, "orders_late_total") == 0
    assert metric(worker, "orders_processed_total") == ORDERS

    group = worker_env["APP_ID"]
    for topic, expected_ends in ((worker_env["ORDERS_TOPIC"], per_partition),
                                 (f"{group}-orders-by-buyer", None)):
        def at_end(topic: str = topic) -> bool:
            committed, ends = committed_and_ends(broker, group, topic)
            return committed == ends and sum(ends) > 0
        wait_for(at_end, 30, f"committed offsets of {topic} at its end")
        if expected_ends is not None:
            assert committed_and_ends(broker, group, topic)[1] == expected_ends
    rows = worker.get("/windows/tumble_10s", limit=1000).json()["items"]
    assert sum(row["count"] for row in rows) == ORDERS  # no order missed a window
