"""What a pipeline subprocess shares with scripts/bench.py: its settings and its status.

Settings come as BENCH_* environment variables (`faust -A` owns the command line). The status
is a JSON file, replaced whole: the bench polls it; the child writes it when it consumes its
first order, at most every WRITE_EVERY_S while it counts and once more when it is done. Times
are the child's own `time.monotonic()`, so `seconds` (first order consumed to the N-th
counted) has no polling error in it. `first_consumed_at` is the same clock's reading, which
on Linux (CLOCK_MONOTONIC) the bench's process shares: the Quix run is timed to a moment the
bench itself sees (bench/quix.py).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

WRITE_EVERY_S = 0.25


@dataclass(frozen=True)
class ChildConfig:
    """One run's settings, from the environment scripts/bench.py gives the subprocess."""

    broker: str  # host:port
    topic: str
    orders: int  # N: the run is done when this many are counted
    partitions: int
    event_span_ms: int  # last order time minus first: how out of order orders can get
    group: str  # consumer group / app id, fresh per run
    state_dir: Path
    status_path: Path
    broker_kind: str = "tansu"  # or "kafka" (bench.harness.BROKER_KINDS)
    exactly_once: bool = False  # Quix: processing_guarantee="exactly-once" (Kafka only)

    @classmethod
    def from_env(cls) -> ChildConfig:
        """Read BENCH_BROKER, BENCH_TOPIC, BENCH_ORDERS, ... (see `to_env`)."""
        env = os.environ
        return cls(broker=env["BENCH_BROKER"], topic=env["BENCH_TOPIC"],
                   orders=int(env["BENCH_ORDERS"]), partitions=int(env["BENCH_PARTITIONS"]),
                   event_span_ms=int(env["BENCH_EVENT_SPAN_MS"]),
                   group=env["BENCH_GROUP"], state_dir=Path(env["BENCH_STATE_DIR"]),
                   status_path=Path(env["BENCH_STATUS"]),
                   broker_kind=env.get("BENCH_BROKER_KIND", "tansu"),
                   exactly_once=env.get("BENCH_EXACTLY_ONCE") == "1")

    def to_env(self) -> dict[str, str]:
        """The variables `from_env` reads."""
        return {"BENCH_BROKER": self.broker, "BENCH_TOPIC": self.topic,
                "BENCH_ORDERS": str(self.orders), "BENCH_PARTITIONS": str(self.partitions),
                "BENCH_EVENT_SPAN_MS": str(self.event_span_ms),
                "BENCH_GROUP": self.group, "BENCH_STATE_DIR": str(self.state_dir),
                "BENCH_STATUS": str(self.status_path), "BENCH_BROKER_KIND": self.broker_kind,
                "BENCH_EXACTLY_ONCE": "1" if self.exactly_once else "0"}


def order_time_ms(order: dict[str, Any]) -> int:
    """An order's event time, epoch ms, from its ISO-8601 `order_time` (as datagen writes it)."""
    return int(datetime.fromisoformat(order["order_time"]).timestamp() * 1000)


class Status:
    """Counters of one pipeline run, mirrored to `path`."""

    def __init__(self, path: Path, target: int) -> None:
        self.path, self.target = path, target
        self.consumed = 0  # orders read from the input topic
        self.counted = 0  # orders applied to the pipeline's result
        self.first_consumed: float | None = None
        self.done_at: float | None = None
        self.checks: dict[str, list[int]] = {}  # name -> [got, expected]
        self.error: str | None = None
        self._written = 0.0

    def on_consumed(self, orders: int = 1) -> None:
        """`orders` more read from the input; the first one starts the clock (and is written
        at once)."""
        self.consumed += orders
        if self.first_consumed is None:
            self.first_consumed = time.monotonic()
            self.write(force=True)

    def on_counted(self, orders: int = 1) -> bool:
        """`orders` more applied; True exactly once, when the target is reached."""
        self.counted += orders
        if self.done_at is None and self.counted >= self.target:
            self.done_at = time.monotonic()
            return True
        self.write()
        return False

    def finish(self, checks: dict[str, tuple[int, int]], error: str | None = None) -> None:
        """The result's checks (got, expected) and any error; written at once."""
        self.checks = {name: list(pair) for name, pair in checks.items()}
        self.error = error
        self.write(force=True)

    @property
    def seconds(self) -> float | None:
        """From the first order consumed to the N-th counted, once both happened."""
        if self.first_consumed is None or self.done_at is None:
            return None
        return self.done_at - self.first_consumed

    def document(self) -> dict[str, Any]:
        """What the file holds."""
        return {"consumed": self.consumed, "counted": self.counted, "target": self.target,
                "first_consumed_at": self.first_consumed, "seconds": self.seconds,
                "finished": bool(self.checks) or self.error is not None,
                "checks": self.checks, "error": self.error}

    def write(self, force: bool = False) -> None:
        """Replace the file (atomically), unless it was written less than WRITE_EVERY_S ago."""
        now = time.monotonic()
        if not force and now - self._written < WRITE_EVERY_S:
            return
        self._written = now
        write_status(self.path, self.document())


def write_status(path: Path, document: dict[str, Any]) -> None:
    """Replace a status file whole (atomically: the bench may read it at any moment)."""
    partial = path.with_suffix(".tmp")
    partial.write_text(json.dumps(document))
    os.replace(partial, path)


def read_status(path: Path) -> dict[str, Any] | None:
    """The last status a child wrote, None before its first write."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
