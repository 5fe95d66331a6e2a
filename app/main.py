"""Build the faust app from settings: `faust -A app worker` runs it."""

import asyncio
import functools
import gc
import logging
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, cast

import faust
from mode import ServiceT
from mode.types import SignalHandlerT

from agents.aggregate import AggregateStage
from agents.ingest import IngestStage
from agents.sinks import BuyerTotalsSink, PrintSink, TotalsSink, WindowResultsSink
from api.main import create_api
from api.server import ApiServer
from app.faust import transport
from app.faust.agents import (
    register_aggregate,
    register_datagen,
    register_heap_trim,
    register_ingest,
    register_sampler,
)
from app.guard import BrokerGuard
from app.history import MetricHistory
from app.membership import Membership
from app.metrics import Metrics
from app.producer import Producer
from app.queries import WorkerQueries
from app.runtime import Runtime, Stop, Topology
from app.settings import Settings, load_settings
from app.statecheck import StateError, check_writable
from app.topics import topic_names
from core.aggregation import AggregateConfig
from core.ingest import IngestConfig
from core.ranking import RankIndex
from tables.manager import StoreManager
from tables.store import Derived

log = logging.getLogger(__name__)

# The API's thread and the ingest loop share the GIL. At CPython's 5 ms switch interval a
# lookup waits behind the loop for up to 5 ms at each handoff, several per request; gen-0
# collections every 700 allocations then run during a batch's work and a request's alike.
SWITCH_INTERVAL_S = 0.0005
GC_THRESHOLD = (50_000, 20, 100)


class OrderstreamApp(faust.App):
    """A faust app whose first service is orderstream's runtime (API, stores, producer)."""

    runtime: Runtime
    stop_: Stop
    membership: Membership

    def on_init_dependencies(self) -> Iterable[ServiceT]:
        # The API is orderstream's own uvicorn server; faust's CLI turns its aiohttp
        # server on (`--with-web` is its default), and this wins over that.
        self.boot_strategy.enable_web = False
        return [self.runtime, *super().on_init_dependencies()]

    async def on_first_start(self) -> None:
        """A clear error for an unusable DATA_DIR, before faust creates its directory in it."""
        try:
            check_writable(self.runtime.settings.state_dir)
        except StateError as error:
            log.error("orderstream: %s", error)
            raise SystemExit(1) from None
        tune_interpreter()  # the worker's only: not `faust -A app reset` and the like
        threading.excepthook = thread_exception_logger(self.stop_)
        await super().on_first_start()

    async def on_stop(self) -> None:
        """A stop (SIGTERM, Ctrl-C, a crash) ends within the runtime's limit, whatever the
        broker does."""
        self.stop_.within_limit()
        await super().on_stop()


def faust_settings(settings: Settings) -> dict[str, Any]:
    """faust's own settings: tuned for a job that keeps its state outside faust Tables."""
    session_ms, heartbeat_ms, rebalance_ms = settings.group_timeouts_ms
    return {
        # `orderstream://` selects app.faust.transport: agents get whole fetches, not single records
        "broker": [f"{transport.SCHEME}://{url}" for url in settings.broker_urls],
        # KAFKA_SECURITY_PROTOCOL and the rest: how faust's consumer and producer connect
        "broker_credentials": faust_credentials(settings),
        # exchanged in the group's assignment metadata: how other workers reach this one
        "canonical_url": settings.advertised_url,
        "datadir": str(settings.state_dir / "faust"),
        "topic_replication_factor": settings.topic_replication or 1,  # faust makes none
        "topic_partitions": settings.topic_partitions,
        # > 0 makes faust use its own PartitionAssignor instead of round robin: it assigns
        # partition p of every topic of equal count to one worker (ingest reads orders[p]
        # and the rekey topic's [p] into one dedup store) and shares every worker's URL
        # and partitions, which the API uses to route queries. No faust tables: no standbys.
        "table_standby_replicas": 1,
        "consumer_auto_offset_reset": "earliest",
        # Kafka's defaults, or tansu's (it waits these out on a group's first join)
        "broker_session_timeout": session_ms / 1000,
        "broker_heartbeat_interval": heartbeat_ms / 1000,
        "broker_rebalance_timeout": rebalance_ms / 1000,
        "broker_commit_interval": 1.0,
        # Both count fetched batches (app.faust.transport), not records: a small buffer keeps
        # one partition from running ahead of the others.
        "broker_commit_every": 100,
        "stream_buffer_maxsize": 4,
        # a fetch of every partition at once, cut into batches of BATCH_MAX_ORDERS
        "broker_max_poll_records": 16 * settings.batch_max_orders,
        "producer_linger": 0.005,
    }


def faust_credentials(settings: Settings) -> faust.types.auth.CredentialsT | None:
    """The security settings in faust's terms: the same connection as Settings.kafka_client
    (one SSL context for both)."""
    client = settings.kafka_client
    if settings.kafka_security_protocol.startswith("SASL_"):
        return faust.SASLCredentials(username=client["sasl_plain_username"],
                                     password=client["sasl_plain_password"],
                                     mechanism=client["sasl_mechanism"],
                                     ssl_context=client.get("ssl_context"))
    if settings.kafka_security_protocol == "SSL":
        return faust.SSLCredentials(client["ssl_context"])
    return None


