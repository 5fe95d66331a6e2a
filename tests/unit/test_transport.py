"""The batch-delivering consumer (app.faust.transport) inside a real faust app, fed by a
fake consumer thread (tests/unit/offline_faust.py): batch cutting, offset expansion,
rewind detection and release, with faust's own getmany, ack and commit bookkeeping.

Batch size 3 throughout; expected offsets are written out by hand."""

import asyncio
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import faust
import pytest
from faust.types import TP

from app.faust import transport
from tests.unit.offline_faust import FakeThread, fake_thread, offline_app, record

SIZE = 3
ORDERS = TP("orders", 0)
ORDERS_1 = TP("orders", 1)
OTHER = TP("payments", 0)  # a topic faust delivers record by record


@dataclass
class Worker:
    app: faust.App
    loop: asyncio.AbstractEventLoop
    consumer: Any  # app.faust.transport.Consumer
    thread: FakeThread
    rewinds: list[tuple[TP, int, int]]
    topic: faust.TopicT

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def fetch(self, *fetches: dict[TP, list[Any]]) -> None:
        """What the broker returns to the next fetches, one mapping per fetch."""
        self.thread.fetches.extend(fetches)

    def round(self, *tps: TP) -> dict[TP, list[Any]]:
        """One call of the consumer's `_getmany` for `tps`, as faust's getmany makes it."""
        return dict(self.run(self.consumer._getmany(set(tps), 1.0)))

    def delivered(self, *tps: TP) -> dict[TP, list[list[int]]]:
        """One round, as the offsets of each partition's batches."""
        return {tp: [[r.offset for r in batch.records] for batch in batches]
                for tp, batches in self.round(*tps).items()}

    def message(self, tp: TP) -> Any:
        """The next round's batch of `tp` as faust's message for it."""
        [batch] = self.round(tp)[tp]
        return self.consumer._to_message(tp, batch)


@pytest.fixture
def worker() -> Iterator[Worker]:
    with offline_app() as (app, loop):
        transport.set_batch_size(app, SIZE)
        topic = transport.batch_topic(app, "orders")
        rewinds: list[tuple[TP, int, int]] = []
        transport.on_rewind(app, lambda tp, expected, got: rewinds.append((tp, expected, got)))
        app.topics.add(topic)  # subscribed with acks, as an agent's topic is
        loop.run_until_complete(app.topics._update_indices())
        yield Worker(app, loop, app.consumer, fake_thread(app.consumer), rewinds, topic)


def records(tp: TP, first: int, last: int) -> list[Any]:
    return [record(tp.topic, tp.partition, offset) for offset in range(first, last + 1)]


# -- batch cutting --------------------------------------------------------------------


def test_faust_getmany_delivers_a_fetch_as_batches_of_at_most_the_size_one_per_round(worker):
    worker.fetch({ORDERS: records(ORDERS, 10, 16)})  # 7 records: ceil(7 / 3) = 3 batches
    worker.consumer.resume_partitions({ORDERS})

    async def one_round() -> list[Any]:
        return [message async for _, message in worker.consumer.getmany(timeout=1.0)]

    rounds = [worker.run(one_round()) for _ in range(3)]
    assert [[m.offset for m in messages] for messages in rounds] == [[12], [15], [16]]
    assert [[[r.offset for r in m.value] for m in messages] for messages in rounds] == [
        [[10, 11, 12]], [[13, 14, 15]], [[16]]]
    # one fetch: the waiting batches are handed out without asking the broker again
    assert worker.thread.asked == [({ORDERS}, 1.0)]


def sized(tp: TP, offset: int, value_size: int) -> Any:
    return dataclasses.replace(record(tp.topic, tp.partition, offset),
                               value=b"v" * value_size, serialized_value_size=value_size)


