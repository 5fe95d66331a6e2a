"""The worker as the API sees it (api.ports.QueryService): readiness, the aggregation
stores, the group's members, and the gauges /metrics renders."""

from contextlib import AbstractContextManager

from app.history import MetricHistory
from app.membership import Membership
from app.metrics import Metrics
from app.runtime import Stop, Topology
from app.settings import Settings
from app.topics import TopicNames
from core.aggregate import read_watermark
from core.schema import SOURCE_KEY
from core.watermarks import NO_WATERMARK
from tables.store import PartitionStore


class WorkerQueries:
    """What the API reads of this worker, from the parts that hold it."""

    def __init__(self, settings: Settings, metrics: Metrics, topology: Topology,
                 membership: Membership, stop: Stop, history: MetricHistory) -> None:
        self.settings, self.metrics, self.topology = settings, metrics, topology
        self._history = history
        self.membership, self.stop = membership, stop
        self.guard, self.ingest = membership.guard, membership.ingest
        self.aggregates = membership.aggregate.stores

    @property
    def topics(self) -> TopicNames:
        return self.topology.names

    @property
    def readiness(self) -> str:
        return self.membership.readiness

    @property
    def readiness_reason(self) -> str | None:
        return self.guard.reason

    @property
    def should_stop(self) -> bool:
        return self.stop.stopping

    @property
    def buyer_partitions(self) -> int:
        return self.topology.count(self.topology.names.by_buyer)

    def owned(self) -> set[int]:
        return self.aggregates.assigned

    def reading(self) -> AbstractContextManager[dict[int, PartitionStore]]:
        return self.aggregates.reading()

    def members(self) -> dict[str, set[int]]:
        return self.membership.members()

    def history(self) -> list[tuple[int, int, dict[str, float]]]:
        return self._history.samples()

    def refresh_gauges(self) -> None:
        """Per-partition gauges from the stores, for a /metrics scrape."""
        metrics = self.metrics
        for gauge in (metrics.watermark, metrics.source_watermark, metrics.source_idle):
            gauge.clear()
        with self.aggregates.reading() as stores:
            for partition, store in stores.items():
                watermark = read_watermark(store.get_many)
                if watermark != NO_WATERMARK:
                    metrics.watermark.labels(str(partition)).set(watermark)
        with self.ingest.stores.reading() as stores:
            for partition, store in stores.items():
                source = read_watermark(store.get_many, SOURCE_KEY)
                if source != NO_WATERMARK:
                    metrics.source_watermark.labels(str(partition)).set(source)
                metrics.source_idle.labels(str(partition)).set(
                    int(self.ingest.sources.idle(partition)))
