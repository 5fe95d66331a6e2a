"""Everything the agents and the API share inside one worker, as one mode service.

It starts before faust's producer and consumer (first child of the app): the API
answers /health from the start, topics exist and local state is checked before the
consumer joins the group. It stops last.
"""

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
import warnings
from typing import Any, cast

import faust
from aiokafka import TopicPartition
from faust.assignor import PartitionAssignor
from faust.exceptions import AlreadyConfiguredWarning
from mode import Service

from agents.aggregate import AggregateStage
from agents.ingest import IngestStage
from api.fanout import raise_fd_limit
from api.main import create_api
from api.server import ApiServer, PortTaken
from app import logthrottle
from app.brokerwatch import CHECK_INTERVAL_S, UNREACHABLE_AFTER_S, Loss, Watch
from app.metrics import Metrics
from app.producer import NoTransactions, Producer, probe_transactions
from app.purge import purge_committed
from app.reset_cli import start_over
from app.settings import Settings
from app.statecheck import (
    StateDirLock,
    StateError,
    check_orders_partitions,
    discard_state,
    lost_message,
    merge_positions,
    reconcile,
    reconcile_windows,
    save_topic_ids,
    stage_positions,
)
from app.topics import TopicError, TopicNames, ensure_topics, topic_names
from core.aggregate import read_watermark
from core.ingest import SOURCE_KEY
from core.timefmt import wall_ms
from core.watermarks import NO_WATERMARK
from tables.changelog import BrokerLost, StoreAheadOfChangelog
from tables.manager import StoreManager
from tables.store import PartitionStore

# A stop that takes longer (a broker that does not answer: consumer commits and producer
# flushes wait out their timeouts) ends the process: nothing is lost by it, as every
# batch is redone from the broker after any stop (agents.batches), so it is a kill -9
# with a line saying so. 6 s keeps within a 10 s terminationGracePeriod.
STOP_LIMIT_S = 6.0
# As Kafka Streams' repartition.purge.interval.ms: how often committed repartition records
# are deleted.
PURGE_INTERVAL_S = 30.0
LOSS_503_S = 1.0  # after a loss, how long /ready says so before the process ends
CLEAN_START_ENV = "ORDERSTREAM_CLEAN_START"  # set across the exec after a loss

log = logging.getLogger(__name__)


