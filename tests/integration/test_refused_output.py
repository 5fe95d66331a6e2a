"""A batch is all or nothing (issue 13, item 1), on Apache Kafka: an output the broker
refuses, in the middle of valid orders, stops the worker with the batch neither acked nor
applied; after the refusal is lifted and the worker restarts, every valid order counts
exactly once and the bad one is in the DLQ."""

import json
from collections import defaultdict
from decimal import Decimal

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.partitioner import murmur2

from tests.expected import money
from tests.integration.conftest import (
    committed_offsets,
    consume_all,
    create_worker_topics,
    metric,
    produce,
    run_sync,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

T0 = 1_795_514_400_000  # 2026-11-24T10:00:00.000Z
PARTITIONS = 4  # TOPIC_PARTITIONS' default, which the worker gives the topics it creates
BUYERS = [("Ana", "Ruiz"), ("Zoë", "Brontë"), ("Lê", "Văn")]
DLQ_LIMIT = 1024  # bytes: far below the bad order's DLQ record, far above every other


def owner(key: bytes) -> int:
    """The orders partition of a key, as the producer's default partitioner picks it."""
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS


def order(number: int, price: str) -> tuple[bytes, bytes]:
    """(key, value) of an order, keyed by its number as datagen does."""
    first, last = BUYERS[number % len(BUYERS)]
    return str(number).encode(), json.dumps({
        "order_number": number, "price": price, "order_time": T0 + number,
        "buyer": {"first_name": first, "last_name": last}}).encode()


def set_topic_config(broker: str, topic: str, name: str, value: str) -> None:
    """Set one config of a topic (AlterConfigs: its other configs back to the defaults)."""
    async def run() -> list[tuple[int, str]]:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker)
        await admin.start()
        try:
            [response] = await admin.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, topic, configs={name: value})])
        finally:
            await admin.close()
        return [(code, resource) for code, _, _, resource in response.resources]
    assert run_sync(run()) == [(0, topic)]


def test_a_refused_output_redoes_its_batch_and_each_order_counts_once(
        kafka_broker, kafka_worker_env, make_worker):
    env = kafka_worker_env
    env.update(PRINT_SINK="0")
    topic, dlq = env["ORDERS_TOPIC"], env["ORDERS_TOPIC"] + "-dlq"
    # made before the worker starts, which keeps existing topics as they are: the whole
    # input is there for its first fetch, and the DLQ refuses records over 1 KiB
    create_worker_topics(kafka_broker, env, {dlq: {"max.message.bytes": str(DLQ_LIMIT)}})
    numbers = [n for n in range(1, 1_000) if owner(str(n).encode()) == 0][:61]
    bad_number = numbers[30]
    bad = order(bad_number, "1." + "5" * 4_000)  # 4 KB: within 64 KiB, kept whole in the DLQ
    valid = {n: f"{n}.{n % 100:02d}" for n in numbers if n != bad_number}
    # one partition, the bad order at offset 30 between 30 valid ones on either side
    produce(kafka_broker, topic, [bad if n == bad_number else order(n, valid[n])
                                  for n in numbers])

    refused = make_worker(env, "refused")
    wait_for(lambda: refused.process.poll() is not None, timeout_s=90,
             what="the worker to stop on the refused DLQ record")
    assert refused.process.returncode != 0
    assert "MessageSizeTooLarge" in refused.log(), refused.log()[-3000:]
    # nothing of the batch is acked or in the DLQ for a committed reader (its transaction
    # was aborted: the DLQ holds only the abort's marker); without transactions its
    # by-buyer records could have reached the broker and the aggregation applied some
    assert committed_offsets(kafka_broker, env["APP_ID"], topic) == {}
    assert consume_all(kafka_broker, dlq, isolation="read_committed") == []
    applied_before = len([key for key, _ in consume_all(
        kafka_broker, f"{env['APP_ID']}-aggregate-changelog", isolation="read_committed")
        if key not in (b"~fence", b"~commit")])

    set_topic_config(kafka_broker, dlq, "max.message.bytes", str(1024 * 1024))
    worker = make_worker(env, "recovered")
    worker.wait_ready()
    wait_for(lambda: sum(i["count"] for i in worker.get("/buyers").json()["items"])
             >= len(valid), what="every valid order counted")
    wait_for(lambda: metric(worker, "orders_invalid_total") == 1, what="the bad order")

    expected = defaultdict(lambda: [0, Decimal(0)])
    for n, price in valid.items():
        expected[BUYERS[n % len(BUYERS)]][0] += 1
        expected[BUYERS[n % len(BUYERS)]][1] += Decimal(price)
    want = {buyer: (count, money(total)) for buyer, (count, total) in expected.items()}
    for (first, last), (count, total) in want.items():
        assert worker.get(f"/buyers/{first}/{last}").json() == {
            "buyer": {"first_name": first, "last_name": last}, "count": count,
            "total_price": total}
    # the refused batch was not applied: the restart read and decided all of it again
    assert metric(worker, "orders_processed_total") == len(numbers)
    counted = metric(worker, "orders_counted_total")
    assert counted == len(valid) if applied_before == 0 else counted < len(valid)

    # without transactions a redo may repeat an identical DLQ record (SPEC.md, Topics)
    dead = [(key, json.loads(value)) for key, value in consume_all(kafka_broker, dlq)]
    assert {(key, d["topic"], d["partition"], d["offset"], d["error"], d["raw"])
            for key, d in dead} == {
        (bad[0], topic, 0, 30, "price: more than 2 decimal places", bad[1].decode())}
    latest = {}
    for key, value in consume_all(kafka_broker, env["BUYER_TOTALS_TOPIC"]):
        latest[tuple(json.loads(key))] = json.loads(value)
    assert {buyer: (v["count"], v["total_price"]) for buyer, v in latest.items()} == want
