"""Event-time alignment of the ingest's input partitions (Flink's watermark alignment).

Each aggregation partition's watermark is the largest order time it has seen (SPEC.md,
Event time), and its orders come from every orders partition. If one orders partition is
read far ahead of another, which is what catching up a backlog does (a fetch returns
thousands of one partition's records before the next partition's), the lagging
partition's orders reach the aggregation behind the watermark and become late, though
nothing about them is late.

So the ingest pauses an input partition whose orders are more than `max_drift_ms` ahead
of the slowest partition still delivering, and resumes it once the others caught up.
A partition holds the others back while it has records left to read (its lag after its
last batch); once caught up, it stops holding them `stale_s` after its last batch, as
Kafka Streams' `max.task.idle.ms` bounds its wait. A partition with records left that
delivers nothing for `max_wait_s` (stuck) holds nobody back either.
"""

import time
from collections.abc import Callable, Iterable

from faust.types import TP


class Alignment:
    """Per input partition: the latest order time read, and when it last delivered."""

    def __init__(self, max_drift_ms: int, stale_s: float = 1.0, max_wait_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_drift_ms = max_drift_ms
        self.stale_s = stale_s
        self.max_wait_s = max_wait_s
        self._clock = clock
        self._front: dict[TP, int] = {}
        self._heard: dict[TP, float] = {}
        self._backlog: dict[TP, bool] = {}
        self.paused: set[TP] = set()

    def reset(self) -> None:
        """A new assignment: forget every partition (the consumer resumed them all)."""
        self._front.clear()
        self._heard.clear()
        self._backlog.clear()
        self.paused.clear()

    def observe(self, tp: TP, latest_order_ms: int | None, backlog: bool = False) -> None:
        """A batch of `tp` was ingested; `latest_order_ms` is its latest order time, and
        `backlog` whether `tp` has more records to read."""
        self._heard[tp] = self._clock()
        self._backlog[tp] = backlog
        if latest_order_ms is not None:
            self._front[tp] = max(self._front.get(tp, latest_order_ms), latest_order_ms)

    def decide(self) -> tuple[set[TP], set[TP]]:
        """Which partitions to pause and which to resume now; `paused` is updated."""
        now = self._clock()
        delivering = [front for tp, front in self._front.items() if tp not in self.paused
                      and now - self._heard[tp] < (
                          self.max_wait_s if self._backlog[tp] else self.stale_s)]
        if delivering:
            floor = min(delivering)
            ahead = {tp for tp, front in self._front.items()
                     if front > floor + self.max_drift_ms}
        else:
            ahead = set()
        pause, resume = ahead - self.paused, self.paused - ahead
        self.paused = ahead
        return pause, resume


def apply(alignment: Alignment, hold: Callable[[Iterable[TP]], None],
          release: Callable[[Iterable[TP]], None]) -> None:
    """Hold and release what `alignment` decides (app.transport.Consumer's calls)."""
    pause, resume = alignment.decide()
    if resume:
        release(resume)
    if pause:
        hold(pause)
