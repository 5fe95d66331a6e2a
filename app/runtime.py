"""The worker's lifecycle as one mode service: what starts before faust's producer and
consumer, and stops after them.

It starts first (first child of the app): the API answers /health from the start, topics
exist and local state is checked before the consumer joins the group. It stops last.
The parts it starts and stops are built by the composition root (app.main)."""

import asyncio
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from aiokafka import TopicPartition
from faust.exceptions import AlreadyConfiguredWarning
from mode import Service

from api.fanout import raise_fd_limit
from api.server import ApiServer, PortTaken
from app import logthrottle
from app.brokerwatch import CHECK_INTERVAL_S
from app.guard import CLEAN_START_ENV, BrokerGuard
from app.membership import Membership
from app.producer import NoTransactions, Producer, probe_transactions
from app.purge import purge_committed
from app.reset_cli import start_over
from app.settings import Settings
from app.statecheck import (
    StateDirLock,
    StateError,
    check_orders_partitions,
    reconcile,
    reconcile_windows,
    save_topic_ids,
)
from app.topics import TopicError, TopicNames, ensure_topics
from tables.manager import StoreManager

# A stop that takes longer (a broker that does not answer: consumer commits and producer
# flushes wait out their timeouts) ends the process: nothing is lost by it, as every
# batch is redone from the broker after any stop (agents.batches), so it is a kill -9
# with a line saying so. 6 s keeps within a 10 s terminationGracePeriod.
STOP_LIMIT_S = 6.0
# As Kafka Streams' repartition.purge.interval.ms: how often committed repartition records
# are deleted.
PURGE_INTERVAL_S = 30.0

log = logging.getLogger(__name__)


@dataclass
class Topology:
    """What start-up found: every topic's partition count (existing topics keep theirs),
    and the windows removed from WINDOWS since the last run."""

    names: TopicNames
    partitions: dict[str, int] = field(default_factory=dict)
    dropped_windows: tuple[str, ...] = ()

    def count(self, topic: str) -> int:
        return self.partitions[topic]

    def totals_partition(self, partition: int) -> int | None:
        """The buyer-totals partition of aggregation partition `partition`'s buyers: the
        same number when the counts agree (both are Kafka's default partitioner on the
        same key: no hash per record then); None: by the key's hash."""
        names = self.names
        same = self.partitions[names.buyer_totals] == self.partitions[names.by_buyer]
        return partition if same else None


class Stop:
    """How the worker ends: a stop that was asked for exits 0, a crash 1, and no stop takes
    over STOP_LIMIT_S."""

    def __init__(self, app: faust.App, brokers: str) -> None:
        self.app, self.brokers = app, brokers
        self._timer: threading.Timer | None = None
        self.before_exit: Callable[[], None] = lambda: None  # last words (a loss's restart)

    @property
    def stopping(self) -> bool:
        """True once a stop has begun (SIGTERM, Ctrl-C, a crash)."""
        return self._timer is not None

    @property
    def exit_code(self) -> int:
        """1 after a crash (ours or one faust found), 0 for a stop that was asked for."""
        return 0 if self.app.crash_reason is None else 1

    def within_limit(self) -> None:
        """From the first step of a stop: end the process if it takes over STOP_LIMIT_S."""
        if self._timer is None:
            self._timer = threading.Timer(STOP_LIMIT_S, self._out_of_time)
            self._timer.daemon = True
            self._timer.start()

    def _out_of_time(self) -> None:
        if self.app.crash_reason is None:
            log.warning("stopping took over %.0f s (the broker at %s does not answer): "
                        "exiting now", STOP_LIMIT_S, self.brokers)
        else:  # faust's stop after a crash can wait for its crashed consumer thread forever
            log.warning("stopping after the error took over %.0f s: exiting now", STOP_LIMIT_S)
        self.before_exit()
        logging.shutdown()
        os._exit(self.exit_code)

    def crash(self, error: BaseException) -> None:
        """Stop the worker on an error it must not continue past."""
        log.error("orderstream: %s", error)
        # the failed batch is never acked: a stop that waited for every batch in flight to
        # be acked would wait for it until STOP_LIMIT_S (faust warns that a setting read
        # before changes; here that is the point)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AlreadyConfiguredWarning)
            self.app.conf.stream_wait_empty = False
        asyncio.ensure_future(self.app.crash(error))


