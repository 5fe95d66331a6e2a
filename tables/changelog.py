"""Changelog records of the partition stores, and restoring a store from them.

One record per store key a batch changed (key: the store key; value: its new value, or
null to delete it: a tombstone), so a compacted changelog holds the current state and a
restore reads O(state), not O(history). A batch's records end with a commit marker;
records with no marker after them (a writer that died mid-batch) are never applied.

Every owner of a partition first writes a fence: its offset is the owner's epoch, and
every record the owner writes carries that epoch (header `e`). A record or marker of an
epoch older than a fence before it comes from a stale owner (one expelled from the group
that went on writing) and is dropped. A new owner rewrites the keys a dead writer left
without a marker with their committed values, so those records are superseded even where
compaction removes the markers around them.
"""

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from tables.store import PartitionStore, Updates

log = logging.getLogger(__name__)
COMMIT_KEY = b"~commit"  # a batch's last record; store keys never start with `~`
FENCE_KEY = b"~fence"  # a new owner's first record: its offset is the owner's epoch
EPOCH_HEADER = "e"
FETCH_BYTES = 4 * 1024 * 1024
Record = tuple[bytes, bytes | None]  # key, value (None: a tombstone)
Outgoing = tuple[str, bytes | None, bytes, int | None]  # topic, key, value, partition


class StoreAheadOfChangelog(RuntimeError):
    """Local state reflects changelog records the broker no longer has."""

    def __init__(self, topic: str, partition: int, local_offset: int, end_offset: int) -> None:
        super().__init__(
            f"store of {topic}[{partition}] reflects changelog offset {local_offset} "
            f"but the broker's changelog ends at {end_offset}"
        )
        self.topic, self.partition = topic, partition


class BrokerLost(RuntimeError):
    """The broker no longer backs the state: nothing more may be applied or sent."""


class RestoreStalled(RuntimeError):
    """A restore read nothing for its whole allowance while partitions were short of
    their end."""


class Fenced(RuntimeError):
    """Another owner took over a partition this worker was writing: its writes stop."""


class ChangelogWriter(Protocol):
    """Sends a partition's changelog records (the app's producer)."""

    async def write(self, stage: str, topic: str, partition: int, records: list[Record],
                    epoch: int, outputs: Sequence[Outgoing] = (),
                    consumed: dict[TopicPartition, int] | None = None) -> int:
        """Send `outputs`, then `records` (each with the epoch header) in order, as one
        batch (one transaction where the broker has them, with the `consumed` input
        offsets); the last record's offset. Fenced when another owner took over."""
        ...

    async def release(self, stage: str, partition: int) -> None:
        """The partition is no longer this worker's: drop what writes it."""
        ...


def batch_records(updates: Updates) -> list[Record]:
    """One batch's changelog records: a record per key, then the commit marker."""
    records: list[Record] = [(key.encode(), None if value is None else value.encode())
                             for key, value in updates.items()]
    records.append((COMMIT_KEY, b""))
    return records


def epoch_of(record: ConsumerRecord[bytes, bytes]) -> int:
    """The epoch header of a consumed record; -1 when it has none."""
    for name, value in record.headers or ():
        if name == EPOCH_HEADER:
            return int(value)
    return -1


class OldChangelog(RuntimeError):
    """The changelog holds records of an orderstream before keyed changelogs."""


@dataclass
class Replay:
    """One changelog partition read in offset order: whole batches of current owners.

    `commit` hands out what a commit marker makes final; `pending` is what waits for one.
    """

    epoch: int = -1  # the latest fence read so far
    pending: dict[str, str | None] = field(default_factory=dict)

    def read(self, key: bytes | None, value: bytes | None, epoch: int, offset: int) -> bool:
        """Take one record; True when it is a commit marker of a current owner."""
        if key is None:
            raise OldChangelog(f"a changelog record at offset {offset} has no key: it was "
                               "written by an older orderstream; start over with "
                               "`faust -A app reset`")
        if key == FENCE_KEY:
            self.epoch = max(self.epoch, offset)
            return False
        if epoch < self.epoch:  # written by an owner fenced before it: a stale one
            return False
        if key == COMMIT_KEY:
            return True
        self.pending[key.decode()] = None if value is None else value.decode()
        return False

    def take(self) -> dict[str, str | None]:
        """The updates a commit marker made final."""
        taken, self.pending = self.pending, {}
        return taken


