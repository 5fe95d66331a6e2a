"""The idle rule (SPEC.md, Event time): when all of a worker's aggregation partitions have
been silent for IDLE_TIMEOUT of wall-clock time, each takes the largest watermark among
them. That alone leaves the windows holding the last orders open forever, so while the
silence goes on (from 2 x IDLE_TIMEOUT), event time follows the wall clock past the
latest order, until every window holding an order is final (at most the largest window
plus ALLOWED_LATENESS past it). New orders stop it: stream time is theirs again.

The catch-up travels as tick records through the repartition topic, so it is applied in
log order like any order: a redo after a crash meets it at the same place.
"""

import time
from collections.abc import Mapping

TICK_EVERY_S = 1.0  # at most one round of ticks a second: bounded changelog growth


class IdleClock:
    """Wall-clock silence of the aggregation input, and which ticks are due."""

    def __init__(self, idle_timeout_ms: int, catch_up_ms: int) -> None:
        self.idle_timeout_s = idle_timeout_ms / 1000
        self.catch_up_ms = catch_up_ms
        self._last_input = time.monotonic()
        self._last_round = float("-inf")
        self._ticked: dict[int, int] = {}

    def heard(self) -> None:
        """Orders arrived: not idle."""
        self._last_input = time.monotonic()

    def due_ticks(self, watermarks: Mapping[int, int], latest_order_ms: int) -> dict[int, int]:
        """Partition -> watermark to tick it to; empty unless silent for IDLE_TIMEOUT."""
        now = time.monotonic()
        silent_s = now - self._last_input
        if silent_s < self.idle_timeout_s or not watermarks or now - self._last_round < (
                TICK_EVERY_S):
            return {}
        following_ms = int(max(silent_s - 2 * self.idle_timeout_s, 0) * 1000)
        target = max(max(watermarks.values()),
                     latest_order_ms + min(following_ms, self.catch_up_ms))
        due = {p: target for p, wm in watermarks.items()
               if wm < target and self._ticked.get(p) != target}
        self._ticked.update(due)
        self._last_round = now
        return due
