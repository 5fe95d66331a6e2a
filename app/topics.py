"""The topics orderstream reads and writes, creating the missing ones at start with the
configs that keep state safe on a Kafka cluster, and refusing existing internal topics
whose configs would lose it (SPEC.md, Topics)."""

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol, cast

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.cluster import ClusterMetadata
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from app.settings import Settings

log = logging.getLogger(__name__)
CREATED_WITHIN_S = 30.0
DELETED_WITHIN_S = 60.0
RECREATE_ATTEMPTS = 3


# aiokafka's responses get their fields from the protocol schema at run time, where the
# type checker cannot see them: the fields read here, in the versions aiokafka asks for.
class CreatedTopics(Protocol):
    topic_errors: list[tuple[str, int, str | None]]  # topic, error code, message


class DeletedTopics(Protocol):
    topic_error_codes: list[tuple[str, int]]  # topic, error code


ConfigEntry = tuple[str, str | None, *tuple[Any, ...]]  # name, value, then flags


class DescribedConfigs(Protocol):
    # error code, message, resource type, topic, its config entries
    resources: list[tuple[int, str | None, int, str, list[ConfigEntry]]]


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


# Changelogs and the output topics keep the latest record per key, forever.
COMPACTED = {"cleanup.policy": "compact"}
# Repartition topics keep every record until the service has committed past it, then
# purges it (DeleteRecords), as Kafka Streams does.
UNTIL_PURGED = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
RECORD_OVERHEAD_BYTES = 64 * 1024


def topic_configs(settings: Settings, replication: int) -> dict[str, dict[str, str]]:
    """The configs of each topic the service creates (the orders topic only if it creates
    it): with 3 replicas or more, a write needs 2 in sync (the producers use acks=all)."""
    names = topic_names(settings)
    durable = {"min.insync.replicas": "2"} if replication >= 3 else {}
    # a copy of one order travels alone in a record when it is over 512 KiB (core.shuffle)
    repartition = {**UNTIL_PURGED, **durable, "max.message.bytes": str(
        2 * settings.max_message_bytes + RECORD_OVERHEAD_BYTES)}
    return {names.orders: durable, names.dlq: durable, names.late: durable,
            names.buyer_totals: {**COMPACTED, **durable},
            names.window_results: {**COMPACTED, **durable},
            names.rekey: repartition, names.by_buyer: repartition,
            names.dedup_changelog: {**COMPACTED, **durable},
            names.aggregate_changelog: {**COMPACTED, **durable}}


async def _metadata(settings: Settings) -> ClusterMetadata:
    """The broker's metadata of every topic, fresh; TopicError, in one line, when no
    broker of KAFKA_BROKER lets this client in."""
    admin = AIOKafkaAdminClient(**settings.kafka_client, request_timeout_ms=10_000)
    try:
        await admin.start()
        metadata: ClusterMetadata = await admin._client.fetch_all_metadata()  # noqa: SLF001
        return metadata
    except KafkaConnectionError:
        raise TopicError(await _refusal(settings)) from None
    finally:
        await admin.close()


async def _refusal(settings: Settings) -> str:
    """Why the first broker of KAFKA_BROKER did not let a client in: aiokafka's bootstrap
    only logs it (a failed SASL authentication, a TLS error, nothing listening)."""
    host, _, port = settings.broker_urls[0].rpartition(":")
    options = {k: v for k, v in settings.kafka_client.items() if k != "bootstrap_servers"}
    try:
        conn = await create_conn(host, int(port), **options)
    except (KafkaError, OSError) as error:
        reason = f"{type(error).__name__}: {error}"
    else:
        conn.close()
        reason = "it answered this probe, but not the client before it"
    return (f"the broker at {','.join(settings.broker_urls)} did not let the worker in "
            f"(KAFKA_SECURITY_PROTOCOL={settings.kafka_security_protocol}): {reason}")


async def existing_topics(settings: Settings) -> dict[str, int]:
    """Partition count of every topic the broker has."""
    metadata = await _metadata(settings)
    return {t: len(metadata.partitions_for_topic(t) or ()) for t in metadata.topics()}


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
    replication = await replication_factor(settings)
    configs = topic_configs(settings, replication)
    created = await _create(settings, existing, [
        names.orders, names.dlq, names.late, names.buyer_totals, names.window_results],
        settings.topic_partitions, replication, configs)
    existing = await _listing(settings, [names.orders])
    by_count: dict[int, list[str]] = {}
    for topic, count in internal_counts(settings, existing[names.orders]).items():
        by_count.setdefault(count, []).append(topic)
    for count, topics in by_count.items():
        created += await _create(settings, existing, topics, count, replication, configs)
    await check_internal_configs(settings, [t for t in internal_counts(settings, 0)
                                            if t not in created])
    ours = [names.orders, names.dlq, names.late, names.buyer_totals, names.window_results,
            names.rekey, names.dedup_changelog, names.by_buyer, names.aggregate_changelog]
    existing = await _listing(settings, ours)
    return {t: existing[t] for t in ours}