def test_a_batch_also_ends_before_its_values_pass_the_byte_bound():
    # values of 4, 4, 4, 1, 9, 2 bytes, at most 3 records and 8 bytes a batch
    fetched = [sized(ORDERS, offset, size) for offset, size in enumerate([4, 4, 4, 1, 9, 2])]
    cut = transport.cut_records(fetched, 3, 8)
    assert [[r.offset for r in batch] for batch in cut] == [[0, 1], [2, 3], [4], [5]]
    # a value-less record (size -1) weighs nothing; the count bound still holds
    empty = [dataclasses.replace(r, value=None, serialized_value_size=-1)
             for r in records(ORDERS, 0, 6)]
    assert [[r.offset for r in b] for b in transport.cut_records(empty, 3, 8)] == [
        [0, 1, 2], [3, 4, 5], [6]]
    assert list(transport.cut_records([], 3, 8)) == []


def test_the_consumer_cuts_a_fetch_of_large_records_by_bytes(worker):
    big = transport.BATCH_MAX_BYTES // 2 + 1  # two of them pass the bound
    worker.fetch({ORDERS: [sized(ORDERS, offset, big) for offset in range(10, 13)]})
    assert [worker.delivered(ORDERS)[ORDERS] for _ in range(3)] == [[[10]], [[11]], [[12]]]


def test_a_batch_is_one_faust_message_carrying_its_records_and_the_last_ones_position(worker):
    worker.app.consumer_generation_id = 7
    worker.fetch({ORDERS: records(ORDERS, 10, 12)})
    [batch] = worker.round(ORDERS)[ORDERS]
    message = worker.consumer._to_message(ORDERS, batch)
    assert (message.topic, message.partition, message.offset, message.tp) == (
        "orders", 0, 12, ORDERS)
    assert message.value is batch.records
    assert message.timestamp == 1.012  # the last record's, in seconds
    assert (message.timestamp_type, message.headers, message.key, message.checksum) == (
        0, [], None, None)
    assert (message.serialized_key_size, message.serialized_value_size) == (9, 15)
    assert message.generation_id == 7  # faust's stream skips messages of other generations
    assert message.acked is False


def test_partitions_take_turns_batch_by_batch_and_a_drained_one_is_fetched_at_once(worker):
    worker.fetch({ORDERS: records(ORDERS, 10, 16), ORDERS_1: records(ORDERS_1, 0, 1)})
    rounds = [worker.delivered(ORDERS, ORDERS_1) for _ in range(3)]
    assert rounds == [
        {ORDERS: [[10, 11, 12]], ORDERS_1: [[0, 1]]},
        {ORDERS: [[13, 14, 15]]},
        {ORDERS: [[16]]},
    ]
    # orders[1] had nothing waiting: fetched again each round, without waiting (timeout 0)
    # as orders[0] had batches ready
    assert worker.thread.asked == [({ORDERS, ORDERS_1}, 1.0), ({ORDERS_1}, 0), ({ORDERS_1}, 0)]


def test_records_of_a_topic_not_batched_pass_through_as_faust_delivers_them(worker):
    fetched = records(OTHER, 5, 6)
    worker.fetch({OTHER: fetched})
    assert worker.round(OTHER) == {OTHER: fetched}
    message = worker.consumer._to_message(OTHER, fetched[0])
    assert (message.offset, message.key, message.value) == (5, b"key", b"value")


def test_a_client_only_fetch_is_not_cut(worker):
    fetched = records(ORDERS, 10, 16)
    worker.fetch({ORDERS: fetched})
    assert worker.run(worker.consumer._getmany(None, 1.0)) == {ORDERS: fetched}
    assert worker.thread.asked == [(None, 1.0)]


# -- offset expansion -----------------------------------------------------------------


def seek_to_committed(worker: Worker, offset: int) -> None:
    """As after an assignment: faust seeks to the committed offset (read and committed
    offsets both `offset`)."""
    worker.thread.committed = {ORDERS: offset}
    worker.run(worker.consumer.perform_seek())


