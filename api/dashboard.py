"""The dashboard's figures: one worker's (`local_view`), and the group's merged from every
worker's (`merge_views`). Rates are differences of the worker's samples of its counters
(QueryService.history), as Prometheus' rate() computes them from /metrics."""

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from core.jobgraph import OPERATORS
from core.queries import partition_channels
from core.timefmt import wall_ms
from core.watermarks import NO_WATERMARK

RATE_WINDOW_MS = 6_000  # rates over the samples of the last 6 s (3 samples)
BUCKET_MS = 2_000  # the chart's points, on the wall clock: workers' rates add up per point
STALE_MS = 10_000  # samples older than this: the worker's rates are unknown, not its last
COUNTERS = {"processed": "orders_processed_total", "counted": "orders_counted_total",
            "invalid": "orders_invalid_total", "duplicate": "orders_duplicate_total",
            "conflict": "orders_conflict_total", "late": "orders_late_total"}
Sample = tuple[int, int, Mapping[str, float]]  # wall ms, monotonic ms, value by series


def rates(samples: Sequence[Sample], now_ms: int | None = None) -> dict[str, float]:
    """Per series, its increase per second between the newest sample and the oldest one
    of the last RATE_WINDOW_MS; none with fewer than two samples, or when the newest is
    older than STALE_MS (the sampler stopped: a rate of then is not one of now)."""
    if len(samples) < 2:
        return {}
    last_wall, last_mono, last = samples[-1]
    if now_ms is not None and now_ms - last_wall > STALE_MS:
        return {}
    _, first_mono, first = next(s for s in samples[:-1]
                                if last_mono - s[1] <= RATE_WINDOW_MS or s is samples[-2])
    seconds = (last_mono - first_mono) / 1000
    if seconds <= 0:
        return {}
    return {name: max(0.0, (value - first.get(name, 0.0)) / seconds)
            for name, value in last.items()}


def operator_figures(last: Mapping[str, float], per_s: Mapping[str, float],
                     ) -> list[dict[str, Any]]:
    """Each operator: records in and out (totals and per second), and the time its task
    waits on its input or output, in ms per second (Flink's idle and back-pressured), from
    the newest sample and the rates."""
    figures = []
    for op in OPERATORS:
        record_in = f"orderstream_operator_records_in_total{{operator={op.name}}}"
        record_out = f"orderstream_operator_records_out_total{{operator={op.name}}}"
        wait = (None if op.waits_on is None else
                f"orderstream_operator_wait_seconds_total{{on={op.waits_on},operator={op.name}}}")
        figures.append({
            "name": op.name, "task": op.task, "records": op.records, "waits_on": op.waits_on,
            "in_total": last.get(record_in, 0.0), "out_total": last.get(record_out, 0.0),
            "in_per_s": per_s.get(record_in, 0.0), "out_per_s": per_s.get(record_out, 0.0),
            "wait_ms_per_s": None if wait is None else per_s.get(wait, 0.0) * 1000})
    return figures


def gauge_values(families: Iterable[Any], name: str) -> dict[tuple[str, ...], float]:
    """A gauge's samples by their label values (prometheus_client metric families)."""
    return {tuple(sample.labels.values()): sample.value for family in families
            if family.name == name for sample in family.samples}


def local_view(service: Any, samples: Sequence[Sample]) -> dict[str, Any]:
    """This worker's part of the dashboard."""
    now_ms = wall_ms()
    service.refresh_gauges()
    metrics = service.metrics
    families = [f for gauge in (metrics.lag, metrics.source_watermark, metrics.source_idle)
                for f in gauge.collect()]
    orders = service.topics.orders
    lag = {int(p): v for (t, p), v in gauge_values(families, "orderstream_consumer_lag").items()
           if t == orders}
    idle = {int(p): v for (p,), v in gauge_values(families, "orderstream_source_idle").items()}
    sources = [{"partition": int(p), "watermark_ms": int(v), "idle": bool(idle.get(int(p))),
                "lag": lag.get(int(p))}
               for (p,), v in gauge_values(families, "orderstream_source_watermark_ms").items()]
    aggregation = []
    with service.reading() as stores:
        for partition, store in sorted(stores.items()):
            watermark, channels = partition_channels(store)
            aggregation.append({
                "partition": partition,
                "watermark_ms": None if watermark == NO_WATERMARK else watermark,
                "sources": [{"partition": carrier, "idle": channel.idle_at(now_ms),
                             "watermark_ms": None if channel.watermark_ms == NO_WATERMARK
                             else channel.watermark_ms} for carrier, channel in channels]})
    last = samples[-1][2] if samples else {}
    per_s = rates(samples, now_ms)
    url = service.settings.advertised_url.rstrip("/")
    return {
        "workers": [{"url": url, "status": service.readiness,
                     "partitions": sorted(service.owned()),
                     "orders_partitions": sorted(s["partition"] for s in sources),
                     "lag": int(sum(lag.values()))}],
        "operators": operator_figures(last, per_s),
        "counters": {name: int(last.get(series, 0)) for name, series in COUNTERS.items()},
        "orders_per_s": per_s.get(COUNTERS["processed"], 0.0),
        "processed": [[wall, values.get(COUNTERS["processed"], 0.0)]
                      for wall, _, values in samples],
        "sources": sorted(sources, key=lambda s: s["partition"]),
        "aggregation": aggregation,
    }


