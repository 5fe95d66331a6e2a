"""Changelog records of the partition stores, and restoring a store from them.

One record per processed batch: the batch's updates as a JSON object (`null`
deletes a key). Records are applied in order, so a store restored from an empty
database plus every record equals the store that wrote them.
"""

import logging
from collections.abc import Callable, Mapping

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from tables.store import PartitionStore, Updates

log = logging.getLogger(__name__)
MAX_RECORD_BYTES = 32 * 1024 * 1024


class StoreAheadOfChangelog(RuntimeError):
    """Local state reflects changelog records the broker no longer has."""

    def __init__(self, topic: str, partition: int, local_offset: int, end_offset: int) -> None:
        super().__init__(
            f"store of {topic}[{partition}] reflects changelog offset {local_offset} "
            f"but the broker's changelog ends at {end_offset}"
        )
        self.topic, self.partition = topic, partition


def encode_updates(updates: Updates) -> bytes:
    """One changelog record's value."""
    return orjson.dumps(updates)


def decode_updates(value: bytes) -> dict[str, str | None]:
    """Inverse of encode_updates."""
    decoded: dict[str, str | None] = orjson.loads(value)
    return decoded


def new_reader(bootstrap: list[str]) -> AIOKafkaConsumer:
    """A consumer outside any group, for reading changelogs from a given offset."""
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_RECORD_BYTES,
        fetch_max_bytes=MAX_RECORD_BYTES,
    )


async def restore(
    bootstrap: list[str],
    topic: str,
    stores: Mapping[int, PartitionStore],
    on_progress: Callable[[int, int], None] | None = None,
) -> None:
    """Bring each store up to the end of its changelog partition.

    A store whose offset is beyond the end raises StoreAheadOfChangelog: the
    broker lost records this state was built from.
    """
    reader = new_reader(bootstrap)
    await reader.start()
    try:
        tps = {TopicPartition(topic, p): store for p, store in stores.items()}
        ends = await reader.end_offsets(list(tps))
        for tp, store in tps.items():
            if store.changelog_offset >= ends[tp]:
                raise StoreAheadOfChangelog(topic, tp.partition, store.changelog_offset, ends[tp])
        reader.assign(list(tps))
        for tp, store in tps.items():
            reader.seek(tp, store.changelog_offset + 1)
        await _read_to_end(reader, tps, dict(ends), on_progress)
    finally:
        await reader.stop()


async def _read_to_end(
    reader: AIOKafkaConsumer,
    stores: Mapping[TopicPartition, PartitionStore],
    ends: dict[TopicPartition, int],
    on_progress: Callable[[int, int], None] | None,
) -> None:
    """Apply records until every partition's position reaches its end."""
    pending = {tp for tp, store in stores.items() if store.changelog_offset + 1 < ends[tp]}
    while pending:
        fetched = await reader.getmany(*pending, timeout_ms=500, max_records=2000)
        for tp, records in fetched.items():
            updates: dict[str, str | None] = {}
            for record in records:
                updates.update(decode_updates(record.value))
            stores[tp].commit(updates, records[-1].offset)
            if on_progress:
                on_progress(tp.partition, len(records))
        for tp in list(pending):
            # Once a fetch has answered, its high watermark is the end. tansu's ListOffsets
            # can lag the log end, and right after a topic is deleted and recreated it can
            # still give the old topic's end: waiting for that would never finish.
            highwater = reader.highwater(tp)
            if highwater is not None:
                ends[tp] = highwater
            if await reader.position(tp) >= ends[tp]:
                pending.discard(tp)
