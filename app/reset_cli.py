"""`faust -A app reset-offsets`: rewind the worker group to offset 0 on its input topics.

What `kafka-consumer-groups.sh --reset-offsets --to-earliest` does, with no Kafka tools
installed: join the (stopped) group as its only member and commit offset 0 on every
partition of the orders topic and the two repartition topics. The stores keep the
offsets they applied, so the replay that follows changes nothing (README, How
exactly-once works).
"""

import time
from collections.abc import Mapping
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

from app.datagen_cli import DatagenCommand
from app.settings import Settings
from app.topics import topic_names

JOIN_TIMEOUT_S = 60


class TakeAll(AbstractPartitionAssignor):
    """Speaks the workers' protocol name ("faust"), so the broker lets this consumer join
    their (stopped) group, and assigns every partition to the single member: itself."""

    name = "faust"
    version = 4

    @classmethod
    def assign(cls, cluster: Any, members: Mapping[str, Any]) -> dict[str, Any]:
        topics = sorted({t for meta in members.values() for t in meta.subscription})
        everything = [(t, sorted(cluster.partitions_for_topic(t) or ())) for t in topics]
        return {member: ConsumerProtocolMemberAssignment(cls.version, everything, b"")
                for member in members}

    @classmethod
    def metadata(cls, topics: Any) -> ConsumerProtocolMemberMetadata:
        return ConsumerProtocolMemberMetadata(cls.version, list(topics), b"")

    @classmethod
    def on_assignment(cls, assignment: Any) -> None:
        pass


async def reset_offsets(settings: Settings) -> list[str]:
    """Commit offset 0 for APP_ID on every input partition; the `topic[p]` lines reset."""
    names = topic_names(settings)
    topics = [names.orders, names.rekey, names.by_buyer]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.broker_urls, group_id=settings.app_id,
        enable_auto_commit=False, session_timeout_ms=10_000, rebalance_timeout_ms=3_000,
        heartbeat_interval_ms=1_000, partition_assignment_strategy=(TakeAll,))
    await consumer.start()
    try:
        consumer.subscribe(topics)
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not join group {settings.app_id}: are workers "
                                   "still running? stop them first")
            await consumer.getmany(timeout_ms=200, max_records=1)
        assigned = sorted(consumer.assignment())
        await consumer.commit(dict.fromkeys(assigned, 0))
        return [f"{tp.topic}[{tp.partition}] -> 0" for tp in assigned]
    finally:
        await consumer.stop()


def register_reset_command(app: faust.App, settings: Settings) -> None:
    """Add `reset-offsets` to `faust -A app`."""

    @app.command(base=DatagenCommand, settings=settings, name="reset-offsets")
    async def reset_offsets_command(self: DatagenCommand) -> None:
        """Rewind this app's consumer group to offset 0 (stop every worker first)."""
        for line in await reset_offsets(self.settings):
            self.say(line)

