"""A faust transport that hands agents whole fetches: one event per partition per fetch.

faust turns every Kafka record into its own event (consumer thread, conductor, channel,
stream), about 125 µs a record: a faust agent tops out near 8,000 records/s whatever it
does with them. Here faust still runs the worker, the consumer group, the partition
assignment and the offset commits, but a topic declared with `batch_topic` delivers one
event per partition and fetch, whose value is the list of aiokafka `ConsumerRecord`s
(key, value, offset, ...) and whose offset is the last record's. A partition's fetch
larger than the batch size (or than BATCH_MAX_BYTES of values) is cut into several
batches, and faust's scheduler takes turns between partitions, so the partitions of one
fetch are interleaved.

What faust needs told about batches, in its own (private, version-pinned) terms:
- acking a batch acks every offset in it: `_new_offset` expands each acked batch into
  its offsets before faust finds the committable run;
- offsets inside a batch are not gaps in the log (`_add_gap` is skipped for these topics);
- `stream_buffer_maxsize` and `broker_commit_every` count batches.
Headers are not delivered, the event's timestamp is its last record's, and faust's
sensors count batches.

The broker URL scheme `orderstream://` selects it (`register()` adds the scheme).
"""

import asyncio
from bisect import bisect_right
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import accumulate
from operator import attrgetter
from typing import Any, ClassVar, cast

import faust
from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT, ConsumerMessage, EventT, Message
from faust.types.transports import ConsumerT

SCHEME = "orderstream"
DEFAULT_BATCH_SIZE = 1000
# A batch also ends before its record values pass this: a repartition record carries a
# whole ingest batch's orders for one buyer partition, so 1000 of them could be a whole
# 1 MB fetch, 12k orders, and what applying those allocates at once (their rows and index
# entries, at 100k buyers) set the worker's RSS (`make bench-state`, memory; BENCHMARKS.md).
# About 3k orders of the repartition topic; 1000 orders of the orders topic stay below it.
BATCH_MAX_BYTES = 256 * 1024
_value_size = attrgetter("serialized_value_size")


class FetchBatch:
    """One partition's records of one fetch, in offset order (never empty)."""

    __slots__ = ("records",)

    def __init__(self, records: Sequence[Any]) -> None:
        self.records = records


class BatchSchema(faust.Schema[None, Sequence[Any]]):
    """The event's value is the batch's record list as fetched: nothing to deserialize."""

    def compile(self, app: AppT, **_: Any) -> Any:
        create_event = app.create_event

        async def decode(message: Message, *, propagate: bool = False) -> EventT[Sequence[Any]]:
            return create_event(None, message.value, [], message)

        return decode


def batch_topic(app: faust.App, *names: str) -> faust.TopicT:
    """A topic whose agent gets one event per partition and fetch (see the module doc)."""
    batched_topics(app).update(names)
    return app.topic(*names, schema=BatchSchema())


def set_batch_size(app: faust.App, size: int) -> None:
    """At most `size` records per batch; faust takes turns between partitions' batches."""
    app._orderstream_batch_size = size  # type: ignore[attr-defined]


def release(app: AppT, message: Any) -> None:
    """Let go of a batch that was not applied (its partition was revoked meanwhile) without
    acking it: faust stops waiting for it (a rebalance waits for every message in flight),
    but none of its offsets counts as processed, so no commit passes it and it is read
    again by whoever is assigned the partition. An ack there would let faust commit it:
    acks between a revocation and the next assignment outlive the rebalance."""
    # app.consumer is typed ConsumerT, which lacks the ack bookkeeping of faust's Consumer
    consumer = cast("Consumer", app.consumer)
    message.acked = True  # what faust's ack sets first, without recording the offset
    consumer._unacked_messages.discard(message)  # noqa: SLF001
    waiter = consumer._waiting_for_ack  # noqa: SLF001
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


def on_rewind(app: faust.App, callback: Callable[[TP, int, int], None]) -> None:
    """Call `callback(tp, expected, got)` when a partition's fetch starts before where the
    previous one ended, with no seek or rebalance between: the consumer was reset (out of
    range), so the broker's log was truncated or recreated. That fetch is not delivered."""
    app._orderstream_on_rewind = callback  # type: ignore[attr-defined]


def batch_size(app: AppT) -> int:
    return getattr(app, "_orderstream_batch_size", DEFAULT_BATCH_SIZE)


def batched_topics(app: AppT) -> set[str]:
    """The names of the app's topics delivered in batches."""
    found = getattr(app, "_orderstream_batched_topics", None)
    if found is None:
        found = set()
        app._orderstream_batched_topics = found  # type: ignore[attr-defined]
    return found


