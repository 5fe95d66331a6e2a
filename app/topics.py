"""The topics orderstream reads and writes, and creating the missing ones at start."""

import asyncio
import logging
import time
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.settings import Settings

log = logging.getLogger(__name__)
CREATED_WITHIN_S = 30.0


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


async def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create missing topics with TOPIC_PARTITIONS partitions; return every topic's count.

    An existing orders topic keeps its own partition count (SPEC.md).
    """
    names = topic_names(settings)
    existing = await existing_topics(settings)
    await _create(settings, existing, [names.orders, names.dlq, names.late, names.buyer_totals,
                                       names.window_results, names.by_buyer,
                                       names.aggregate_changelog], settings.topic_partitions)
    existing = await existing_topics(settings)
    # The rekey topic and the dedup changelog are co-partitioned with the orders topic,
    # whatever its count: faust then assigns partition p of all three to one worker.
    await _create(settings, existing, [names.rekey, names.dedup_changelog],
                  existing[names.orders])
    existing = await existing_topics(settings)
    return {t: existing[t] for t in (
        names.orders, names.dlq, names.late, names.buyer_totals, names.window_results,
        names.rekey, names.dedup_changelog, names.by_buyer, names.aggregate_changelog)}


async def _create(settings: Settings, existing: dict[str, int], topics: list[str],
                  partitions: int) -> None:
    missing = [t for t in topics if t not in existing]
    if not missing:
        return
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.broker_urls, request_timeout_ms=10_000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in missing])
    finally:
        await admin.close()
    # a KRaft broker lists a topic some 300 ms after its controller created it
    deadline = time.monotonic() + CREATED_WITHIN_S
    while not set(missing) <= set(await existing_topics(settings)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the broker did not list {', '.join(missing)} "
                               f"{CREATED_WITHIN_S:.0f} s after creating them")
        await asyncio.sleep(0.1)
    log.info("created topics %s with %d partitions", ", ".join(missing), partitions)
