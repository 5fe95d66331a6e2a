"""Noticing, while the worker runs, that the broker no longer backs the local state.

A store reflects positions on the broker: the changelog offset of its last record, and
the last offset it applied of each input partition. A broker that has every record the
store was built from ends past all of them. One that ends at or below any of them was
emptied, truncated or had the topic recreated, and what the store says was applied is
no longer there: an order read now at an offset the store holds as applied would be
skipped, and a new changelog record would carry an offset the store already reflects.

Three checks find it, the first to see it wins:
- `Watch.poll`, every CHECK_INTERVAL_S: the end offsets (ListOffsets) of every
  partition the restored stores hold a position in, asked after the positions were
  read, so a batch committed meanwhile cannot make it look behind; a topic the broker no
  longer has is behind too, and so is every partition of a topic whose id (from a broker
  that has topic ids) is not the one first seen, however far the new topic was refilled;
- before a batch is applied: the fetch's high watermark against the store's position;
- after a changelog record is sent: its offset against the store's changelog offset.
A broker that does not answer the poll for UNREACHABLE_AFTER_S makes /ready 503 too,
without stopping anything: the state is still the broker's, just not growing.
"""

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from app.topicids import topic_ids

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 2.0
UNREACHABLE_AFTER_S = 6.0
ASK_TIMEOUT_S = 5.0

Positions = Mapping[tuple[str, int], int]  # (topic, partition) -> last offset held


@dataclass(frozen=True)
class Loss:
    """What the broker lacks: per topic, the partitions it ends at or below the state."""

    behind: Mapping[str, tuple[int, ...]]
    detail: str

    def merged(self, other: "Loss") -> "Loss":
        """Both losses' partitions, with this one's detail."""
        behind = {t: set(p) for t, p in self.behind.items()}
        for topic, parts in other.behind.items():
            behind.setdefault(topic, set()).update(parts)
        return Loss({t: tuple(sorted(p)) for t, p in behind.items()}, self.detail)

    @property
    def topics(self) -> str:
        """`orders[0,1], app-dedup-changelog[0]`, topics in name order."""
        return ", ".join(f"{topic}[{','.join(map(str, parts))}]" if parts else topic
                         for topic, parts in sorted(self.behind.items()))


def behind(positions: Positions, ends: Mapping[tuple[str, int], int | None]) -> Loss | None:
    """The partitions whose end (None: the topic is gone) is at or below a held position."""
    lacking: dict[str, list[int]] = {}
    worst = None
    for (topic, partition), held in sorted(positions.items()):
        end = ends.get((topic, partition))
        if end is None or end <= held:
            lacking.setdefault(topic, []).append(partition)
            worst = worst or (topic, partition, held, end)
    if worst is None:
        return None
    topic, partition, held, end = worst
    where = "has no such partition" if end is None else f"ends at offset {end}"
    return Loss({t: tuple(p) for t, p in lacking.items()},
                f"{topic}[{partition}] {where} but the state applied offset {held}")


def forgotten(positions: Positions, missing: set[str],
              counts: Mapping[str, int]) -> Loss | None:
    """The topics the state was built against that are deleted (or created again) though
    it holds no partition of them now (the group assigns none of a deleted topic): every
    partition they had (`counts`)."""
    unheld = sorted(missing - {topic for topic, _ in positions})
    if not unheld:
        return None
    return Loss({t: tuple(range(counts.get(t, 0))) for t in unheld},
                f"{unheld[0]}, which the state was built from, was deleted or created again")


def recreated(positions: Positions, renewed: set[str]) -> Loss | None:
    """Every held partition of the topics deleted and created again (a new topic id)."""
    lost: dict[str, list[int]] = {}
    for topic, partition in sorted(positions):
        if topic in renewed:
            lost.setdefault(topic, []).append(partition)
    if not lost:
        return None
    return Loss({t: tuple(p) for t, p in lost.items()},
                f"{next(iter(lost))} was deleted and created again (its topic id changed)")