def test_one_ack_of_a_batch_lets_faust_commit_past_every_record_in_it(worker):
    seek_to_committed(worker, 10)
    worker.fetch({ORDERS: records(ORDERS, 10, 16)})
    message = worker.message(ORDERS)
    assert message.ack(worker.consumer) is True
    # offsets 10..12 all acked: faust alone, seeing only 12 acked after committed 10,
    # would commit nothing (11 a gap)
    assert worker.consumer._new_offset(ORDERS) == 13
    assert worker.consumer._acked[ORDERS] == []


def test_a_batch_acked_before_the_one_before_it_is_committed_only_once_that_one_is(worker):
    seek_to_committed(worker, 10)
    worker.fetch({ORDERS: records(ORDERS, 10, 16)})
    first, second = worker.message(ORDERS), worker.message(ORDERS)
    second.ack(worker.consumer)
    assert worker.consumer._new_offset(ORDERS) is None  # 10..12 are not acked yet
    assert worker.consumer._acked[ORDERS] == [13, 14, 15]
    first.ack(worker.consumer)
    assert worker.consumer._new_offset(ORDERS) == 16
    # the third batch (16), delivered and not acked, is still known to cover 16 only
    assert worker.consumer._batch_spans[ORDERS] == {16: 16}


def test_offsets_missing_between_fetches_are_covered_by_the_next_batch(worker):
    # 13..19 are not in the log (compacted away, or transaction markers): the batch of
    # 20..21 covers them, so acking it commits past them
    seek_to_committed(worker, 10)
    worker.fetch({ORDERS: records(ORDERS, 10, 12)}, {ORDERS: records(ORDERS, 20, 21)})
    first, second = worker.message(ORDERS), worker.message(ORDERS)
    first.ack(worker.consumer)
    second.ack(worker.consumer)
    assert worker.consumer._new_offset(ORDERS) == 22


def test_the_first_batch_after_a_seek_covers_the_log_past_the_read_offset(worker):
    seek_to_committed(worker, 10)  # faust's read offset: 10, taken as the last one read
    worker.fetch({ORDERS: records(ORDERS, 14, 15)})  # 10..13 not in the log
    worker.message(ORDERS).ack(worker.consumer)
    assert worker.consumer._batch_spans[ORDERS] == {15: 11}  # the batch covers 11..15
    # faust commits a run that starts one past its committed offset (10)
    assert worker.consumer._new_offset(ORDERS) == 16
    assert worker.consumer._batch_spans[ORDERS] == {}


def test_gaps_in_a_batch_topic_are_not_recorded_and_in_others_they_are(worker):
    # faust's drain loop calls _add_gap when a message's offset jumps past the read offset:
    # a batch's offset is its last record's, so every batch would look like a jump
    worker.run(worker.consumer._add_gap(ORDERS, 13, 20))
    worker.run(worker.consumer._add_gap(OTHER, 13, 20))
    assert not worker.consumer._gap[ORDERS]
    assert sorted((i.begin, i.end) for i in worker.consumer._gap[OTHER]) == [(13, 21)]


# -- rewinds --------------------------------------------------------------------------


def test_a_fetch_starting_before_where_the_last_one_ended_is_reported_and_not_delivered(
        worker):
    worker.fetch({ORDERS: records(ORDERS, 10, 12)},
                 {ORDERS: records(ORDERS, 13, 14)},  # continues: no rewind
                 {ORDERS: records(ORDERS, 4, 6), ORDERS_1: records(ORDERS_1, 0, 0)})
    assert worker.delivered(ORDERS) == {ORDERS: [[10, 11, 12]]}
    assert worker.delivered(ORDERS) == {ORDERS: [[13, 14]]}
    assert worker.rewinds == []
    assert worker.delivered(ORDERS, ORDERS_1) == {ORDERS_1: [[0]]}
    assert worker.rewinds == [(ORDERS, 15, 4)]


