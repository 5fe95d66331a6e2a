"""A stand-in for the worker (app.queries.WorkerQueries, api.ports.QueryService) that the
API routes can read: settings, metrics, readiness, and the aggregation stores, either
none or real RocksDB stores (tables.store) filled by the real aggregation step
(core.aggregation) from a list of orders."""

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from app.history import MetricHistory
from app.metrics import Metrics
from app.settings import Settings
from app.topics import TopicNames, topic_names
from core.aggregation import AggregateConfig, Clock, apply_batch, close_windows
from core.models import Order
from core.ranking import RankIndex
from core.shuffle import Positioned, Shuffled, buyer_partition
from core.watermarks import NO_WATERMARK
from tables.store import PartitionStore

PARTITIONS = 4


class Stores:
    """The aggregation stores of one worker that owns every partition."""

    assigned = set(range(PARTITIONS))

    def __init__(self, stores: dict[int, PartitionStore] | None = None) -> None:
        self.stores = stores or {}

    def read_only_view(self) -> dict[int, PartitionStore]:
        return self.stores

    def close(self) -> None:
        for store in self.stores.values():
            store.close()


class FakeRuntime:
    """What the routes read of a worker (api.ports.QueryService)."""

    def __init__(self, readiness: str = "ready", **settings: object) -> None:
        self.settings = Settings(**settings)
        self.names = topic_names(self.settings)
        self.partitions = {self.names.by_buyer: PARTITIONS}
        self.aggregates = Stores()
        self.metrics = Metrics()
        self.samples = MetricHistory(self.metrics.sampled())
        self.readiness = readiness
        self.readiness_reason: str | None = None

    should_stop = False

    @property
    def topics(self) -> TopicNames:
        return self.names

    @property
    def buyer_partitions(self) -> int:
        return self.partitions[self.names.by_buyer]

    def owned(self) -> set[int]:
        return self.aggregates.assigned

    @contextlib.contextmanager
    def reading(self) -> Iterator[dict[int, PartitionStore]]:
        yield self.aggregates.read_only_view()

    def members(self) -> dict[str, set[int]]:
        return {self.settings.advertised_url: set(self.aggregates.assigned)}

    def refresh_gauges(self) -> None:
        pass

    def history(self) -> list[tuple[int, int, dict[str, float]]]:
        return self.samples.samples()


def runtime_with_orders(root: Path, orders: Iterable[Order], **settings: object) -> FakeRuntime:
    """A FakeRuntime whose stores (under `root`) the aggregation step filled from `orders`."""
    runtime = FakeRuntime(**settings)
    runtime.aggregates = filled_stores(root, orders, runtime.settings)
    return runtime


def filled_stores(root: Path, orders: Iterable[Order], settings: Settings) -> Stores:
    """One store per partition, each order applied in its buyer's partition as one batch,
    then the windows its watermark (its latest order) made final closed, as the aggregate
    agent does."""
    config = AggregateConfig(settings.windows, settings.allowed_lateness,
                             settings.window_retention)
    by_partition: dict[int, list[Positioned]] = {}
    for offset, order in enumerate(orders):
        partition = buyer_partition(order.first_name, order.last_name, PARTITIONS)
        by_partition.setdefault(partition, []).append((offset, order, None, None))
    stores = {}
    for partition in range(PARTITIONS):
        store = stores[partition] = PartitionStore(root / str(partition),
                                                   RankIndex.of(settings.windows))
        rows = by_partition.get(partition, [])
        # one carrier whose watermark ends at the partition's latest order, all on time
        watermark = max((o.order_time_ms for _, o, _, _ in rows), default=NO_WATERMARK)
        record = Shuffled(0, watermark, None, [("orders:0", rows)])
        result = apply_batch([record], config, store.get_many, Clock(0))
        store.commit(result.updates, 0)
        more, offset = True, 1
        while more:  # in bounded steps, each committed, as the aggregate agent closes
            closing = close_windows(config, store.get_many, store.scan)
            store.commit(closing.updates, offset)
            more, offset = closing.more, offset + 1
    return Stores(stores)