async def _listing(settings: Settings, topics: list[str]) -> dict[str, int]:
    """Every topic's partition count, once the broker asked lists all of `topics`: in a
    cluster, a broker learns of a topic another one created a moment later."""
    deadline = time.monotonic() + CREATED_WITHIN_S
    while True:
        existing = await existing_topics(settings)
        missing = [t for t in topics if not existing.get(t)]
        if not missing:
            return existing
        if time.monotonic() > deadline:
            raise TopicError(f"the broker does not list {', '.join(missing)} "
                             f"{CREATED_WITHIN_S:.0f} s after they were created")
        await asyncio.sleep(0.1)


class TopicError(RuntimeError):
    """The broker did not create or delete a topic as asked: one line for the user."""


async def replication_factor(settings: Settings) -> int:
    """TOPIC_REPLICATION, else min(3, the brokers in the cluster)."""
    if settings.topic_replication is not None:
        return settings.topic_replication
    return min(3, len((await _metadata(settings)).brokers()))


def unsafe_config(topic: str, configs: dict[str, str], changelog: bool) -> str | None:
    """What an existing internal topic's configs would lose, in words; None when safe.
    A config the broker does not report (tansu reports only those set) counts as safe."""
    policy = configs.get("cleanup.policy", "delete")
    finite = configs.get("retention.ms", "-1") != "-1" or configs.get(
        "retention.bytes", "-1") != "-1"
    shown = ", ".join(f"{name}={configs[name]}" for name in (
        "cleanup.policy", "retention.ms", "retention.bytes")
        if configs.get(name, "-1") != "-1")  # the policy, and retention where it is finite
    if changelog and "delete" in policy and finite:
        return (f"changelog {topic} has {shown}: retention would delete state; it must be "
                f"compacted (cleanup.policy=compact)")
    if not changelog and "compact" in policy:
        return (f"repartition topic {topic} has {shown}: its records have no key; it must "
                f"be cleanup.policy=delete with retention.ms=-1")
    if not changelog and finite:
        return (f"repartition topic {topic} has {shown}: records not yet processed would "
                f"be deleted; it must keep them (retention.ms=-1, retention.bytes=-1)")
    return None


async def check_internal_configs(settings: Settings, topics: list[str]) -> None:
    """TopicError, in one line, naming each of `topics` whose configs would lose state."""
    if not topics:
        return
    names = topic_names(settings)
    changelogs = {names.dedup_changelog, names.aggregate_changelog}
    found = await describe_configs(settings, topics)
    unsafe = [why for topic in topics if (why := unsafe_config(
        topic, found.get(topic, {}), topic in changelogs)) is not None]
    if unsafe:
        raise TopicError("; ".join(unsafe) + " (kafka-configs.sh --alter, or `faust -A app "
                                             "reset`, which creates them again)")


async def describe_configs(settings: Settings, topics: list[str]) -> dict[str, dict[str, str]]:
    """The configs the broker reports for each of `topics`."""
    admin = AIOKafkaAdminClient(**settings.kafka_client, request_timeout_ms=10_000)
    await admin.start()
    try:
        responses = cast(list[DescribedConfigs], await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, t) for t in topics]))
    except KafkaError as error:
        raise TopicError(f"the broker did not describe the configs of {', '.join(topics)}: "
                         f"{error!r}") from None
    finally:
        await admin.close()
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        for _code, _message, _type, name, entries, *_ in response.resources:
            found[name] = {entry[0]: entry[1] for entry in entries if entry[1] is not None}
    return found


