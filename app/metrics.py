"""Prometheus metrics of one worker (prometheus-client), served at GET /metrics."""

import contextlib
import time
from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from core.jobgraph import OPERATORS

disable_created_metrics()


class Metrics:
    """SPEC.md's counters, plus per-partition gauges, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.processed = Counter("orders_processed", "Messages read from the orders topic",
                                 registry=r)
        self.counted = Counter("orders_counted", "Orders applied to the aggregates", registry=r)
        self.invalid = Counter("orders_invalid", "Messages sent to the DLQ as invalid",
                               registry=r)
        self.duplicate = Counter("orders_duplicate", "Exact repeats of an order already counted",
                                 registry=r)
        self.conflict = Counter("orders_conflict",
                                "Orders reusing a counted order number with other content",
                                registry=r)
        self.late = Counter("orders_late", "Orders that missed a final window", registry=r)
        self.watermark = Gauge("orderstream_watermark_ms",
                               "Watermark per aggregation partition: the min over its "
                               "sources' watermarks (idle ones left out)",
                               ["partition"], registry=r)
        self.source_watermark = Gauge("orderstream_source_watermark_ms",
                                      "Largest order time read, per orders partition",
                                      ["partition"], registry=r)
        self.source_idle = Gauge("orderstream_source_idle",
                                 "1 while this worker declares an orders partition idle",
                                 ["partition"], registry=r)
        self.lag = Gauge("orderstream_consumer_lag",
                         "Messages behind the end of the topic, per partition",
                         ["topic", "partition"], registry=r)
        self.requests = Histogram("orderstream_http_request_seconds",
                                  "HTTP requests served, by route and status",
                                  ["route", "status"], registry=r)
        self.rebalances = Counter("orderstream_rebalances",
                                  "Partition assignments this worker received", registry=r)
        self.sse_clients = Gauge("orderstream_sse_clients", "Server-sent event streams open",
                                 registry=r)
        self.sse_dropped = Counter("orderstream_sse_dropped",
                                   "Stream clients dropped for falling too far behind",
                                   registry=r)
        self.forwarded = Histogram("orderstream_forwarded_call_seconds",
                                   "Calls to other workers, by route and outcome",
                                   ["route", "outcome"], registry=r)
        self.operators = OperatorMetrics(r)

    def sampled(self) -> list[Collector]:
        """The counters the dashboard shows over time (app.history)."""
        ops = self.operators
        return [self.processed, self.counted, self.invalid, self.duplicate, self.conflict,
                self.late, ops.records_in, ops.records_out, ops.wait]


class OperatorMetrics:
    """Records in and out of each operator of the job graph (core.jobgraph), and how long
    the ends of its tasks wait on their input or output (the dashboard's figures, and
    /metrics')."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.records_in = Counter("orderstream_operator_records_in",
                                  "Records into each operator of the job graph",
                                  ["operator"], registry=registry)
        self.records_out = Counter("orderstream_operator_records_out",
                                   "Records out of each operator of the job graph",
                                   ["operator"], registry=registry)
        self.wait = OperatorWaits(registry)
        # children made once: labels() takes a lock each call, and a series shows as 0
        # from the start
        self._in = {op.name: self.records_in.labels(op.name) for op in OPERATORS}
        self._out = {op.name: self.records_out.labels(op.name) for op in OPERATORS}

    def moved(self, operator: str, records_in: int, records_out: int) -> None:
        """Records an operator took in and passed on."""
        self._in[operator].inc(records_in)
        self._out[operator].inc(records_out)

    def waited(self, operator: str, on: str, seconds: float) -> None:
        """Time `operator` waited on its `input` or `output`."""
        self.wait.add(operator, on, seconds)

    @contextlib.contextmanager
    def waiting(self, operator: str, on: str) -> Iterator[None]:
        """A wait going on (`with`): counted as it goes, not only once it ends, so an
        input that stays idle shows as waiting all along."""
        self.wait.begin(operator, on)
        try:
            yield
        finally:
            self.wait.end(operator, on)


class OperatorWaits(Collector):
    """`orderstream_operator_wait_seconds_total{operator,on}`: time waited so far, the
    waits going on included up to the moment of the scrape."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._done = {(op.name, op.waits_on): 0.0 for op in OPERATORS if op.waits_on}
        self._since: dict[tuple[str, str], float] = {}  # waits going on: since when
        registry.register(self)

    def add(self, operator: str, on: str, seconds: float) -> None:
        self._done[operator, on] += seconds

    def begin(self, operator: str, on: str) -> None:
        self._since[operator, on] = time.monotonic()

    def end(self, operator: str, on: str) -> None:
        since = self._since.pop((operator, on), None)
        if since is not None:
            self._done[operator, on] += time.monotonic() - since

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "orderstream_operator_wait_seconds",
            "Time a task's end waited: the source and the aggregate on their input (nothing "
            "fetched yet), repartition and sinks on their output (a batch's records sent and "
            "acknowledged, and its store committed), the latter summed over partitions",
            labels=["operator", "on"])
        now = time.monotonic()
        for (operator, on), done in self._done.items():
            since = self._since.get((operator, on))
            family.add_metric([operator, on], done + (0.0 if since is None else now - since))
        yield family

