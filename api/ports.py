"""What the API needs of the worker it runs in, as protocols: the composition root
(app/main.py) hands `create_api` an object that provides them, and nothing in api/
imports the worker's own modules.

A settings object, a metrics registry or a topic-name table with these attributes fits:
the worker's pydantic Settings, app.metrics.Metrics and app.topics.TopicNames do."""

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from core.storage import ReadStore
from core.windows import Window


class ApiSettings(Protocol):
    """The settings the routes read."""

    @property
    def api_token(self) -> str | None: ...

    @property
    def advertised_url(self) -> str: ...

    @property
    def windows(self) -> tuple[Window, ...]: ...

    @property
    def allowed_lateness(self) -> int: ...

    @property
    def window_retention(self) -> int: ...

    @property
    def sse_max_clients(self) -> int: ...

    @property
    def kafka_client(self) -> dict[str, Any]: ...


class ApiMetrics(Protocol):
    """The worker's Prometheus metrics: the registry /metrics renders, and those the API
    itself records."""

    registry: CollectorRegistry
    requests: Histogram
    forwarded: Histogram
    lag: Gauge
    sse_clients: Gauge
    sse_dropped: Counter


class StreamTopics(Protocol):
    """The topics the live push and the dashboard read."""

    @property
    def orders(self) -> str: ...

    @property
    def dlq(self) -> str: ...

    @property
    def late(self) -> str: ...

    @property
    def buyer_totals(self) -> str: ...

    @property
    def aggregate_changelog(self) -> str: ...

    @property
    def window_results(self) -> str: ...


class QueryService(Protocol):
    """One worker, as the API sees it: its readiness, its aggregation stores, and the
    group it is part of."""

    @property
    def settings(self) -> ApiSettings: ...

    @property
    def metrics(self) -> ApiMetrics: ...

    @property
    def topics(self) -> StreamTopics: ...

    @property
    def readiness(self) -> str:
        """`ready`, or why not: `starting`, `rebalancing`, `restoring`, `broker-lost`."""

    @property
    def readiness_reason(self) -> str | None:
        """What `broker-lost` means, when it is that."""

    @property
    def should_stop(self) -> bool:
        """True once the worker is stopping: streams end."""

    @property
    def buyer_partitions(self) -> int:
        """How many aggregation partitions buyers are spread over."""

    def owned(self) -> set[int]:
        """The aggregation partitions this worker holds."""

    def reading(self) -> AbstractContextManager[Mapping[int, ReadStore]]:
        """The restored aggregation stores of this worker, by partition, held for a
        `with` block: a rebalance closes none of them until it ends (hold them for
        reading only, never across a call to another worker)."""

    def members(self) -> dict[str, set[int]]:
        """Every worker of the group (advertised URL) and its aggregation partitions."""

    def refresh_gauges(self) -> None:
        """Bring the per-partition gauges up to date, before /metrics renders them."""

    def history(self) -> list[tuple[int, int, dict[str, float]]]:
        """Samples of the worker's counters over the last minutes, oldest first (wall ms,
        monotonic ms, value by series): the dashboard's rates and chart."""
