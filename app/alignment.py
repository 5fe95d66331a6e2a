"""Event-time alignment of the ingest's input partitions (Flink's watermark alignment).

Each aggregation partition's watermark is the largest order time it has seen (SPEC.md,
Event time), and its orders come from every orders partition. If one orders partition is
read far ahead of another, which is what catching up a backlog does (a fetch returns
thousands of one partition's records before the next partition's), the lagging
partition's orders reach the aggregation behind the watermark and become late, though
nothing about them is late.

So the ingest pauses an input partition whose orders are more than `max_drift_ms` ahead
of the slowest partition still delivering, and resumes it once the others caught up.
A partition that has delivered nothing for `stale_s` (caught up, or stuck) no longer
holds the others back, as Kafka Streams' `max.task.idle.ms` bounds its wait.
"""

import time
from collections.abc import Callable, Iterable

from faust.types import TP


class Alignment:
    """Per input partition: the latest order time read, and when it last delivered."""

    def __init__(self, max_drift_ms: int, stale_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_drift_ms = max_drift_ms
        self.stale_s = stale_s
        self._clock = clock
        self._front: dict[TP, int] = {}
        self._heard: dict[TP, float] = {}
        self.paused: set[TP] = set()

    def reset(self) -> None:
        """A new assignment: forget every partition (the consumer resumed them all)."""
        self._front.clear()
        self._heard.clear()
        self.paused.clear()

    def observe(self, tp: TP, latest_order_ms: int | None) -> None:
        """A batch of `tp` was ingested; `latest_order_ms` is its latest order time."""
        self._heard[tp] = self._clock()
        if latest_order_ms is not None:
            self._front[tp] = max(self._front.get(tp, latest_order_ms), latest_order_ms)

    def decide(self) -> tuple[set[TP], set[TP]]:
        """Which partitions to pause and which to resume now; `paused` is updated."""
        now = self._clock()
        delivering = [front for tp, front in self._front.items()
                      if tp not in self.paused and now - self._heard[tp] < self.stale_s]
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