def cut_records(records: Sequence[Any], size: int,
                max_bytes: int) -> Iterator[Sequence[Any]]:
    """Consecutive runs of `records`, each of at most `size` records whose values come to at
    most `max_bytes` (a larger record is a run of its own). Every order passes here: the
    running byte counts are summed in C and each cut is a bisection, not a step per record
    in Python (65 ns a record, against 330). A record without a value counts -1 byte."""
    ends = list(accumulate(map(_value_size, records)))
    start, base = 0, 0
    while start < len(records):
        stop = min(max(bisect_right(ends, base + max_bytes, start), start + 1), start + size)
        yield records[start:stop]
        base, start = ends[stop - 1], stop


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """faust's consumer thread, whose consumer reads committed records only: what an
    aborted transaction (a batch a worker did not finish, or a fenced one) wrote to the
    repartition topics is never read. faust itself asks for that only with its own
    exactly-once mode, which would also move its offset commits into transactions."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._isolation_level = "read_committed"  # read by start(), not yet called
        return consumer


class Consumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, delivering `FetchBatch`es for batch topics.

    Fetched records of batch topics wait here, cut into batches, and each call hands out
    at most one batch per partition: partitions take turns batch by batch.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting: dict[TP, deque[FetchBatch]] = {}
        self._next_start: dict[TP, int] = {}
        # per partition: last offset of a delivered batch -> first offset it covers
        self._batch_spans: dict[TP, dict[int, int]] = defaultdict(dict)

    def _new_consumer_thread(self) -> ConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        if active_partitions is None:  # a client-only app: no batching
            return await super()._getmany(active_partitions, timeout)
        batched = batched_topics(self.app)
        ready = {tp for tp, waiting in self._waiting.items()
                 if waiting and tp in active_partitions}
        fetch = {tp for tp in active_partitions
                 if tp.topic not in batched or not self._waiting.get(tp)}
        records: dict[TP, list[Any]] = {}
        if fetch:
            records = dict(await super()._getmany(fetch, 0 if ready else timeout))
        elif not ready:
            await asyncio.sleep(min(timeout, 0.05))  # nothing to fetch: let the agent catch up
        for tp in list(records):
            if tp.topic in batched:
                self._cut(tp, records.pop(tp))
        for tp in active_partitions:
            waiting = self._waiting.get(tp)
            if waiting:
                records[tp] = [waiting.popleft()]
        return records

    def _cut(self, tp: TP, fetched: Sequence[Any]) -> None:
        """Fetched records into batches; each covers the log from the previous one's end."""
        if not fetched:
            return
        size = batch_size(self.app)
        start = self._next_start.get(tp)
        if start is not None and fetched[0].offset < start:
            rewound = getattr(self.app, "_orderstream_on_rewind", None)
            if rewound is not None:
                rewound(tp, start, fetched[0].offset)
                return
        if start is None:  # the first fetch after a seek: from the read position
            read = self._read_offset[tp]
            start = fetched[0].offset if read is None else min(read + 1, fetched[0].offset)
        waiting = self._waiting.setdefault(tp, deque())
        spans = self._batch_spans[tp]
        for chunk in cut_records(fetched, size, BATCH_MAX_BYTES):
            spans[chunk[-1].offset] = start
            start = chunk[-1].offset + 1
            waiting.append(FetchBatch(chunk))
        self._next_start[tp] = start

    def _forget(self, tps: Iterable[TP] | None = None) -> None:
        """Drop what waits here (a seek or a rebalance: it would be read again)."""
        for tp in list(self._waiting) if tps is None else tps:
            self._waiting.pop(tp, None)
            self._next_start.pop(tp, None)

    def _to_message(self, tp: TP, record: Any) -> Any:
        if not isinstance(record, FetchBatch):
            return super()._to_message(tp, record)
        records = record.records
        last = records[-1]
        # faust types the timestamp float (its own _to_message passes None too) and the
        # value bytes: a batch's value is its record list
        return ConsumerMessage(
            last.topic, last.partition, last.offset,
            cast(float, None if last.timestamp is None else last.timestamp / 1000.0),
            last.timestamp_type, [], None, cast(bytes, records), None,
            sum(r.serialized_key_size for r in records),
            sum(r.serialized_value_size for r in records),
            tp, generation_id=self.app.consumer_generation_id,
        )

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        if tp.topic not in batched_topics(self.app):
            await super()._add_gap(tp, offset_from, offset_to)

    def _new_offset(self, tp: TP) -> int | None:
        spans = self._batch_spans.get(tp)
        acked = self._acked[tp]
        if spans and acked:
            committed = self._committed_offset[tp]
            offsets: set[int] = set()
            for last in acked:
                start = spans.pop(last, last)
                if committed is not None:
                    start = max(start, committed)
                offsets.update(range(start, last + 1))
            acked[:] = sorted(offsets)
        return super()._new_offset(tp)

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        for tp in revoked:
            self._batch_spans.pop(tp, None)
        self._forget()
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self._forget()
        await super().on_partitions_assigned(assigned, generation_id)

    async def seek(self, partition: TP, offset: int) -> None:
        self._forget([partition])
        await super().seek(partition, offset)

    async def seek_wait(self, partitions: Mapping[TP, int]) -> None:
        self._forget(partitions)
        await super().seek_wait(partitions)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        self._forget()
        return await super().seek_to_committed()


class Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport with the batch-delivering consumer."""

    Consumer: ClassVar[type[ConsumerT]] = Consumer


def register() -> None:
    """Make `orderstream://host:port` broker URLs select this transport."""
    drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