def new_reader(client: Mapping[str, Any]) -> AIOKafkaConsumer:
    """A consumer outside any group, for reading changelogs from a given offset; `client`:
    how to connect (aiokafka's keyword arguments: bootstrap servers, security)."""
    return AIOKafkaConsumer(
        **client,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=FETCH_BYTES,
        fetch_max_bytes=FETCH_BYTES,
        isolation_level="read_committed",
    )


@dataclass
class Restoring:
    """One partition's restore: its store, and what the log says past its offset."""

    store: PartitionStore
    fence: int  # this owner's fence, written before the restore: the log is read past it
    replay: Replay = field(default_factory=Replay)

    def __post_init__(self) -> None:
        self.replay.epoch = self.store.epoch

    def apply(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        """Records of one fetch, in offset order; each commit marker commits the store."""
        store, replay = self.store, self.replay
        for record in records:
            if replay.read(record.key, record.value, epoch_of(record), record.offset):
                store.commit(replay.take(), record.offset, replay.epoch)


async def restore(
    client: Mapping[str, Any],
    topic: str,
    restoring: Mapping[int, Restoring],
    on_progress: Callable[[int, int], None] | None = None,
    stall_s: float | None = None,
) -> None:
    """Bring each store up to the end of its changelog partition (past its owner's fence).

    A store whose offset is beyond the end raises StoreAheadOfChangelog: the broker lost
    records this state was built from. With `stall_s`, a restore that reads nothing for
    that long raises RestoreStalled, naming the partitions, their positions and ends.
    """
    reader = new_reader(client)
    await reader.start()
    try:
        tps = {TopicPartition(topic, p): r for p, r in restoring.items()}
        ends = await reader.end_offsets(list(tps))
        for tp, r in tps.items():
            ends[tp] = max(ends[tp], r.fence + 1)  # tansu's ListOffsets can lag
            if r.store.changelog_offset >= ends[tp]:
                raise StoreAheadOfChangelog(topic, tp.partition, r.store.changelog_offset,
                                            ends[tp])
        reader.assign(list(tps))
        for tp, r in tps.items():
            reader.seek(tp, r.store.changelog_offset + 1)
        await _read_to_end(reader, tps, dict(ends), on_progress, stall_s)
    finally:
        await reader.stop()


async def _read_to_end(
    reader: AIOKafkaConsumer,
    restoring: Mapping[TopicPartition, Restoring],
    ends: dict[TopicPartition, int],
    on_progress: Callable[[int, int], None] | None,
    stall_s: float | None = None,
) -> None:
    """Apply records until every partition's position reaches its end."""
    pending = {tp for tp, r in restoring.items() if r.store.changelog_offset + 1 < ends[tp]}
    last_read = time.monotonic()
    while pending:
        fetched = await reader.getmany(*pending, timeout_ms=500, max_records=20_000)
        if fetched:
            last_read = time.monotonic()
        elif stall_s is not None and time.monotonic() - last_read > stall_s:
            short = [f"{tp.topic}[{tp.partition}] at {await reader.position(tp)} of "
                     f"{ends[tp]} (high watermark {reader.highwater(tp)})"
                     for tp in sorted(pending)]
            raise RestoreStalled(f"read nothing for {stall_s:.0f} s: {', '.join(short)}")
        for tp, records in fetched.items():
            restoring[tp].apply(records)
            if on_progress:
                on_progress(tp.partition, len(records))
        for tp in list(pending):
            # Once a fetch has answered, its high watermark is the end. tansu's ListOffsets
            # can lag the log end, and right after a topic is deleted and recreated it can
            # still give the old topic's end: waiting for that would never finish. Never
            # before this owner's fence, though: the restore must read past it.
            highwater = reader.highwater(tp)
            if highwater is not None:
                ends[tp] = max(highwater, restoring[tp].fence + 1)
            if await reader.position(tp) >= ends[tp]:
                pending.discard(tp)
