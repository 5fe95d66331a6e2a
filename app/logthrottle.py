"""One line per kind of client error while the broker is away, not one per retry.

aiokafka logs each failed connect, metadata update and fetch at ERROR, several times a
second per connection: a 30 s outage wrote thousands of lines. They are the broker's
trouble, not the worker's (the worker says what it does about it: /ready, and one line
if it stops), so they go out as INFO marked `kafka client:`, each kind at most once per
INTERVAL_S with a count of those held back.

aiokafka says it lost a connection only in its log, so these records are also the
worker's first sign of broker trouble: `on_trouble` hears of each one, held back or not.
"""

import logging
import time
from collections.abc import Callable

INTERVAL_S = 30.0


class ClientErrorThrottle(logging.Filter):
    """For records of the Kafka client: INFO, and each message template once per
    interval."""

    def __init__(self, marks: dict[str, str] | None = None,
                 on_trouble: Callable[[], None] | None = None) -> None:
        super().__init__()
        self._on_trouble = on_trouble
        # logger name prefix -> the mark its lines get; mode's timers warn each time a
        # timer runs past its interval, which a loaded machine does every few seconds
        self._marks = marks or {"aiokafka": "kafka client", "mode.timers": "timer"}
        self._prefixes = tuple(self._marks)
        self._last: dict[tuple[str, object], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self._prefixes) or record.levelno < logging.WARNING:
            return True
        if self._on_trouble is not None and record.name.startswith("aiokafka"):
            self._on_trouble()
        record.levelno, record.levelname = logging.INFO, "INFO"
        key = (record.name, record.msg)
        now = time.monotonic()
        since, held = self._last.get(key, (-INTERVAL_S, 0))
        if now - since < INTERVAL_S:
            self._last[key] = (since, held + 1)
            return False
        self._last[key] = (now, 0)
        mark = next(m for p, m in self._marks.items() if record.name.startswith(p))
        record.msg = f"{mark}: {record.msg}" + (
            f" ({held} more like it held back)" if held else "")
        return True


def install(on_trouble: Callable[[], None] | None = None) -> None:
    """Throttle on every handler of the root logger (filters on a logger miss children)."""
    throttle = ClientErrorThrottle(on_trouble=on_trouble)
    for handler in logging.getLogger().handlers:
        handler.addFilter(throttle)