class Runtime(Service):
    """Starts the parts of one worker around faust's consumer: DATA_DIR's lock, the API,
    topics, the state checks, the producer; runs the broker checks and the repartition
    purge; stops them all last."""

    def __init__(self, settings: Settings, topology: Topology, stop: Stop, producer: Producer,
                 stores: tuple[StoreManager, StoreManager], guard: BrokerGuard,
                 membership: Membership, api: ApiServer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.settings, self.topology, self.stop_ = settings, topology, stop
        self.producer, self.stores, self.guard = producer, stores, guard
        self.membership, self.api = membership, api
        self.state_lock = StateDirLock(settings.state_dir)

    async def on_start(self) -> None:
        """API first, then topics and a state check, then the producer.

        What the user must fix (a taken port, an unusable DATA_DIR) stops the worker
        with one ERROR line naming it, not a traceback.
        """
        try:
            await self._start()
        except (StateError, PortTaken, TopicError) as error:
            log.error("orderstream: %s", error)
            raise SystemExit(1) from None

    async def _start(self) -> None:
        settings, topology, watch = self.settings, self.topology, self.guard.watch
        # DATA_DIR first (the app checked it is writable before its services start): a
        # second worker on it is refused for that, whatever its port
        self.state_lock.acquire()
        logthrottle.install(on_trouble=self.guard.doubt)
        raise_fd_limit()  # a file descriptor per live-push client
        await self.api.start()
        log.info("API on http://%s:%d (docs at /docs)", settings.api_host, settings.api_port)
        topology.dropped_windows = reconcile_windows(settings)
        if os.environ.pop(CLEAN_START_ENV, None) and settings.embedded_broker:
            async for line in start_over(settings):
                log.info("clean start: %s", line)
        topology.partitions = await ensure_topics(settings)
        watch.counts = dict(topology.partitions)
        check_orders_partitions(settings, topology.partitions)
        by_buyer = topology.count(topology.names.by_buyer)
        if by_buyer != settings.topic_partitions:
            log.info("TOPIC_PARTITIONS is %d but %s has %d partitions: existing topics keep "
                     "their count, and the state is partitioned by it",
                     settings.topic_partitions, topology.names.by_buyer, by_buyer)
        watch.ids.update(await reconcile(settings))
        # the ids of every topic of the job, from the start: one deleted before the state
        # holds a position in it is still a topic the state is built from
        await watch.poll({(topic, 0): -1 for topic in topology.partitions})
        if watch.learned:
            watch.learned = False
            save_topic_ids(settings, watch.ids)
        await self._choose_transactions()
        await self.producer.start()
        watch.answered = time.monotonic()

    async def _choose_transactions(self) -> None:
        """KAFKA_TRANSACTIONS: `auto` uses them where the broker starts a transactional
        producer (never with EMBEDDED_BROKER: tansu has none); `on` refuses to start
        without; `off` never."""
        settings = self.settings
        choice = settings.kafka_transactions
        if choice == "off" or (choice == "auto" and settings.embedded_broker):
            return
        try:
            await probe_transactions(settings.kafka_client, settings.app_id)
        except NoTransactions as why:
            if choice == "on":
                raise TopicError(f"KAFKA_TRANSACTIONS is on but the broker at "
                                 f"{','.join(settings.broker_urls)} refused a "
                                 f"transactional producer: {why}") from None
            log.info("the broker at %s has no transactions (%s): batches are written "
                     "without them", ",".join(settings.broker_urls), why)
            return
        self.producer.use_transactions(settings.app_id)
        log.info("each batch is a Kafka transaction (transactional ids %s-<stage>-<partition>)",
                 settings.app_id)

    async def on_stop(self) -> None:
        self.stop_.within_limit()
        await self.guard.watch.stop()
        for stores in self.stores:
            await stores.close_all()
        await self.producer.stop()
        await self.api.stop()
        self.state_lock.release()

    @Service.timer(PURGE_INTERVAL_S)
    async def _purge(self) -> None:
        """Delete repartition records the group committed past (app.purge; not on tansu)."""
        if self.settings.embedded_broker or self.guard.loss is not None:
            return
        names = self.topology.names
        dedup, aggregates = self.stores
        await purge_committed(self.settings, [
            *(TopicPartition(names.rekey, p) for p in sorted(dedup.assigned)),
            *(TopicPartition(names.by_buyer, p) for p in sorted(aggregates.assigned))])

    @Service.timer(CHECK_INTERVAL_S)
    async def _check_broker(self) -> None:
        """Does the broker still end past every position the state holds?"""
        await self.guard.check(self.membership.restored)


__all__ = ["Runtime", "StateError", "Stop", "Topology"]
