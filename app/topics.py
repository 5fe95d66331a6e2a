"""The topics orderstream reads and writes, and creating the missing ones at start."""

import asyncio
import logging
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.settings import Settings

log = logging.getLogger(__name__)
CREATED_WITHIN_S = 30.0
DELETED_WITHIN_S = 60.0


@dataclass(frozen=True)
class TopicNames:
    """Every topic name, derived from settings once."""

    orders: str
    dlq: str
    late: str
    buyer_totals: str
    window_results: str
    rekey: str  # repartition: orders to the partition owning their order number
    dedup_changelog: str  # changelog of the dedup stores (partitioned like the orders topic)
    by_buyer: str  # repartition: accepted orders grouped by buyer
    aggregate_changelog: str  # changelog of the aggregation stores


def topic_names(settings: Settings) -> TopicNames:
    """Names of SPEC.md's topics and the internal ones, prefixed by APP_ID."""
    prefix = settings.app_id
    return TopicNames(
        orders=settings.orders_topic,
        dlq=settings.dlq_topic,
        late=settings.late_topic,
        buyer_totals=settings.buyer_totals_topic,
        window_results=settings.window_results_topic,
        rekey=f"{prefix}-orders-by-number",
        dedup_changelog=f"{prefix}-dedup-changelog",
        by_buyer=f"{prefix}-orders-by-buyer",
        aggregate_changelog=f"{prefix}-aggregate-changelog",
    )


async def existing_topics(settings: Settings) -> dict[str, int]:
    """Partition count of every topic the broker has."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker_urls, request_timeout_ms=10_000)
    await admin.start()
    try:
        metadata = await admin._client.fetch_all_metadata()  # noqa: SLF001
        return {t: len(metadata.partitions_for_topic(t) or ()) for t in metadata.topics()}
    finally:
        await admin.close()


def internal_counts(settings: Settings, orders_partitions: int) -> dict[str, int]:
    """The partition count each internal topic is created with. The rekey topic and the
    dedup changelog are co-partitioned with the orders topic, whatever its count: faust
    then assigns partition p of all three to one worker."""
    names = topic_names(settings)
    return {names.rekey: orders_partitions, names.dedup_changelog: orders_partitions,
            names.by_buyer: settings.topic_partitions,
            names.aggregate_changelog: settings.topic_partitions}


async def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create missing topics with TOPIC_PARTITIONS partitions; return every topic's count.

    An existing orders topic keeps its own partition count (SPEC.md).
    """
    names = topic_names(settings)
    existing = await existing_topics(settings)
    await _create(settings, existing, [names.orders, names.dlq, names.late, names.buyer_totals,
                                       names.window_results], settings.topic_partitions)
    existing = await existing_topics(settings)
    by_count: dict[int, list[str]] = {}
    for topic, count in internal_counts(settings, existing[names.orders]).items():
        by_count.setdefault(count, []).append(topic)
    for count, topics in by_count.items():
        await _create(settings, existing, topics, count)
    existing = await existing_topics(settings)
    return {t: existing[t] for t in (
        names.orders, names.dlq, names.late, names.buyer_totals, names.window_results,
        names.rekey, names.dedup_changelog, names.by_buyer, names.aggregate_changelog)}


async def _create(settings: Settings, existing: dict[str, int], topics: list[str],
                  partitions: int) -> None:
    missing = [t for t in topics if t not in existing]
    if not missing:
        return
    await _create_listed(settings, missing, partitions)
    # tansu keeps what a producer sent to a topic it did not have (a client that held the
    # topic's metadata from before tansu restarted empty) and, once the topic is created,
    # refuses its records at those offsets for good (UnknownError). ListOffsets counts
    # such records; deleting the topic drops them. A new topic on Kafka is always empty.
    held = await _records_in(settings, missing)
    if held:
        log.info("the broker held records for topics it did not have (%s); deleting and "
                 "creating them again", ", ".join(f"{t}: {n}" for t, n in held.items()))
        await delete_topics(settings, list(held))
        await _create_listed(settings, list(held), partitions)
        if still := await _records_in(settings, list(held)):
            raise RuntimeError("the broker created topics with records in them: " + ", ".join(
                f"{t} ({n} records)" for t, n in still.items()))
    log.info("created topics %s with %d partitions", ", ".join(missing), partitions)


async def _create_listed(settings: Settings, topics: list[str], partitions: int) -> None:
    """Create `topics` and wait until the broker lists them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker_urls, request_timeout_ms=10_000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    finally:
        await admin.close()
    # a KRaft broker lists a topic some 300 ms after its controller created it
    deadline = time.monotonic() + CREATED_WITHIN_S
    while not set(topics) <= set(await existing_topics(settings)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the broker did not list {', '.join(topics)} "
                               f"{CREATED_WITHIN_S:.0f} s after creating them")
        await asyncio.sleep(0.1)


async def _records_in(settings: Settings, topics: list[str]) -> dict[str, int]:
    """The topics among `topics` whose partitions' ListOffsets ends are not all 0, with
    the sum of those ends."""
    reader = AIOKafkaConsumer(bootstrap_servers=settings.broker_urls, enable_auto_commit=False,
                              request_timeout_ms=10_000)
    await reader.start()
    try:
        metadata = await reader._client.fetch_all_metadata()  # noqa: SLF001
        tps = [TopicPartition(t, p) for t in topics
               for p in sorted(metadata.partitions_for_topic(t) or ())]
        reader.assign(tps)
        ends = await reader.end_offsets(tps)
    finally:
        await reader.stop()
    held: dict[str, int] = {}
    for tp, end in ends.items():
        if end:
            held[tp.topic] = held.get(tp.topic, 0) + end
    return held


async def delete_topics(settings: Settings, topics: list[str]) -> None:
    """Delete `topics` and wait until the broker no longer lists them; RuntimeError names
    the ones it refused."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker_urls, request_timeout_ms=30_000)
    await admin.start()
    try:
        response = await admin.delete_topics(topics)
    finally:
        await admin.close()
    refused = [(topic, code) for topic, code, *_ in response.topic_error_codes if code]
    if refused:
        raise RuntimeError("the broker refused to delete " + ", ".join(
            f"{topic} (error {code})" for topic, code in refused))
    deadline = time.monotonic() + DELETED_WITHIN_S
    while set(topics) & set(await existing_topics(settings)):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the broker did not delete {', '.join(topics)}")
        await asyncio.sleep(0.2)