def unreachable_view(url: str, partitions: Iterable[int]) -> dict[str, Any]:
    """A worker that did not answer, with the partitions the group says it holds."""
    return {"workers": [{"url": url, "status": "unreachable", "partitions": sorted(partitions),
                         "orders_partitions": [], "lag": None}],
            "operators": [], "counters": {}, "orders_per_s": 0.0, "processed": [],
            "sources": [], "aggregation": []}


def merge_views(views: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The group's dashboard from its workers' views: figures added (by operator name; a
    worker that did not answer adds none), lists joined."""
    operators = {op["name"]: op for op in operator_figures({}, {})}  # all at 0
    for view in views:
        for figures in view["operators"]:
            merged_op = operators.get(figures["name"])
            if merged_op is None:  # a worker of another version
                continue
            for field in ("in_total", "out_total", "in_per_s", "out_per_s"):
                merged_op[field] += figures[field]
            if merged_op["wait_ms_per_s"] is not None:
                merged_op["wait_ms_per_s"] += figures["wait_ms_per_s"] or 0.0
    return {
        "workers": sorted((w for v in views for w in v["workers"]), key=lambda w: w["url"]),
        "operators": list(operators.values()),
        "counters": {name: sum(v["counters"].get(name, 0) for v in views) for name in COUNTERS},
        "orders_per_s": sum(v["orders_per_s"] for v in views),
        "throughput": group_throughput([v["processed"] for v in views]),
        "sources": sorted((s for v in views for s in v["sources"]),
                          key=lambda s: s["partition"]),
        "aggregation": sorted((a for v in views for a in v["aggregation"]),
                              key=lambda a: a["partition"]),
    }


def group_throughput(series: Sequence[Sequence[Sequence[float]]]) -> list[list[float]]:
    """Orders/s of the group per BUCKET_MS on the wall clock, `[bucket end, per second]`.

    Each worker's cumulative counter is interpolated at the bucket boundaries its samples
    span, so workers sampling out of phase add up exactly; the chart ends at the oldest of
    the workers' newest samples, where every worker's figure is known."""
    series = [s for s in series if len(s) >= 2]
    if not series:
        return []
    end = min(s[-1][0] for s in series)
    start = min(s[0][0] for s in series)
    bounds = range(math.ceil(start / BUCKET_MS) * BUCKET_MS, int(end) + 1, BUCKET_MS)
    per_bucket: dict[int, float] = {}
    for samples in series:
        at = list(zip(bounds, _at_bounds(samples, bounds), strict=True))
        for (_, low), (after, high) in zip(at, at[1:], strict=False):
            if low is not None and high is not None:
                per_bucket[after] = per_bucket.get(after, 0.0) + max(0.0, high - low) / (
                    BUCKET_MS / 1000)
    return [[bucket, per_bucket[bucket]] for bucket in sorted(per_bucket)]


def _at_bounds(samples: Sequence[Sequence[float]], bounds: range) -> list[float | None]:
    """A cumulative counter's value at each bound (ascending), interpolated between the
    samples around it; None outside them. One pass over both."""
    values: list[float | None] = []
    i = 0
    for at_ms in bounds:
        while i + 2 < len(samples) and samples[i + 1][0] < at_ms:
            i += 1
        (t0, v0), (t1, v1) = samples[i], samples[i + 1]
        if not t0 <= at_ms <= t1:
            values.append(None)
        else:
            values.append(v0 if t1 == t0 else v0 + (v1 - v0) * (at_ms - t0) / (t1 - t0))
    return values