def create_app(settings: Settings | None = None) -> OrderstreamApp:
    """The app with its runtime, stages as agents, and CLI commands; nothing is started.
    The composition root: each part gets only what it uses."""
    from app.datagen_cli import register_datagen_command
    from app.reset_cli import register_reset_command

    settings = settings or load_settings()
    transport.register()
    app = OrderstreamApp(settings.app_id, **faust_settings(settings))
    transport.set_batch_size(app, settings.batch_max_orders)
    names = topic_names(settings)
    topology = Topology(names)  # filled in at start
    stop = app.stop_ = Stop(app, ",".join(settings.broker_urls))
    metrics = Metrics()
    producer = Producer(settings.kafka_client)  # transactions or not: decided at start

    def highwater(topic: str, partition: int) -> int | None:
        return app.consumer.highwater(faust.types.TP(topic, partition))

    def fail(error: BaseException) -> None:
        guard.fail(error)

    def stores(stage: str, changelog: str, derived: Derived | None = None) -> StoreManager:
        return StoreManager(stage, settings.state_dir, changelog, settings.kafka_client,
                            on_crash=fail, writer=producer, derived=derived)

    dedup = stores("dedup", names.dedup_changelog)
    aggregates = stores("aggregate", names.aggregate_changelog, RankIndex.of(settings.windows))
    guard = BrokerGuard(settings, [(dedup, None), (aggregates, names.by_buyer)], highwater,
                        stop.crash, lambda: stop.stopping, lambda: stop.exit_code)
    stop.before_exit = guard.exit_after_loss  # a stop out of time after a loss
    producer.on_retry = guard.doubt  # 503 until a check of the broker passes
    transport.on_rewind(app, guard.rewound)

    # the stages' configs, built once: what they read is fixed once the runtime started
    ingest = IngestStage(dedup, guard, producer, names, metrics,
                         functools.cache(lambda: ingest_config(settings, topology)), highwater,
                         settings.idle_timeout)
    totals_sinks: list[TotalsSink] = [BuyerTotalsSink(names.buyer_totals,
                                                      topology.totals_partition)]
    if settings.print_sink:
        totals_sinks.append(PrintSink())
    aggregate = AggregateStage(aggregates, guard, producer, names, metrics,
                               functools.cache(lambda: aggregate_config(settings, topology)),
                               totals_sinks,
                               [WindowResultsSink(names.window_results)])
    register_ingest(app, ingest, fail)
    register_aggregate(app, aggregate, fail)
    register_datagen(app, producer, names.orders, settings.datagen_rps, settings.datagen_rows,
                     lambda: stop.stopping)

    membership = app.membership = Membership(app, names, settings.advertised_url, ingest,
                                             aggregate, guard, metrics)
    history = MetricHistory(metrics.sampled())
    register_sampler(app, history)
    register_heap_trim(app)
    queries = WorkerQueries(settings, metrics, topology, membership, stop, history)
    api = ApiServer(create_api(queries), settings.api_host, settings.api_port)
    app.runtime = Runtime(settings, topology, stop, producer, (dedup, aggregates), guard,
                          membership, api)
    register_datagen_command(app, settings)
    register_reset_command(app, settings)
    _connect_rebalance(app)
    # faust's worker leaves aiokafka at DEBUG: log records nobody reads cost ~10% CPU.
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    # and httpx an INFO line per call to another worker: hundreds a minute under queries
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return app


def ingest_config(settings: Settings, topology: Topology) -> IngestConfig:
    """The ingest step's view of settings and topics (partition counts are known once the
    runtime has started)."""
    names = topology.names
    return IngestConfig(
        orders_topic=names.orders, rekey_topic=names.rekey,
        orders_partitions=topology.count(names.orders),
        buyer_partitions=topology.count(names.by_buyer),
        horizon_ms=settings.dedup_horizon, windows=settings.windows,
        allowed_lateness_ms=settings.allowed_lateness,
        max_future_skew_ms=settings.max_future_skew,
        max_message_bytes=settings.max_message_bytes, dedup=settings.dedup,
    )


def aggregate_config(settings: Settings, topology: Topology) -> AggregateConfig:
    """The aggregation step's view of settings and topics."""
    return AggregateConfig(settings.windows, settings.allowed_lateness,
                           settings.window_retention, topology.dropped_windows,
                           carriers=topology.count(topology.names.orders),
                           idle_timeout_ms=settings.idle_timeout)


def tune_interpreter() -> None:
    """Serve lookups beside ingest: a shorter GIL switch interval, rarer collections
    (`make bench-state`, throughput; BENCHMARKS.md). For the whole process: a worker's."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.set_threshold(*GC_THRESHOLD)


def thread_exception_logger(stop: Stop) -> Callable[[threading.ExceptHookArgs], None]:
    """A thread's uncaught exception as one log record, not a traceback written to stderr,
    which mode logs a WARNING per write (some 100 lines). faust's consumer thread ends so
    when stopped while the broker is down: aiokafka's fetcher, closing, awaits a request
    task it cancelled (CancelledError); during a stop that is INFO."""
    def log_exception(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:  # as the default hook: a thread's way to end
            return
        name = args.thread.name if args.thread is not None else "?"
        if args.exc_type is asyncio.CancelledError and stop.stopping:
            log.info("thread %s was cancelled while stopping", name)
            return
        log.error("thread %s ended with %s", name, args.exc_type.__name__,
                  exc_info=args.exc_value)
    return log_exception


def _connect_rebalance(app: OrderstreamApp) -> None:
    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        await app.membership.revoked()

    async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        await app.membership.assigned(set(assigned))

    # mode types a handler as (sender, *args, signal=..., **kwargs); these require the
    # partitions as second argument, which faust always sends
    app.on_partitions_revoked.connect(cast(SignalHandlerT[Any], on_revoked))
    app.on_partitions_assigned.connect(cast(SignalHandlerT[Any], on_assigned))