def test_after_a_seek_a_fetch_from_an_earlier_offset_is_no_rewind(worker):
    worker.fetch({ORDERS: records(ORDERS, 10, 16)}, {ORDERS: records(ORDERS, 5, 7)})
    assert worker.delivered(ORDERS) == {ORDERS: [[10, 11, 12]]}
    worker.run(worker.consumer.seek(ORDERS, 5))
    assert worker.thread.seeks == [(ORDERS, 5)]
    # the batches waiting from before the seek (13..16) are dropped: read again
    assert worker.delivered(ORDERS) == {ORDERS: [[5, 6, 7]]}
    assert worker.rewinds == []
    assert worker.thread.asked == [({ORDERS}, 1.0), ({ORDERS}, 1.0)]


def test_a_rebalance_drops_the_waiting_batches_and_the_revoked_partitions_spans(worker):
    consumer, called = worker.consumer, []

    async def revoked(tps: set[TP]) -> None:  # the app's handlers, past the consumer's own
        called.append(("revoked", tps))

    async def assigned(tps: set[TP], generation_id: int = 0) -> None:
        called.append(("assigned", tps, generation_id))

    consumer._on_partitions_revoked, consumer._on_partitions_assigned = revoked, assigned
    worker.fetch({ORDERS: records(ORDERS, 10, 16), ORDERS_1: records(ORDERS_1, 0, 1)},
                 {ORDERS: records(ORDERS, 4, 5)})  # read again from the committed offset
    assert worker.delivered(ORDERS, ORDERS_1) == {ORDERS: [[10, 11, 12]], ORDERS_1: [[0, 1]]}
    worker.run(consumer.on_partitions_revoked({ORDERS_1}))
    worker.run(consumer.on_partitions_assigned({ORDERS}, 3))
    assert called == [("revoked", {ORDERS_1}), ("assigned", {ORDERS}, 3)]
    # orders[0] stays: a batch of it still in flight may yet be acked
    assert dict(consumer._batch_spans) == {ORDERS: {12: 10, 15: 13, 16: 16}}
    assert worker.delivered(ORDERS) == {ORDERS: [[4, 5]]}  # fetched anew, no rewind
    assert worker.rewinds == []


# -- release and the consumer thread ----------------------------------------------------


def test_a_released_batch_is_no_longer_waited_for_and_never_counts_as_processed(worker):
    worker.fetch({ORDERS: records(ORDERS, 10, 12)})
    message = worker.message(ORDERS)
    consumer = worker.consumer
    consumer.track_message(message)  # what faust's conductor does on delivery
    assert message in consumer.unacked

    async def release_while_waited_for() -> None:
        waiter = asyncio.ensure_future(consumer._wait_for_ack(timeout=1))
        await asyncio.sleep(0)  # a rebalance or a stop waits for an ack
        transport.release(worker.app, message)
        await asyncio.wait_for(waiter, 0.5)  # woken, well before faust's 1 s

    worker.run(release_while_waited_for())
    assert message.acked is True
    assert message not in consumer.unacked
    assert consumer._acked[ORDERS] == []
    assert consumer._new_offset(ORDERS) is None
    assert message.ack(consumer) is False  # a late ack records nothing either
    assert consumer._acked[ORDERS] == []


def test_the_batch_schema_hands_the_records_to_the_agent_as_the_event_value(worker):
    worker.fetch({ORDERS: records(ORDERS, 10, 11)})
    message = worker.message(ORDERS)
    event = worker.run(worker.topic.decode(message))
    assert event.key is None
    assert [r.offset for r in event.value] == [10, 11]
    assert event.message is message


def test_the_consumer_thread_reads_committed_records_only():
    with offline_app() as (app, loop):
        thread = app.consumer._thread
        assert type(thread) is transport.ConsumerThread

        async def isolation_level() -> str:
            kafka = thread._create_worker_consumer(app.transport)  # not started: no broker
            try:
                return str(kafka._isolation_level)
            finally:
                await kafka.stop()

        assert loop.run_until_complete(isolation_level()) == "read_committed"


def test_the_batch_size_defaults_to_a_thousand_and_is_set_per_app():
    with offline_app() as (app, _):
        assert transport.batch_size(app) == 1000
        transport.set_batch_size(app, 50)
        assert transport.batch_size(app) == 50
