"""Changelog records and restore against the real broker: a record per key, whole batches
only, owners fenced."""

import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from app.producer import Producer
from tables.changelog import (
    COMMIT_KEY,
    FENCE_KEY,
    RestoreStalled,
    Restoring,
    StoreAheadOfChangelog,
    batch_records,
    restore,
)
from tables.manager import StoreManager
from tables.store import PartitionStore
from tests.integration.conftest import consume_all, run_sync

pytestmark = pytest.mark.integration


async def _topic(broker: str) -> str:
    topic = f"changelog-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
    finally:
        await admin.close()
    return topic


async def _write(broker: str, topic: str, batches: list[list[tuple[bytes, bytes | None]]],
                 epoch: int = -1) -> list[int]:
    """Each list of records as one write to partition 1; the last offset of each."""
    producer = Producer({"bootstrap_servers": [broker]})
    await producer.start()
    try:
        return [await producer.write("agg", topic, 1, records, epoch) for records in batches]
    finally:
        await producer.stop()


def _restored(broker: str, topic: str, store: PartitionStore, fence: int) -> Restoring:
    restoring = Restoring(store, fence)
    run_sync(restore({"bootstrap_servers": [broker]}, topic, {1: restoring}))
    return restoring


def test_restore_applies_whole_batches_in_order_and_resumes_from_the_local_offset(
        broker, tmp_path):
    topic = run_sync(_topic(broker))
    [fence] = run_sync(_write(broker, topic, [[(FENCE_KEY, b"")]]))
    first, _, third = run_sync(_write(broker, topic, [
        batch_records({"t|a": "1", "t|b": "1"}),
        batch_records({"t|a": "2"}),
        batch_records({"t|b": None, "t|c": "9"}),
    ], epoch=fence))
    fresh = PartitionStore(tmp_path / "fresh")
    _restored(broker, topic, fresh, fence)
    assert dict(fresh.scan("t|")) == {"t|a": "2", "t|c": "9"}
    assert (fresh.changelog_offset, fresh.epoch) == (third, fence)

    # a store that already holds the first batch reads only the rest
    partial = PartitionStore(tmp_path / "partial")
    partial.commit({"t|a": "1", "t|b": "1", "t|z": "local"}, first, fence)
    _restored(broker, topic, partial, fence)
    assert dict(partial.scan("t|")) == {"t|a": "2", "t|c": "9", "t|z": "local"}


def test_a_store_ahead_of_the_changelog_is_refused(broker, tmp_path):
    topic = run_sync(_topic(broker))
    [fence] = run_sync(_write(broker, topic, [[(FENCE_KEY, b"")]]))
    ahead = PartitionStore(tmp_path / "ahead")
    ahead.commit({"t|a": "5"}, changelog_offset=40)
    with pytest.raises(StoreAheadOfChangelog, match="offset 40 but the broker's changelog ends"):
        _restored(broker, topic, ahead, fence)


def test_a_restore_that_reads_nothing_for_its_allowance_says_where_it_stopped(
        broker, tmp_path):
    # a fence the log never reaches (offset 9 of a log of 3 records): the restore waits
    # for records that never come, and gives up after stall_s naming the partition
    topic = run_sync(_topic(broker))
    run_sync(_write(broker, topic, [[(FENCE_KEY, b"")], batch_records({"t|a": "1"})]))
    store = PartitionStore(tmp_path / "stalled")
    with pytest.raises(RestoreStalled, match=rf"read nothing for 2 s: {topic}\[1\] at 3 of 10 "):
        run_sync(restore({"bootstrap_servers": [broker]}, topic, {1: Restoring(store, 9)},
                         stall_s=2))


class Crashed(Exception):
    """Where a worker died."""


def _manager(broker: str, topic: str, root: Path, producer: Producer) -> StoreManager:
    crashes: list[BaseException] = []
    manager = StoreManager("agg", root, topic, {"bootstrap_servers": [broker]},
                           on_crash=crashes.append, writer=producer)
    manager.crashes = crashes  # type: ignore[attr-defined]
    return manager


async def _owner_takes_over(broker: str, topic: str, root: Path) -> dict[str, str]:
    """A worker with an empty DATA_DIR is assigned partition 1: fence, restore, repair; then
    it writes one batch of its own. Its store's rows."""
    producer = Producer({"bootstrap_servers": [broker]})
    await producer.start()
    manager = _manager(broker, topic, root, producer)
    try:
        await manager.on_assigned({1})
        async with manager.holding(1) as store:
            assert store is not None, manager.crashes  # type: ignore[attr-defined]
            await manager.write(1, store, {"t|d": "4"})
            return dict(store.scan("t|"))
    finally:
        await manager.close_all()
        await producer.stop()


def test_a_worker_killed_between_a_batchs_records_leaves_nothing_a_restore_applies(
        broker, tmp_path):
    topic = run_sync(_topic(broker))
    # the first owner: a whole batch, then a kill -9 after two records of the next one
    [epoch] = run_sync(_write(broker, topic, [[(FENCE_KEY, b"")]]))
    run_sync(_write(broker, topic, [batch_records({"t|a": "1", "t|b": "2"}),
                                    [(b"t|a", b"100"), (b"t|c", b"3")]], epoch=epoch))
    rows = run_sync(_owner_takes_over(broker, topic, tmp_path / "second"))
    assert rows == {"t|a": "1", "t|b": "2", "t|d": "4"}

    # the unfinished batch's keys were written again with their committed values (t|c has
    # none: a tombstone), so a restore from scratch agrees, marker or no marker
    keyed = [(k, v) for k, v in consume_all(broker, topic) if k not in (FENCE_KEY, COMMIT_KEY)]
    assert keyed[-3:] == [(b"t|a", b"1"), (b"t|c", None), (b"t|d", b"4")]
    third = PartitionStore(tmp_path / "third")
    _restored(broker, topic, third, fence=-1)
    assert dict(third.scan("t|")) == rows


def test_an_owner_fenced_by_a_new_one_is_dropped_from_every_later_restore(broker, tmp_path):
    topic = run_sync(_topic(broker))
    [old_epoch] = run_sync(_write(broker, topic, [[(FENCE_KEY, b"")]]))
    run_sync(_write(broker, topic, [batch_records({"t|a": "1"})], epoch=old_epoch))
    rows = run_sync(_owner_takes_over(broker, topic, tmp_path / "new"))
    assert rows == {"t|a": "1", "t|d": "4"}
    # the old owner resumes (it was paused past the session timeout) and writes a batch
    run_sync(_write(broker, topic, [batch_records({"t|a": "999", "t|x": "1"})],
                    epoch=old_epoch))
    later = PartitionStore(tmp_path / "later")
    _restored(broker, topic, later, fence=-1)
    assert dict(later.scan("t|")) == {"t|a": "1", "t|d": "4"}
