"""The newest records of a topic, for the dashboard: recent final windows, and samples of
orders-dlq and orders-late. A short-lived consumer with no group reads the last few
records of every partition (committed ones only); answers are kept a few seconds, so a
page polling every 2 s does not start a consumer each time."""

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from api.fanout_ring import Entry, KafkaSource

KEEP_S = 4.0
READ_TIMEOUT_S = 3.0


class TailUnavailable(RuntimeError):
    """The broker did not give a topic's last records in time."""


class Tails:
    """The last records of topics, each read at most every KEEP_S."""

    def __init__(self, client: Mapping[str, Any]) -> None:
        self.client = client
        self._kept: dict[tuple[str, int], tuple[float, list[Entry] | TailUnavailable]] = {}
        self._lock = asyncio.Lock()

    async def last(self, topic: str, count: int) -> list[Entry]:
        """Up to `count` records of each partition of `topic`, newest last per partition."""
        async with self._lock:  # one read at a time: pollers share it
            kept = self._kept.get((topic, count))
            if kept is None or time.monotonic() - kept[0] >= KEEP_S:
                try:
                    found: list[Entry] | TailUnavailable = await asyncio.wait_for(
                        read_tail(self.client, topic, count), READ_TIMEOUT_S + 2)
                except (TimeoutError, KafkaError, OSError) as error:
                    # kept too: a broker that does not answer is asked again in KEEP_S,
                    # not by every request meanwhile
                    found = TailUnavailable(f"{topic} could not be read: {error!r}")
                kept = self._kept[topic, count] = (time.monotonic(), found)
            if isinstance(kept[1], TailUnavailable):
                raise kept[1]
            return kept[1]


async def read_tail(client: Mapping[str, Any], topic: str, count: int) -> list[Entry]:
    """The last `count` records of every partition of `topic`, by partition."""
    source = KafkaSource(client, "earliest")
    try:
        await source.start()
        tps = sorted(await source.partitions([topic]))
        if not tps:
            return []
        deadline = time.monotonic() + READ_TIMEOUT_S
        ends = await source.log_ends(tps, READ_TIMEOUT_S)
        source.assign({tp: max(0, ends[tp] - count) for tp in tps})
        found: dict[TopicPartition, list[Entry]] = {tp: [] for tp in tps}
        while time.monotonic() < deadline:
            behind = [tp for tp in tps if await source.position(tp) < ends[tp]]
            if not behind:
                break
            for tp, entries in (await source.getmany(200, 10_000)).items():
                found[tp].extend(e for e in entries if e.offset < ends[tp])
    finally:
        await source.stop()
    return [entry for tp in tps for entry in found[tp][-count:]]

