"""What the stages need of the worker around them, as protocols. The composition root
(app/main.py) hands each stage the parts that provide them; nothing in agents/ imports
the worker's own modules or faust."""

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any, Protocol

from prometheus_client import Counter, Gauge

from tables.changelog import Outgoing

# The high watermark of an input partition as the consumer last fetched it (None: unknown).
Highwater = Callable[[str, int], int | None]


class Guard(Protocol):
    """The broker's checks around a batch (app.runtime): a batch waits for `settled`,
    checks what it read and wrote, and raises BrokerLost once the broker no longer backs
    the state."""

    async def settled(self) -> None:
        """After a rebalance or a sign of broker trouble: once every held position is
        checked against the broker."""

    def check_backed(self) -> None:
        """Raise BrokerLost once a loss is known."""

    def check_read(self, topic: str, partition: int, applied: int) -> None:
        """Before a batch is applied: the broker still has the record at `applied`."""

    def check_written(self, topic: str, partition: int, offset: int, reflected: int) -> None:
        """After a changelog record is sent: it landed past what the store reflects."""


class Sender(Protocol):
    """The producer's side the stages use beside StoreManager.write."""

    @property
    def transactional(self) -> bool:
        """True when each batch is a Kafka transaction."""

    async def send_all(self, records: Iterable[Outgoing]) -> Any:
        """Send records and wait until the broker has them all."""


class Topics(Protocol):
    """The topics the stages read and write (app.topics.TopicNames)."""

    @property
    def orders(self) -> str: ...

    @property
    def rekey(self) -> str: ...

    @property
    def by_buyer(self) -> str: ...

    @property
    def dlq(self) -> str: ...

    @property
    def late(self) -> str: ...


class Operators(Protocol):
    """Per operator of the job graph: records in and out, and time waited
    (app.metrics.OperatorMetrics)."""

    def moved(self, operator: str, records_in: int, records_out: int) -> None: ...

    def waited(self, operator: str, on: str, seconds: float) -> None: ...

    def waiting(self, operator: str, on: str) -> AbstractContextManager[None]: ...


class StageMetrics(Protocol):
    """The counters and gauges the stages move (app.metrics.Metrics)."""

    processed: Counter
    counted: Counter
    invalid: Counter
    duplicate: Counter
    conflict: Counter
    late: Counter
    lag: Gauge

    @property
    def operators(self) -> Operators: ...
