"""Two commands for a stopped group.

`faust -A app reset-offsets` rewinds the group to offset 0 on its input topics: what
`kafka-consumer-groups.sh --reset-offsets --to-earliest` does, with no Kafka tools
installed. It joins the (stopped) group as its only member and commits offset 0 on every
partition of the orders topic and the two repartition topics. The stores keep the
offsets they applied, so the replay that follows changes nothing (README, How
exactly-once works).

`faust -A app reset` starts over from the orders topic, as Kafka Streams' application
reset tool plus `cleanUp()` do: it empties the internal topics (repartition and
changelog), rewinds the group, and removes this DATA_DIR's stores. It is what a worker
names when the broker lost records its state was built from.

An internal topic is emptied in effect, not deleted: tansu keeps what a client that still
holds a topic's metadata sends to it between its deletion and its creation, and then
refuses the new topic's records at those offsets (UnknownError; `topics._create`). Each
changelog partition gets a tombstone for every key its records leave (a restore from it
then yields an empty store), and the group resumes the repartition topics at their end.
Only an internal topic whose partition count is no longer the one it would be created
with is deleted and created again.
"""

import contextlib
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)

from app.datagen_cli import DatagenCommand
from app.producer import Producer
from app.settings import Settings
from app.statecheck import StateDirLock, StateError, discard_state
from app.topics import (
    TopicError,
    delete_topics,
    ensure_topics,
    existing_topics,
    internal_counts,
    topic_names,
)
from tables.changelog import FENCE_KEY, RestoreStalled, Restoring, batch_records, restore
from tables.logends import fetched_ends
from tables.store import PartitionStore

JOIN_TIMEOUT_S = 60
JOIN_MARGIN_S = 15  # beyond a dead member's session and the rebalance that follows it


class TakeAll(AbstractPartitionAssignor):
    """Speaks the workers' protocol name ("faust"), so the broker lets this consumer join
    their (stopped) group, and assigns every partition to the single member: itself.
    `members` is how many members the group had when this consumer led it (None: it did
    not lead: a worker did)."""

    name = "faust"
    version = 4
    members: int | None = None

    @classmethod
    def assign(cls, cluster: Any, members: Mapping[str, Any]) -> dict[str, Any]:
        cls.members = len(members)
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


@contextlib.asynccontextmanager
async def alone_in_group(settings: Settings, topics: list[str]) -> AsyncIterator[
        AIOKafkaConsumer]:
    """A consumer that joined the group as its only member, with every partition of
    `topics`; StateError when a worker is still in the group."""
    TakeAll.members = None
    consumer = AIOKafkaConsumer(
        **settings.kafka_client, group_id=settings.app_id,
        enable_auto_commit=False, session_timeout_ms=10_000, rebalance_timeout_ms=3_000,
        heartbeat_interval_ms=1_000, partition_assignment_strategy=(TakeAll,))
    await consumer.start()
    try:
        consumer.subscribe(topics)
        # a worker killed in the group holds it until its session expires, and the
        # broker then waits up to the rebalance timeout before this member gets it
        session_ms, _, rebalance_ms = settings.group_timeouts_ms
        allowed_s = max(JOIN_TIMEOUT_S, (session_ms + rebalance_ms) / 1000 + JOIN_MARGIN_S)
        deadline = time.monotonic() + allowed_s
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise StateError(
                    f"could not join group {settings.app_id} within {allowed_s:.0f} s: are "
                    f"workers still running? stop them first (a worker killed without "
                    f"leaving holds the group for KAFKA_SESSION_TIMEOUT, "
                    f"{session_ms / 1000:.0f} s)")
            await consumer.getmany(timeout_ms=200, max_records=1)
        if TakeAll.members != 1:
            raise StateError(f"group {settings.app_id} has workers running: stop every "
                             f"worker first")
        yield consumer
    finally:
        await consumer.stop()


async def reset_offsets(settings: Settings, void: bool = False) -> list[str]:
    """Commit offset 0 for APP_ID on every input partition, or with `void` the end of the
    repartition topics (what they hold is void); the `topic[p] -> offset` lines."""
    names = topic_names(settings)
    async with alone_in_group(settings, [names.orders, names.rekey, names.by_buyer]) as consumer:
        assigned = sorted(consumer.assignment())
        offsets = dict.fromkeys(assigned, 0)
        if void:
            offsets.update(await log_ends(consumer, [tp for tp in assigned
                                                     if tp.topic != names.orders]))
        await consumer.commit(offsets)
        return [f"{tp.topic}[{tp.partition}] -> {offset}" for tp, offset in offsets.items()]


async def log_ends(consumer: AIOKafkaConsumer, tps: list[TopicPartition]) -> dict[
        TopicPartition, int]:
    """The log end of each partition (tables.logends); StateError where no fetch answered."""
    ends = await fetched_ends(consumer, tps, JOIN_TIMEOUT_S)
    unknown = [tp for tp in tps if tp not in ends]
    if unknown:
        raise StateError("the broker did not answer a fetch of " + ", ".join(
            f"{tp.topic}[{tp.partition}]" for tp in unknown))
    return ends


