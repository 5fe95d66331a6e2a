"""The records side of the live-push hub (api.fanout): entries shared by every client,
the ring that holds the latest of them, and the Kafka consumer that reads them, behind a
small protocol so the hub runs on an in-memory fake in the unit tests. The one aiokafka
call that is not public (fresh partition metadata for a manually assigned consumer) is
here too."""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

from tables.logends import fetched_ends

# What the ring holds: enough for a reconnect after a blip to resume from memory; a
# client further back reads through a catch-up consumer (api.fanout).
RING_RECORDS = 10_000
RING_BYTES = 16 * 1024 * 1024  # of keys and values; decoded forms add about as much again
FETCH_BYTES = 4 * 1024 * 1024  # output records are one per key, far smaller
T = TypeVar("T")


@dataclass(slots=True, eq=False)
class Entry:
    """One record of a topic the hub reads, shared by every client that reads it.

    What a stream decodes or renders from it (a key's buyer, an event's JSON) is kept in
    `memo`, so a record is decoded once for all clients, not once per client.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    memo: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        """Bytes of key and value: what the ring counts against RING_BYTES."""
        return len(self.key or b"") + len(self.value or b"")

    def memoized(self, name: str, make: Callable[[], T]) -> T:
        """`make()`, computed once per entry and name for every client."""
        try:
            found: T = self.memo[name]
        except KeyError:
            found = self.memo[name] = make()
        return found


class Ring:
    """The latest records the hub read, by sequence number, bounded by count and bytes.

    `floor` is, per partition, the least position whose records are all still here (or
    still to come): a client at or past it in every partition can read from the ring.
    """

    def __init__(self, records: int = RING_RECORDS, size: int = RING_BYTES) -> None:
        self._slots: list[Entry | None] = [None] * records
        self._size, self._bytes = size, 0
        self.base = self.head = 0  # sequence numbers of the oldest entry and of the next
        self.floor: dict[TopicPartition, int] = {}

    def append(self, entry: Entry) -> None:
        """Add an entry; evict the oldest beyond the bounds (raising their floor)."""
        if self.head - self.base == len(self._slots):
            self._evict()
        self._slots[self.head % len(self._slots)] = entry
        self.head += 1
        self._bytes += entry.size
        while self._bytes > self._size and self.head - self.base > 1:
            self._evict()

    def _evict(self) -> None:
        index = self.base % len(self._slots)
        entry = self._slots[index]
        assert entry is not None
        self._slots[index] = None
        self._bytes -= entry.size
        self.base += 1
        tp = TopicPartition(entry.topic, entry.partition)
        self.floor[tp] = max(self.floor.get(tp, 0), entry.offset + 1)

    def entries(self, start: int, stop: int) -> list[Entry]:
        """Entries with sequence numbers in [start, stop), which must still be held."""
        assert self.base <= start <= stop <= self.head, (self.base, start, stop, self.head)
        size = len(self._slots)
        return [e for s in range(start, stop) if (e := self._slots[s % size]) is not None]

    def empty_copy(self) -> "Ring":
        """A ring with the same bounds and nothing in it."""
        return Ring(len(self._slots), self._size)


class Source(Protocol):
    """A consumer outside any group, on partitions it is given (aiokafka's, or a fake)."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def partitions(self, topics: Iterable[str]) -> set[TopicPartition]: ...
    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]: ...
    def assign(self, positions: dict[TopicPartition, int]) -> None: ...
    async def getmany(self, timeout_ms: int, max_records: int) -> dict[
        TopicPartition, list[Entry]]: ...
    async def position(self, tp: TopicPartition) -> int: ...
    def highwater(self, tp: TopicPartition) -> int | None: ...


class KafkaSource:
    """An AIOKafkaConsumer with no group, read from the positions the hub keeps.

    `reset` is where a position the broker no longer has (or never had) goes: `latest`
    for the shared consumer (never replay a topic), `earliest` for a catch-up (what is
    still there, from the oldest).
    """

    def __init__(self, client: Mapping[str, Any], reset: str) -> None:
        self._consumer = AIOKafkaConsumer(
            **client, group_id=None, enable_auto_commit=False,
            auto_offset_reset=reset, max_partition_fetch_bytes=FETCH_BYTES,
            fetch_max_bytes=FETCH_BYTES, isolation_level="read_committed")

    async def start(self) -> None:
        await self._consumer.start()

    async def stop(self) -> None:
        await self._consumer.stop()

    async def partitions(self, topics: Iterable[str]) -> set[TopicPartition]:
        """Every partition of `topics` as the broker has them now (a topic made, or grown,
        since the start included): aiokafka refreshes metadata only for assigned topics,
        and only every metadata_max_age_ms."""
        cluster = await self._consumer._client.fetch_all_metadata()  # noqa: SLF001
        return {TopicPartition(t, p) for t in topics
                for p in cluster.partitions_for_topic(t) or ()}

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        ends: dict[TopicPartition, int] = await self._consumer.end_offsets(tps)
        return ends

    def assign(self, positions: dict[TopicPartition, int]) -> None:
        """Read exactly these partitions, each from its position."""
        self._consumer.assign(list(positions))
        for tp, offset in positions.items():
            self._consumer.seek(tp, offset)

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[
            TopicPartition, list[Entry]]:
        batch = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        return {tp: [Entry(tp.topic, tp.partition, r.offset, r.key, r.value) for r in records]
                for tp, records in batch.items()}

    async def position(self, tp: TopicPartition) -> int:
        """The next offset to read: past transaction markers and compacted gaps, which a
        record's offset + 1 is not."""
        offset: int = await self._consumer.position(tp)
        return offset

    def highwater(self, tp: TopicPartition) -> int | None:
        """The end of a partition as of the last fetch; None before one, or unassigned."""
        if tp not in self._consumer.assignment():
            return None
        mark: int | None = self._consumer.highwater(tp)
        return mark

    async def log_ends(self, tps: list[TopicPartition],
                       timeout_s: float) -> dict[TopicPartition, int]:
        """Where this committed reader's view of each partition ends, from a fetch
        (tables.logends: tansu lists a record batch short): the last stable offset, else
        the high watermark; the listed end where no fetch answered in time."""
        self._consumer.assign(tps)
        fetched = await fetched_ends(self._consumer, tps, timeout_s)
        ends: dict[TopicPartition, int] = {}
        for tp in tps:
            stable = self._consumer.last_stable_offset(tp)
            if stable is not None and stable >= 0:
                ends[tp] = stable
            else:  # fetched_ends left the consumer at the listed end
                ends[tp] = fetched.get(tp) or await self._consumer.position(tp)
        return ends