class Watch:
    """End offsets of the partitions the state holds positions in, from one consumer
    outside any group, and since when the broker has not answered."""

    def __init__(self, client: Mapping[str, Any], ids: Mapping[str, bytes] | None = None) -> None:
        self._client = client  # how to connect (Settings.kafka_client)
        self._reader: AIOKafkaConsumer | None = None
        self._polling = asyncio.Lock()  # the timer and the batches' gate share the reader
        self.answered: float | None = None
        # the topic ids the state was built against, or first seen (a broker with ids)
        self.ids: dict[str, bytes] = dict(ids or {})
        self.learned = False  # ids were added since this was last cleared
        self.counts: dict[str, int] = {}  # partitions of each topic, as found at start

    async def stop(self) -> None:
        if self._reader is not None:
            await self._reader.stop()
            self._reader = None

    @property
    def unreachable_s(self) -> float:
        """Seconds since the broker last answered a poll (0 before the first)."""
        return 0.0 if self.answered is None else time.monotonic() - self.answered

    async def poll(self, positions: Positions) -> Loss | None:
        """The loss, if the broker ends below the positions; None also when it did not
        answer (`unreachable_s` grows)."""
        try:
            async with self._polling:
                return await self.ask(positions)
        except (KafkaError, OSError, TimeoutError) as error:
            log.debug("broker check failed: %r", error)
            await self.stop()  # a new connection next time
            return None

    async def ask(self, positions: Positions) -> Loss | None:
        """The loss, if the broker ends below the positions or a topic of theirs has a new
        id; raises when it does not answer."""
        ends, renewed, gone = await asyncio.wait_for(self._ends(positions), ASK_TIMEOUT_S)
        self.answered = time.monotonic()
        found = [loss for loss in (recreated(positions, renewed), behind(positions, ends),
                                   forgotten(positions, renewed | gone, self.counts))
                 if loss is not None]
        return functools.reduce(Loss.merged, found) if found else None

    async def _ends(self, positions: Positions) -> tuple[
            dict[tuple[str, int], int | None], set[str], set[str]]:
        """The end of each partition (None: the broker has no such partition), the topics
        whose id is not the one first seen, and the topics the state was built against
        (their ids kept) that the broker no longer has."""
        reader = self._reader
        if reader is None:
            reader = AIOKafkaConsumer(**self._client, group_id=None,
                                      enable_auto_commit=False, auto_offset_reset="none",
                                      fetch_max_bytes=64 * 1024,
                                      max_partition_fetch_bytes=64 * 1024,
                                      isolation_level="read_committed",
                                      request_timeout_ms=int(ASK_TIMEOUT_S * 1000))
            self._reader = reader
            await reader.start()
        # fresh metadata of every topic each time: a deleted or recreated topic shows
        client = reader._client  # noqa: SLF001
        metadata = await client.fetch_all_metadata()
        # every topic the state knows, held now or not: a worker left with no partition
        # of a deleted topic (the group assigns none) still holds state built from it
        renewed = self._renewed(await topic_ids(client, sorted(
            {t for t, _ in positions} | set(self.ids))))
        gone = {t for t in self.ids if not metadata.partitions_for_topic(t)}
        present = {(t, p) for t, p in positions
                   if p in (metadata.partitions_for_topic(t) or ())}
        tps = [TopicPartition(t, p) for t, p in sorted(present)]
        found = await reader.end_offsets(tps) if tps else {}
        ends: dict[tuple[str, int], int | None] = {
            (tp.topic, tp.partition): found[tp] for tp in tps}
        suspects = {tp: positions[(tp.topic, tp.partition)] for tp in tps
                    if found[tp] <= positions[(tp.topic, tp.partition)]}
        for tp in await self._holding_records(reader, suspects):
            ends[(tp.topic, tp.partition)] = suspects[tp] + 1
        return ends, renewed, gone

    def _renewed(self, current: Mapping[str, bytes]) -> set[str]:
        """The topics whose id is not the one kept; an id seen first is kept (`learned`)."""
        renewed = set()
        for topic, topic_id in current.items():
            if topic not in self.ids:
                self.ids[topic] = topic_id
                self.learned = True
            elif self.ids[topic] != topic_id:
                renewed.add(topic)
        return renewed

    async def _holding_records(self, reader: AIOKafkaConsumer,
                               suspects: Mapping[TopicPartition, int]) -> set[TopicPartition]:
        """Those of the partitions where a fetch at the offset given finds it, or the high
        watermark is past it. tansu answers ListOffsets with the first offset of the last
        record batch, not the log end: behind by a batch, and only a fetch tells."""
        if not suspects:
            return set()
        reader.assign(list(suspects))
        for tp, offset in suspects.items():
            reader.seek(tp, offset)
        holding: set[TopicPartition] = set()
        pending, out_of_range = set(suspects), set()
        deadline = time.monotonic() + ASK_TIMEOUT_S / 2
        while pending and time.monotonic() < deadline:
            try:
                fetched = await reader.getmany(*pending, timeout_ms=200, max_records=1)
            except OffsetOutOfRangeError as error:
                gone = set(error.args[0]) if error.args else set(pending)
                out_of_range |= gone
                pending -= gone
                continue
            for tp in list(pending):
                if fetched.get(tp) or (reader.highwater(tp) or 0) > suspects[tp]:
                    holding.add(tp)
                    pending.discard(tp)
        # only an answer says behind: a fetch that did not come back in time says nothing
        holding |= {tp for tp in pending if reader.highwater(tp) is None}
        reader.assign([])
        return holding