async def delete_internal_topics(settings: Settings) -> list[str]:
    """Delete the internal topics whose partition count is not the one they would be
    created with; wait until they are gone."""
    existing = await existing_topics(settings)
    names = topic_names(settings)
    due = internal_counts(settings, existing.get(names.orders, settings.topic_partitions))
    present = [t for t, count in due.items()
               if t in existing and existing[t] != count]
    if not present:
        return []
    await delete_topics(settings, present)
    return present


async def void_changelogs(settings: Settings) -> AsyncIterator[str]:
    """A tombstone for every key the changelogs' records leave, so that a restore from
    them yields empty stores; a line per changelog, once it is done. Their records are
    read into scratch stores in DATA_DIR, as a restore does."""
    names = topic_names(settings)
    existing = await existing_topics(settings)
    scratch = settings.state_dir / "reset-scratch"
    producer = Producer(settings.kafka_client)
    await producer.start()
    try:
        for topic in (names.dedup_changelog, names.aggregate_changelog):
            stores = {p: PartitionStore(scratch / topic / str(p))
                      for p in range(existing[topic])}
            try:
                deleted = await _void(producer, settings, topic, stores)
            finally:
                for store in stores.values():
                    store.close()
            yield f"emptied {topic}: {deleted} keys deleted"
    finally:
        await producer.stop()
        shutil.rmtree(scratch, ignore_errors=True)


async def _void(producer: Producer, settings: Settings, topic: str,
                stores: dict[int, PartitionStore]) -> int:
    """Fence each partition, read it into its scratch store, then delete every key it
    holds (committed or left by an unfinished batch) in one batch; the keys deleted."""
    restoring = {p: Restoring(store, await producer.write("reset", topic, p,
                                                          [(FENCE_KEY, b"")], -1))
                 for p, store in stores.items()}
    try:
        await restore(settings.kafka_client, topic, restoring, stall_s=JOIN_TIMEOUT_S)
    except RestoreStalled as stalled:
        raise StateError(f"could not read {topic}: {stalled}") from None
    deleted = 0
    for partition, restored in restoring.items():
        keys = {key for key, _ in restored.store.scan("") if not key.startswith("~")}
        keys.update(restored.replay.take())
        if keys:
            await producer.write("reset", topic, partition,
                                 batch_records(dict.fromkeys(sorted(keys))), restored.fence)
        deleted += len(keys)
    return deleted


async def reset_all(settings: Settings) -> AsyncIterator[str]:
    """Start over from the orders topic; what was done, a line each, as it is done."""
    lock = StateDirLock(settings.state_dir)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    lock.acquire()  # no worker runs on this DATA_DIR
    try:
        await ensure_topics(settings)  # the orders topic, for the group to join on
        async with alone_in_group(settings, [topic_names(settings).orders]):
            # no worker runs in the group, and none joins while this member holds it
            deleted = await delete_internal_topics(settings)
        async for line in start_over(settings, deleted):
            yield line
    finally:
        lock.release()


async def start_over(settings: Settings,
                     deleted: list[str] | None = None) -> AsyncIterator[str]:
    """Internal topics empty in effect, the group at offset 0 of the orders topic and at
    the end of the repartition topics, no local stores; `deleted`: the internal topics
    already deleted. A line per step, as it is done."""
    if deleted is None:
        deleted = await delete_internal_topics(settings)
    for topic in deleted:
        yield f"deleted {topic}"
    await ensure_topics(settings)
    async for line in void_changelogs(settings):
        yield line
    for line in await reset_offsets(settings, void=True):
        yield line
    discard_state(settings)
    yield f"removed the stores in {settings.state_dir}"


async def _lines(done: Awaitable[list[str]]) -> AsyncIterator[str]:
    for line in await done:
        yield line


def register_reset_command(app: faust.App, settings: Settings) -> None:
    """Add `reset-offsets` and `reset` to `faust -A app`."""

    async def say_lines(command: DatagenCommand, lines: AsyncIterator[str]) -> None:
        """What a reset did, a line each as it is done; a refusal in one line, exit 1."""
        try:
            async for line in lines:
                command.say(line)
        except (StateError, TopicError) as error:
            raise SystemExit(f"orderstream: {error}") from None

    @app.command(base=DatagenCommand, settings=settings, name="reset")
    async def reset_command(self: DatagenCommand) -> None:
        """Start over from the orders topic: recreate the internal topics empty, rewind the
        group, remove this DATA_DIR's state (stop every worker first)."""
        await say_lines(self, reset_all(self.settings))

    @app.command(base=DatagenCommand, settings=settings, name="reset-offsets")
    async def reset_offsets_command(self: DatagenCommand) -> None:
        """Rewind this app's consumer group to offset 0 (stop every worker first)."""
        await say_lines(self, _lines(reset_offsets(self.settings)))
