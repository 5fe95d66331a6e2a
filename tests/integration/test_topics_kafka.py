"""Topic configs on Apache Kafka (SPEC.md, Topics): what the worker creates, what it
refuses, and an exact restore from changelogs the broker has compacted."""

import shutil
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from app.purge import purge_committed
from app.settings import Settings
from app.topics import describe_configs, topic_names
from tests.integration.conftest import (
    committed_offsets,
    consume_all,
    create_worker_topics,
    end_offsets,
    metric,
    partitions_of,
    produce,
    run_sync,
    wait_for,
)
from tests.integration.test_pipeline import check_all_answers, make_orders

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


def names_of(env: dict[str, str]):  # noqa: ANN201
    return topic_names(Settings(_env_file=None, app_id=env["APP_ID"],
                                orders_topic=env["ORDERS_TOPIC"],
                                buyer_totals_topic=env["BUYER_TOTALS_TOPIC"],
                                window_results_topic=env["WINDOW_RESULTS_TOPIC"]))


async def beginning_offsets(broker: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None)
    await consumer.start()
    try:
        tps = await partitions_of(consumer, topic)
        return {tp.partition: offset
                for tp, offset in (await consumer.beginning_offsets(tps)).items()}
    finally:
        await consumer.stop()


def configs_of(broker: str, topics: list[str]) -> dict[str, dict[str, str]]:
    settings = Settings(_env_file=None, kafka_broker=broker)
    return run_sync(describe_configs(settings, topics))


def test_the_worker_creates_every_topic_with_the_configs_that_keep_state(
        kafka_broker, kafka_worker_env, make_worker):
    worker = make_worker(kafka_worker_env)
    worker.wait_ready()
    names = names_of(kafka_worker_env)
    found = configs_of(kafka_broker, list(vars(names).values()))
    policy = {topic: configs["cleanup.policy"] for topic, configs in found.items()}
    assert policy == {
        names.orders: "delete", names.dlq: "delete", names.late: "delete",
        names.buyer_totals: "compact", names.window_results: "compact",
        names.rekey: "delete", names.by_buyer: "delete",
        names.dedup_changelog: "compact", names.aggregate_changelog: "compact"}
    for repartition in (names.rekey, names.by_buyer):
        assert (found[repartition]["retention.ms"], found[repartition]["retention.bytes"]) == (
            "-1", "-1")
        # an order of MAX_MESSAGE_BYTES (1 MiB) travels alone in a record
        assert found[repartition]["max.message.bytes"] == str(2 * 1024 * 1024 + 64 * 1024)
    # one broker: replication factor 1, and no min.insync.replicas of the service's own
    assert {configs["min.insync.replicas"] for configs in found.values()} == {"1"}


def test_repartition_records_the_group_committed_past_are_purged(
        kafka_broker, kafka_worker_env, make_worker):
    env = kafka_worker_env
    env.update(ALLOWED_LATENESS="1h", WINDOW_RETENTION="2h", PRINT_SINK="0")
    worker = make_worker(env)
    worker.wait_ready()
    raws, meaning = make_orders(300, seed=8)
    produce(kafka_broker, env["ORDERS_TOPIC"],
            [(str(n).encode(), raw) for (n, *_), raw in zip(meaning, raws, strict=True)])
    wait_for(lambda: metric(worker, "orders_counted_total") == len(meaning), what="counted")
    by_buyer = names_of(env).by_buyer
    ends = end_offsets(kafka_broker, by_buyer)
    # the group commits what it applied (its transactions take the input offsets): past
    # the orders' records, short of the end by a transaction marker at least
    wait_for(lambda: all(committed_offsets(kafka_broker, env["APP_ID"], by_buyer).get(p, 0)
                         >= end - 1 for p, end in ends.items()),
             what="the by-buyer records committed")
    before = committed_offsets(kafka_broker, env["APP_ID"], by_buyer)
    settings = Settings(_env_file=None, kafka_broker=kafka_broker, app_id=env["APP_ID"])
    purged = {tp.partition: start for tp, start in run_sync(purge_committed(
        settings, [TopicPartition(by_buyer, p) for p in ends])).items()}
    assert set(purged) == set(before) and all(purged[p] >= before[p] > 0 for p in purged)
    assert run_sync(beginning_offsets(kafka_broker, by_buyer)) == purged
    check_all_answers(worker, meaning)  # nothing the state needs was in them


def test_an_existing_changelog_that_retention_would_empty_is_refused_in_one_line(
        kafka_broker, kafka_worker_env, make_worker):
    names = names_of(kafka_worker_env)
    create_worker_topics(kafka_broker, kafka_worker_env, {names.aggregate_changelog: {
        "cleanup.policy": "delete", "retention.ms": "604800000"}})
    worker = make_worker(kafka_worker_env)
    wait_for(lambda: worker.process.poll() is not None, timeout_s=60, what="the refusal")
    assert worker.process.returncode == 1
    errors = [line for line in worker.log().splitlines() if "ERROR" in line]
    assert len(errors) == 1, worker.log()[-3000:]
    assert (f"orderstream: changelog {names.aggregate_changelog} has cleanup.policy=delete, "
            f"retention.ms=604800000: retention would delete state") in errors[0]


def test_a_restore_from_a_compacted_changelog_is_exact(kafka_broker, kafka_worker_env,
                                                       make_worker):
    env = kafka_worker_env
    env.update(ALLOWED_LATENESS="1h", WINDOW_RETENTION="2h", PRINT_SINK="0")
    names = names_of(env)
    # segments roll every 200 ms and any dirt makes a log cleanable: the broker compacts
    # the changelogs while the orders arrive
    eager = {"segment.ms": "200", "min.cleanable.dirty.ratio": "0.01",
             "delete.retention.ms": "0"}
    create_worker_topics(kafka_broker, env, {names.dedup_changelog: eager,
                                             names.aggregate_changelog: eager})
    raws, meaning = make_orders(3_000, seed=5)
    worker = make_worker(env)
    worker.wait_ready()
    records = [(str(n).encode(), raw) for (n, *_), raw in zip(meaning, raws, strict=True)]
    for start in range(0, len(records), 100):  # many batches, each overwriting totals
        produce(kafka_broker, env["ORDERS_TOPIC"], records[start:start + 100])
    wait_for(lambda: metric(worker, "orders_counted_total") == len(meaning), timeout_s=120,
             what="all counted")

    changelog = names.aggregate_changelog

    def kept() -> int:
        return len(consume_all(kafka_broker, changelog))

    written = sum(end_offsets(kafka_broker, changelog).values())
    wait_for(lambda: kept() < written // 2, timeout_s=90, what="the changelog compacted")
    kept_records = consume_all(kafka_broker, changelog)
    assert all(key is not None for key, _ in kept_records)
    assert max(len(key or b"") + len(value or b"") for key, value in kept_records) < 64 * 1024
    worker.stop()

    shutil.rmtree(Path(env["DATA_DIR"]))
    rebuilt = make_worker(env, "rebuilt")
    rebuilt.wait_ready()
    check_all_answers(rebuilt, meaning)
