"""Where the aggregate stage's results go: sink objects the composition root (app/main.py)
registers. A sink turns what a batch changed into records, which leave with the batch
(in its transaction, or once it is committed), and may act once the batch is committed.

- `BuyerTotalsSink`: the changed buyers' totals to `buyer-totals` (an upsert stream);
- `PrintSink`: Flink's print sink, `+I[...]`, `-U[...]`/`+U[...]`, on stdout;
- `WindowResultsSink`: each final window row, once, to `window-results`.
A new sink is a class with these two methods, registered in `create_app`."""

import sys
from collections.abc import Callable, Sequence
from typing import Protocol

from core.aggregate import TotalChange
from core.models import WindowResult
from core.sinks import buyer_total_records, print_lines
from tables.changelog import Outgoing


class TotalsSink(Protocol):
    """A sink of the buyer totals a batch changed."""

    def records(self, partition: int, changes: Sequence[TotalChange]) -> list[Outgoing]:
        """Records that leave with the batch of aggregation partition `partition` (and
        again, from the store's outbox, after a crash between its commit and them)."""

    def committed(self, changes: Sequence[TotalChange]) -> None:
        """Once the batch is committed: side effects that never repeat."""


class WindowSink(Protocol):
    """A sink of the window rows a watermark made final."""

    def records(self, finals: Sequence[WindowResult]) -> list[Outgoing]:
        """Records that leave with the commit that closes the windows."""


class BuyerTotalsSink:
    """The changed buyers' totals to `topic`, keyed by buyer."""

    def __init__(self, topic: str, partition_of: Callable[[int], int | None]) -> None:
        """`partition_of`: the topic's partition of an aggregation partition's buyers,
        when it is one (None: the producer hashes the key)."""
        self.topic, self.partition_of = topic, partition_of

    def records(self, partition: int, changes: Sequence[TotalChange]) -> list[Outgoing]:
        target = self.partition_of(partition)
        return [(self.topic, key, value, target) for key, value in buyer_total_records(changes)]

    def committed(self, changes: Sequence[TotalChange]) -> None:
        pass


class PrintSink:
    """Flink's print sink on the process's real stdout (faust's worker redirects
    sys.stdout into its log), once per committed batch."""

    def records(self, partition: int, changes: Sequence[TotalChange]) -> list[Outgoing]:
        return []

    def committed(self, changes: Sequence[TotalChange]) -> None:
        if changes:
            out = sys.__stdout__ or sys.stdout
            out.write("\n".join(print_lines(changes)) + "\n")
            out.flush()


class WindowResultsSink:
    """Final window rows to `topic`."""

    def __init__(self, topic: str) -> None:
        self.topic = topic

    def records(self, finals: Sequence[WindowResult]) -> list[Outgoing]:
        return [(self.topic, key, value, None) for key, value in finals]
