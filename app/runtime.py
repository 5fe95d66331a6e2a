"""Everything the agents and the API share inside one worker, as one mode service.

It starts before faust's producer and consumer (first child of the app): the API
answers /health from the start, topics exist and local state is checked before the
consumer joins the group. It stops last.
"""

import asyncio
import logging
import time
from typing import Any

import faust
from mode import Service

from api.server import ApiServer, PortTaken
from app.idleness import SourceIdleness
from app.metrics import Metrics
from app.producer import Producer
from app.settings import Settings
from app.statecheck import (
    StateDirLock,
    StateError,
    check_orders_partitions,
    reconcile,
    reconcile_windows,
)
from app.topics import ensure_topics, topic_names
from core.aggregate import read_watermark
from core.ingest import SOURCE_KEY
from core.watermarks import NO_WATERMARK, Emitter
from tables.manager import StoreManager

# At most one watermark-only record per channel this often, and a quarter of IDLE_TIMEOUT
# at most, so that a renewed idle lease always reaches the receivers before the last ends.
WATERMARK_INTERVAL_MS = 1000

log = logging.getLogger(__name__)


class Runtime(Service):
    """Settings, producer, stores, metrics and the HTTP server of one worker."""

    def __init__(self, app: faust.App, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app, self.settings = app, settings
        self.names = topic_names(settings)
        self.metrics = Metrics()
        self.producer = Producer(settings.broker_urls)
        self.dedup = StoreManager(
            "dedup", settings.state_dir, self.names.dedup_changelog,
            settings.broker_urls, on_crash=self.fail,
        )
        self.aggregates = StoreManager(
            "aggregate", settings.state_dir, self.names.aggregate_changelog,
            settings.broker_urls, on_crash=self.fail,
        )
        # event time (core.watermarks): which orders partitions are idle, what each output
        # channel last carried, since when every input of an aggregation partition is idle
        self.sources = SourceIdleness(settings.idle_timeout)
        self.emitter = Emitter(min(WATERMARK_INTERVAL_MS, settings.idle_timeout // 4))
        self.all_idle_since: dict[int, int] = {}
        self.totals_sent: set[int] = set()  # aggregation partitions whose outbox was sent
        self.status = "starting"
        self.partitions: dict[str, int] = {}
        self.dropped_windows: tuple[str, ...] = ()
        self.state_lock = StateDirLock(settings.state_dir)
        from api.main import create_api  # api imports this module: import it late

        self.api = ApiServer(create_api(self), settings.api_host, settings.api_port)

    async def on_start(self) -> None:
        """API first, then topics and a state check, then the producer.

        What the user must fix (a taken port, an unusable DATA_DIR) stops the worker
        with one ERROR line naming it, not a traceback.
        """
        try:
            await self._start()
        except (StateError, PortTaken) as error:
            log.error("orderstream: %s", error)
            raise SystemExit(1) from None

    async def _start(self) -> None:
        # DATA_DIR first (the app checked it is writable before its services start): a
        # second worker on it is refused for that, whatever its port
        self.state_lock.acquire()
        await self.api.start()
        log.info("API on http://%s:%d (docs at /docs)", self.settings.api_host,
                 self.settings.api_port)
        self.dropped_windows = reconcile_windows(self.settings)
        self.partitions = await ensure_topics(self.settings)
        check_orders_partitions(self.settings, self.partitions)
        by_buyer = self.partitions[self.names.by_buyer]
        if by_buyer != self.settings.topic_partitions:
            log.info("TOPIC_PARTITIONS is %d but %s has %d partitions: existing topics keep "
                     "their count, and the state is partitioned by it",
                     self.settings.topic_partitions, self.names.by_buyer, by_buyer)
        await reconcile(self.settings, {
            stage: (changelog, self.partitions[changelog])
            for stage, changelog in (("dedup", self.names.dedup_changelog),
                                     ("aggregate", self.names.aggregate_changelog))})
        await self.producer.start()

    async def on_stop(self) -> None:
        await self.dedup.close_all()
        await self.aggregates.close_all()
        await self.producer.stop()
        await self.api.stop()
        self.state_lock.release()

    async def on_revoked(self) -> None:
        """Eager rebalance: nothing is ours until the next assignment."""
        self.status = "rebalancing"
        await self.dedup.on_revoked()
        await self.aggregates.on_revoked()

    async def on_assigned(self, assigned: set[faust.types.TP]) -> None:
        """Open and restore the stores of the new assignment."""
        self.metrics.rebalances.inc()
        ingest_topics = (self.names.orders, self.names.rekey)
        sources = {tp.partition for tp in assigned if tp.topic in ingest_topics}
        self.sources.assigned(sources, wall_ms())
        self.emitter.forget()
        self.all_idle_since.clear()
        self.totals_sent.clear()
        await self.dedup.on_assigned(sources)
        await self.aggregates.on_assigned({tp.partition for tp in assigned
                                           if tp.topic == self.names.by_buyer})
        self.status = "assigned"

    @property
    def readiness(self) -> str:
        """`ready`, or why not: `starting`, `rebalancing`, `restoring`."""
        if self.status != "assigned":
            return self.status
        restoring = self.dedup.restoring or self.aggregates.restoring
        return "restoring" if restoring else "ready"

    def members(self) -> dict[str, set[int]]:
        """Every worker of the group (advertised URL) and its aggregation partitions."""
        members: dict[str, set[int]] = {}
        for url, topics in self.app.assignor.external_topics_metadata().items():
            members[str(url).rstrip("/")] = set(topics.get(self.names.by_buyer, ()))
        members.setdefault(self.settings.advertised_url.rstrip("/"), set(self.aggregates.assigned))
        return members

    def refresh_gauges(self) -> None:
        """Per-partition gauges from the stores, for a /metrics scrape."""
        metrics = self.metrics
        for gauge in (metrics.watermark, metrics.source_watermark, metrics.source_idle):
            gauge.clear()
        for partition, watermark in self.watermarks().items():
            if watermark != NO_WATERMARK:
                metrics.watermark.labels(str(partition)).set(watermark)
        for partition, store in self.dedup.read_only_view().items():
            source = read_watermark(store.get_many, SOURCE_KEY)
            if source != NO_WATERMARK:
                metrics.source_watermark.labels(str(partition)).set(source)
            metrics.source_idle.labels(str(partition)).set(int(self.sources.idle(partition)))

    def watermarks(self) -> dict[int, int]:
        """Watermark of each restored aggregation partition of this worker."""
        return {p: read_watermark(store.get_many)
                for p, store in self.aggregates.read_only_view().items()}

    def fail(self, error: BaseException) -> None:
        """Stop the worker on an error it must not continue past."""
        log.error("orderstream: %s", error)
        asyncio.ensure_future(self.app.crash(error))


def wall_ms() -> int:
    """The wall clock in epoch milliseconds (leases, MAX_FUTURE_SKEW, the idle rule)."""
    return time.time_ns() // 1_000_000


__all__ = ["Runtime", "StateError", "wall_ms"]
