"""The idle rule (SPEC.md, Event time): when all of a worker's aggregation partitions have
been silent for IDLE_TIMEOUT of wall-clock time, each takes the largest watermark among
them, so the last windows of a finite input become final.

The catch-up travels as a tick record through the repartition topic, so it is applied in
log order like any order: a redo after a crash meets it at the same place.
"""

import time
from collections.abc import Mapping


class IdleClock:
    """Wall-clock silence of the aggregation input, and which ticks are due."""

    def __init__(self, idle_timeout_ms: int) -> None:
        self.idle_timeout_s = idle_timeout_ms / 1000
        self._last_input = time.monotonic()
        self._ticked: dict[int, int] = {}

    def heard(self) -> None:
        """Orders arrived: not idle."""
        self._last_input = time.monotonic()

    def due_ticks(self, watermarks: Mapping[int, int]) -> dict[int, int]:
        """Partition -> watermark to tick it to, once silence has lasted IDLE_TIMEOUT."""
        if time.monotonic() - self._last_input < self.idle_timeout_s or not watermarks:
            return {}
        newest = max(watermarks.values())
        due = {p: newest for p, wm in watermarks.items()
               if wm < newest and self._ticked.get(p) != newest}
        self._ticked.update(due)
        return due