async def _create(settings: Settings, existing: dict[str, int], topics: list[str],
                  partitions: int, replication: int,
                  configs: dict[str, dict[str, str]]) -> list[str]:
    """Create those of `topics` the broker lacks; the ones this call created."""
    missing = [t for t in topics if t not in existing]
    if not missing:
        return []
    created = await _create_serving(settings, missing, partitions, replication, configs)
    # tansu keeps what a producer sent to a topic it did not have (a client that held the
    # topic's metadata from before tansu restarted empty) and, once the topic is created,
    # refuses its records at those offsets for good (UnknownError). ListOffsets counts
    # such records; deleting the topic drops them. Only a topic this call created is
    # checked (another worker may have created, and written to, the others), and never the
    # orders topic: records in the input are never deleted. (tansu may also be an external
    # broker, so this runs on every broker: a Kafka topic is created empty, and the check
    # is one request.)
    suspects = [t for t in created if t != topic_names(settings).orders]
    for _ in range(RECREATE_ATTEMPTS):
        held = await _records_in(settings, suspects, partitions)
        if not held:
            break
        log.info("the broker held records for topics it did not have (%s); deleting and "
                 "creating them again", ", ".join(f"{t}: {n}" for t, n in held.items()))
        await delete_topics(settings, list(held))
        suspects = await _create_serving(settings, list(held), partitions, replication,
                                         configs)
    else:
        raise TopicError("the broker keeps records in topics created empty: " + ", ".join(
            f"{t} ({n})" for t, n in held.items()))
    log.info("created topics %s with %d partitions, replication factor %d", ", ".join(missing),
             partitions, replication)
    return created


async def _create_serving(settings: Settings, topics: list[str], partitions: int,
                          replication: int, configs: dict[str, dict[str, str]]) -> list[str]:
    """Create `topics`, wait until every partition of each has a leader; return those the
    broker created for this call (not the ones that existed by then)."""
    admin = AIOKafkaAdminClient(**settings.kafka_client, request_timeout_ms=10_000)
    await admin.start()
    try:
        response = cast(CreatedTopics, await admin.create_topics([
            NewTopic(t, partitions, replication, topic_configs=configs.get(t, {}))
            for t in topics]))
    finally:
        await admin.close()
    refused = [(topic, code, message) for topic, code, message, *_ in response.topic_errors
               if code not in (0, TopicAlreadyExistsError.errno)]
    if refused:
        raise TopicError("the broker refused to create " + "; ".join(
            f"{topic} ({message or f'error {code}'})" for topic, code, message in refused))
    created = [topic for topic, code, *_ in response.topic_errors if code == 0]
    # a KRaft broker lists a topic some 300 ms after its controller created it
    deadline = time.monotonic() + CREATED_WITHIN_S
    while waiting := await _not_serving(settings, topics):
        if time.monotonic() > deadline:
            raise TopicError(f"the broker did not serve {', '.join(waiting)} "
                             f"{CREATED_WITHIN_S:.0f} s after creating them")
        await asyncio.sleep(0.1)
    return created


async def _not_serving(settings: Settings, topics: list[str]) -> list[str]:
    """Those of `topics` the broker does not list, or lists with a partition that has no
    leader."""
    metadata = await _metadata(settings)
    return [t for t in topics if not metadata.partitions_for_topic(t)
            or metadata.available_partitions_for_topic(t) != metadata.partitions_for_topic(t)]


async def _records_in(settings: Settings, topics: list[str], partitions: int) -> dict[str, int]:
    """The topics among `topics` (of `partitions` partitions each, all with a leader) whose
    ListOffsets ends are not all 0, with the sum of those ends."""
    if not topics:
        return {}
    reader = AIOKafkaConsumer(**settings.kafka_client, enable_auto_commit=False,
                              request_timeout_ms=10_000)
    try:
        await reader.start()
        tps = [TopicPartition(t, p) for t in topics for p in range(partitions)]
        reader.assign(tps)
        ends = await reader.end_offsets(tps)
    except KafkaError as error:
        raise TopicError(f"the broker did not answer ListOffsets for the new topics "
                         f"{', '.join(topics)}: {error!r}") from None
    finally:
        await reader.stop()
    held: dict[str, int] = {}
    for tp, end in ends.items():
        if end:
            held[tp.topic] = held.get(tp.topic, 0) + end
    return held


async def delete_topics(settings: Settings, topics: list[str]) -> None:
    """Delete `topics` and wait until the broker no longer lists them; TopicError names
    the ones it refused."""
    admin = AIOKafkaAdminClient(**settings.kafka_client, request_timeout_ms=30_000)
    await admin.start()
    try:
        response = cast(DeletedTopics, await admin.delete_topics(topics))
    finally:
        await admin.close()
    refused = [(topic, code) for topic, code, *_ in response.topic_error_codes if code]
    if refused:
        raise TopicError("the broker refused to delete " + ", ".join(
            f"{topic} (error {code})" for topic, code in refused))
    deadline = time.monotonic() + DELETED_WITHIN_S
    while set(topics) & set(await existing_topics(settings)):
        if time.monotonic() > deadline:
            raise TopicError(f"the broker did not delete {', '.join(topics)} "
                             f"{DELETED_WITHIN_S:.0f} s after deleting them")
        await asyncio.sleep(0.2)
