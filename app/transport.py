"""A faust transport that hands agents whole fetches: one event per partition per fetch.

faust turns every Kafka record into its own event (consumer thread, conductor, channel,
stream), about 125 µs a record: a faust agent tops out near 8,000 records/s whatever it
does with them. Here faust still runs the worker, the consumer group, the partition
assignment and the offset commits, but a topic declared with `batch_topic` delivers one
event per partition and fetch, whose value is the list of aiokafka `ConsumerRecord`s
(key, value, offset, ...) and whose offset is the last record's.

What faust needs told about batches, in its own (private, version-pinned) terms:
- acking a batch acks every offset in it: `_new_offset` expands each acked batch into
  its offsets before faust finds the committable run;
- offsets inside a batch are not gaps in the log (`_add_gap` is skipped for these topics);
- `stream_buffer_maxsize` and `broker_commit_every` count batches.
Headers are not delivered, the event's timestamp is its last record's, and faust's
sensors count batches.

The broker URL scheme `orderstream://` selects it (`register()` adds the scheme).
"""

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import faust
from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, AppT, EventT, Message
from faust.types.transports import ConsumerT

SCHEME = "orderstream"


class FetchBatch:
    """One partition's records of one fetch, in offset order (never empty)."""

    __slots__ = ("records",)

    def __init__(self, records: Sequence[Any]) -> None:
        self.records = records


class BatchSchema(faust.Schema):
    """The event's value is the batch's record list as fetched: nothing to deserialize."""

    def compile(self, app: AppT, **_: Any) -> Any:
        create_event = app.create_event

        async def decode(message: Message, *, propagate: bool = False) -> EventT:
            return create_event(None, message.value, [], message)

        return decode


def batch_topic(app: faust.App, *names: str) -> faust.TopicT:
    """A topic whose agent gets one event per partition and fetch (see the module doc)."""
    batched_topics(app).update(names)
    return app.topic(*names, schema=BatchSchema())


def batched_topics(app: AppT) -> set[str]:
    """The names of the app's topics delivered in batches."""
    found = getattr(app, "_orderstream_batched_topics", None)
    if found is None:
        found = set()
        app._orderstream_batched_topics = found  # type: ignore[attr-defined]
    return found


class Consumer(faust_aiokafka.Consumer):
    """faust's aiokafka consumer, delivering a `FetchBatch` per partition of batch topics."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # per partition: last offset of a delivered batch -> first offset it covers
        self._batch_spans: dict[TP, dict[int, int]] = defaultdict(dict)

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        records = await super()._getmany(active_partitions, timeout)
        batched = batched_topics(self.app)
        for tp, fetched in records.items():
            if tp.topic in batched and fetched:
                # A batch covers the log from just after the last delivered offset (or the
                # seek position): what lies between two batches holds no records.
                read = self._read_offset[tp]
                first = fetched[0].offset
                start = first if read is None else min(read + 1, first)
                self._batch_spans[tp][fetched[-1].offset] = start
                records[tp] = [FetchBatch(fetched)]
        return records

    def _to_message(self, tp: TP, record: Any) -> Any:
        if not isinstance(record, FetchBatch):
            return super()._to_message(tp, record)
        records = record.records
        last = records[-1]
        return faust_aiokafka.ConsumerMessage(
            last.topic, last.partition, last.offset,
            None if last.timestamp is None else last.timestamp / 1000.0,
            last.timestamp_type, [], None, records, None,
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
        await super().on_partitions_revoked(revoked)


class Transport(faust_aiokafka.Transport):
    """faust's aiokafka transport with the batch-delivering consumer."""

    Consumer: type[ConsumerT] = Consumer  # type: ignore[assignment]


def register() -> None:
    """Make `orderstream://host:port` broker URLs select this transport."""
    drivers.TRANSPORTS.aliases[SCHEME] = f"{__name__}:Transport"