class Runtime(Service):
    """Settings, producer, stores, metrics and the HTTP server of one worker."""

    def __init__(self, app: faust.App, settings: Settings, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app, self.settings = app, settings
        self.names = topic_names(settings)
        self.metrics = Metrics()
        # transactions or not: decided at start (`_choose_transactions`)
        self.producer = Producer(settings.kafka_client)
        self.producer.on_retry = self.doubt  # 503 until a check of the broker passes
        self.dedup = StoreManager(
            "dedup", settings.state_dir, self.names.dedup_changelog,
            settings.kafka_client, on_crash=self.fail, writer=self.producer,
        )
        self.aggregates = StoreManager(
            "aggregate", settings.state_dir, self.names.aggregate_changelog,
            settings.kafka_client, on_crash=self.fail, writer=self.producer,
        )
        # the stages, once the composition root (app.main) has built them on these parts
        self.ingest: IngestStage | None = None
        self.aggregate: AggregateStage | None = None
        self._generation: int | None = None  # the group generation of the last assignment
        self.status = "starting"
        self.watch = Watch(settings.kafka_client)
        self.loss: Loss | None = None  # what the broker lost, once noticed: then it stops
        self._stop_timer: threading.Timer | None = None
        self._doubt = False  # after an outage: not ready until a check passes
        # after any sign of broker trouble or a rebalance: no batch until a check passes
        self._unsettled = False
        self._settling = asyncio.Lock()
        self.partitions: dict[str, int] = {}
        self.dropped_windows: tuple[str, ...] = ()
        self.state_lock = StateDirLock(settings.state_dir)
        self.api = ApiServer(create_api(self), settings.api_host, settings.api_port)

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
        # DATA_DIR first (the app checked it is writable before its services start): a
        # second worker on it is refused for that, whatever its port
        self.state_lock.acquire()
        logthrottle.install(on_trouble=self.doubt)
        raise_fd_limit()  # a file descriptor per live-push client
        await self.api.start()
        log.info("API on http://%s:%d (docs at /docs)", self.settings.api_host,
                 self.settings.api_port)
        self.dropped_windows = reconcile_windows(self.settings)
        if os.environ.pop(CLEAN_START_ENV, None) and self.settings.embedded_broker:
            async for line in start_over(self.settings):
                log.info("clean start: %s", line)
        self.partitions = await ensure_topics(self.settings)
        self.watch.counts = dict(self.partitions)
        check_orders_partitions(self.settings, self.partitions)
        by_buyer = self.partitions[self.names.by_buyer]
        if by_buyer != self.settings.topic_partitions:
            log.info("TOPIC_PARTITIONS is %d but %s has %d partitions: existing topics keep "
                     "their count, and the state is partitioned by it",
                     self.settings.topic_partitions, self.names.by_buyer, by_buyer)
        self.watch.ids.update(await reconcile(self.settings))
        # the ids of every topic of the job, from the start: one deleted before the state
        # holds a position in it is still a topic the state is built from
        await self.watch.poll({(topic, 0): -1 for topic in self.partitions})
        if self.watch.learned:
            self.watch.learned = False
            save_topic_ids(self.settings, self.watch.ids)
        await self._choose_transactions()
        await self.producer.start()
        self.watch.answered = time.monotonic()

    async def _choose_transactions(self) -> None:
        """KAFKA_TRANSACTIONS: `auto` uses them where the broker starts a transactional
        producer (never with EMBEDDED_BROKER: tansu has none); `on` refuses to start
        without; `off` never."""
        choice = self.settings.kafka_transactions
        if choice == "off" or (choice == "auto" and self.settings.embedded_broker):
            return
        try:
            await probe_transactions(self.settings.kafka_client, self.settings.app_id)
        except NoTransactions as why:
            if choice == "on":
                raise TopicError(f"KAFKA_TRANSACTIONS is on but the broker at "
                                 f"{','.join(self.settings.broker_urls)} refused a "
                                 f"transactional producer: {why}") from None
            log.info("the broker at %s has no transactions (%s): batches are written "
                     "without them", ",".join(self.settings.broker_urls), why)
            return
        self.producer.use_transactions(self.settings.app_id)
        log.info("each batch is a Kafka transaction (transactional ids %s-<stage>-<partition>)",
                 self.settings.app_id)

    @property
    def stopping(self) -> bool:
        """True once a stop has begun (SIGTERM, Ctrl-C, a crash)."""
        return self._stop_timer is not None

    def stop_within_limit(self) -> None:
        """From the first step of a stop: end the process if it takes over STOP_LIMIT_S."""
        if self._stop_timer is None:
            self._stop_timer = threading.Timer(STOP_LIMIT_S, self._out_of_time)
            self._stop_timer.daemon = True
            self._stop_timer.start()

    def _out_of_time(self) -> None:
        if self.app.crash_reason is None:
            log.warning("stopping took over %.0f s (the broker at %s does not answer): "
                        "exiting now", STOP_LIMIT_S, ",".join(self.settings.broker_urls))
        else:  # faust's stop after a crash can wait for its crashed consumer thread forever
            log.warning("stopping after the error took over %.0f s: exiting now", STOP_LIMIT_S)
        if self.loss is not None:
            self._after_loss()
        logging.shutdown()
        os._exit(self.exit_code)

    @property
    def exit_code(self) -> int:
        """1 after a crash (ours or one faust found), 0 for a stop that was asked for."""
        return 0 if self.app.crash_reason is None else 1

    async def on_stop(self) -> None:
        self.stop_within_limit()
        await self.watch.stop()
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
        if self.ingest is not None:
            self.ingest.assigned(sources, wall_ms())
        if self.aggregate is not None:
            self.aggregate.assigned()
        rebuild = self._missed_generation()
        await self.dedup.on_assigned(sources, rebuild)
        await self.aggregates.on_assigned({tp.partition for tp in assigned
                                           if tp.topic == self.names.by_buyer}, rebuild)
        self.unsettle()  # a group the broker lost comes back as a rebalance
        self.status = "assigned"

    def _missed_generation(self) -> bool:
        """Whether the group went through a generation without this worker since its last
        assignment: it was expelled (a long pause, a network partition), and its open
        stores may hold batches it wrote after another owner fenced their partitions."""
        generation = self.app.consumer_generation_id
        previous, self._generation = self._generation, generation
        if previous is None or generation <= previous + 1:
            return False
        log.warning("the group moved from generation %d to %d without this worker (it was "
                    "expelled, or missed a rebalance): restoring the stores it held from "
                    "their changelogs", previous, generation)
        return True

    @property
    def readiness(self) -> str:
        """`ready`, or why not: `starting`, `rebalancing`, `restoring`, `broker-lost`."""
        if self.readiness_reason is not None:
            return "broker-lost"
        if self.status != "assigned":
            return self.status
        restoring = self.dedup.restoring or self.aggregates.restoring
        return "restoring" if restoring else "ready"

    @property
    def readiness_reason(self) -> str | None:
        """What `broker-lost` means here: what the broker lacks, since when it is silent,
        or that it is back and not yet checked against the state."""
        if self.loss is not None:
            return f"{self.loss.detail} (lost: {self.loss.topics})"
        unreachable = self.watch.unreachable_s
        if unreachable > UNREACHABLE_AFTER_S:
            self._doubt = True  # until a check against restored stores passes
            return (f"the broker at {','.join(self.settings.broker_urls)} has not answered "
                    f"for {unreachable:.0f} s")
        if self._doubt:
            return (f"checking that the broker at {','.join(self.settings.broker_urls)} "
                    "still has what the state reflects, after a sign of trouble")
        return None

    @Service.timer(PURGE_INTERVAL_S)
    async def _purge(self) -> None:
        """Delete repartition records the group committed past (app.purge; not on tansu)."""
        if self.settings.embedded_broker or self.loss is not None:
            return
        names = self.names
        await purge_committed(self.settings, [
            *(TopicPartition(names.rekey, p) for p in sorted(self.dedup.assigned)),
            *(TopicPartition(names.by_buyer, p) for p in sorted(self.aggregates.assigned))])

    @Service.timer(CHECK_INTERVAL_S)
    async def _check_broker(self) -> None:
        """Does the broker still end past every position the state holds?"""
        if self.loss is not None:
            return
        if await self._check_held():
            self._unsettled = False
            if self.status == "assigned" and not (self.dedup.restoring
                                                  or self.aggregates.restoring):
                self._doubt = False  # every restored store checked against the broker
        else:
            self.doubt()

    async def _check_held(self) -> bool:
        """Every position the restored stores hold, against the broker: True when it
        answered and backs them all; a loss is reported (`broker_lost`)."""
        asked = time.monotonic()
        loss = await self.watch.poll(self.held_positions())
        if loss is not None:
            self.broker_lost(loss)
            return False
        if self.watch.learned:  # a topic the state now holds positions in
            self.watch.learned = False
            save_topic_ids(self.settings, self.watch.ids)
        return (self.watch.answered or 0) >= asked

    def unsettle(self) -> None:
        """A rebalance, or a sign of broker trouble: the next batch waits for a full check
        (`settled`)."""
        self._unsettled = True

    def doubt(self) -> None:
        """A sign of broker trouble (the Kafka client logged a lost connection or a failed
        request, a check went unanswered): not ready, and no data route answers, until a
        check against the restored stores passes (at most CHECK_INTERVAL_S when the broker
        answers). A broker back empty within a second of going down would otherwise be
        taken for the old one until the next check."""
        self._doubt = True
        self.unsettle()

    async def settled(self) -> None:
        """Before a batch reads a store or sends anything: once unsettled, every position
        the state holds checked against the broker. A broker back empty and refilled past
        the stores' offsets passes the per-batch checks, and what a batch then wrote to
        its recreated topics could not be taken back (tansu keeps records it took for a
        topic it did not have, and refuses that topic's records at those offsets ever
        after). The batch's own check (`check_read`, `check_backed`) then raises on a
        loss."""
        while self._unsettled and self.loss is None:
            async with self._settling:
                if not self._unsettled:
                    break
                self._unsettled = False  # trouble from here on sets it again
                if not await self._check_held() and self.loss is None:
                    self._unsettled = True  # no answer: ask again
                    await asyncio.sleep(CHECK_INTERVAL_S / 4)

    def held_positions(self) -> dict[tuple[str, int], int]:
        """The last offset of each partition the restored stores hold a position in:
        their changelog records and the input records they applied."""
        held: dict[tuple[str, int], int] = {}
        for stage, read_topic in ((self.dedup, None), (self.aggregates, self.names.by_buyer)):
            for partition, store in stage.read_only_view().items():
                merge_positions(held, stage_positions(store, stage.changelog_topic,
                                                      read_topic, partition))
        return held

    def check_read(self, topic: str, partition: int, applied: int) -> None:
        """Before a batch is applied: the broker must still have the record at the store's
        position (`applied`), or what it now delivers would be skipped as applied."""
        highwater = self.app.consumer.highwater(faust.types.TP(topic, partition))
        if self.loss is None and highwater is not None and highwater <= applied:
            self.broker_lost(Loss({topic: (partition,)}, (
                f"{topic}[{partition}] ends at offset {highwater} but the state applied "
                f"offset {applied}")))
        self.check_backed()

    def check_written(self, topic: str, partition: int, offset: int, reflected: int) -> None:
        """After a changelog record is sent: it must land past what the store reflects, or
        the changelog was emptied or recreated."""
        if offset <= reflected:
            self.broker_lost(Loss({topic: (partition,)}, (
                f"{topic}[{partition}] took a record at offset {offset} but the state "
                f"reflects offset {reflected}")))
        self.check_backed()

    def rewound(self, tp: faust.types.TP, expected: int, got: int) -> None:
        """The consumer was reset to an offset before what it had read (app.faust.transport)."""
        self.broker_lost(Loss({tp.topic: (tp.partition,)}, (
            f"{tp.topic}[{tp.partition}] went back from offset {expected} to {got}")))

    def check_backed(self) -> None:
        """Raise BrokerLost once a loss is known: nothing more may be applied or sent."""
        if self.loss is not None:
            raise BrokerLost(self.loss.detail)

    def broker_lost(self, loss: Loss) -> None:
        """Stop applying at once and answer 503; then say what was lost and end the process
        (`_report_loss`, `_after_loss`)."""
        if self.loss is not None:
            return
        self.loss = loss
        asyncio.ensure_future(self._report_loss(loss))

    async def _report_loss(self, first: Loss) -> None:
        """One full check, so the line names every partition lost, not only the first seen."""
        with contextlib.suppress(Exception):
            if (full := await self.watch.poll(self.held_positions())) is not None:
                self.loss = first = full.merged(first)
        if not self.settings.embedded_broker:
            log.error("orderstream: %s", lost_message(self.settings, first, "stopping"))
        await asyncio.sleep(LOSS_503_S)
        self._after_loss()

    def _after_loss(self) -> None:
        """End the process after a loss: nothing of it is worth a graceful stop (nothing
        more is applied, sent or committed). On the embedded broker, which keeps nothing:
        discard the state and start again, clean, in this process (one WARNING), unless
        the worker is being stopped anyway. On another broker: exit 1, having said what was
        lost and how to start over."""
        assert self.loss is not None
        if not self.settings.embedded_broker:
            logging.shutdown()
            os._exit(1)
        discard_state(self.settings)
        if self._stop_timer is not None:  # SIGTERM, Ctrl-C or a crash meanwhile: stop, clean
            logging.shutdown()
            os._exit(self.exit_code)
        log.warning("the embedded broker at %s restarted empty (%s): removed the state in %s "
                    "and starting clean", ",".join(self.settings.broker_urls), self.loss.detail,
                    self.settings.state_dir)
        logging.shutdown()
        for fd in map(int, os.listdir("/proc/self/fd")):  # the API socket above all
            if fd > 2:
                with contextlib.suppress(OSError):
                    os.set_inheritable(fd, False)
        # the new process recreates the internal topics: records this one sent to the
        # empty broker before it noticed (buffered sends, timers) must not come back
        os.environ[CLEAN_START_ENV] = "1"
        os.execv(sys.executable, sys.orig_argv)

    # The API's view of this worker (api.ports.QueryService), beside readiness and members.

    @property
    def topics(self) -> TopicNames:
        return self.names

    @property
    def buyer_partitions(self) -> int:
        return self.partitions[self.names.by_buyer]

    def owned(self) -> set[int]:
        return self.aggregates.assigned

    def stores(self) -> dict[int, PartitionStore]:
        return self.aggregates.read_only_view()

    def members(self) -> dict[str, set[int]]:
        """Every worker of the group (advertised URL) and its aggregation partitions."""
        members: dict[str, set[int]] = {}
        # faust types it PartitionAssignorT, which lacks the method; its PartitionAssignor is used
        assignor = cast(PartitionAssignor, self.app.assignor)
        for url, topics in assignor.external_topics_metadata().items():
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
            if self.ingest is not None:
                idle = self.ingest.sources.idle(partition)
                metrics.source_idle.labels(str(partition)).set(int(idle))

    def totals_partition(self, partition: int) -> int | None:
        """The buyer-totals partition of aggregation partition `partition`'s buyers: the same
        number when the counts agree (both are Kafka's default partitioner on the same
        key: no hash per record then); None: by the key's hash."""
        names = self.names
        same = self.partitions[names.buyer_totals] == self.partitions[names.by_buyer]
        return partition if same else None

    def watermarks(self) -> dict[int, int]:
        """Watermark of each restored aggregation partition of this worker."""
        return {p: read_watermark(store.get_many)
                for p, store in self.aggregates.read_only_view().items()}

    def fail(self, error: BaseException) -> None:
        """Stop the worker on an error it must not continue past."""
        if isinstance(error, StoreAheadOfChangelog):  # found while restoring a store
            self.broker_lost(Loss({error.topic: (error.partition,)}, str(error)))
            return
        log.error("orderstream: %s", error)
        # the failed batch is never acked: a stop that waited for every batch in flight to
        # be acked would wait for it until STOP_LIMIT_S (faust warns that a setting read
        # before changes; here that is the point)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AlreadyConfiguredWarning)
            self.app.conf.stream_wait_empty = False
        asyncio.ensure_future(self.app.crash(error))


__all__ = ["Runtime", "StateError"]
