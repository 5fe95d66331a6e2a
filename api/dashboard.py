"""The dashboard's figures: one worker's (`local_view`), and the group's merged from every
worker's (`merge_views`). Rates are differences of the worker's samples of its counters
(api.ports.MetricHistory), as Prometheus' rate() computes them from /metrics."""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from core.jobgraph import OPERATORS
from core.queries import partition_channels
from core.watermarks import NO_WATERMARK

RATE_WINDOW_MS = 6_000  # rates over the samples of the last 6 s (3 samples)
BUCKET_MS = 2_000  # the chart's points: workers' samples in the same 2 s add up
COUNTERS = {"processed": "orders_processed_total", "counted": "orders_counted_total",
            "invalid": "orders_invalid_total", "duplicate": "orders_duplicate_total",
            "conflict": "orders_conflict_total", "late": "orders_late_total"}
Sample = tuple[int, Mapping[str, float]]


def rates(samples: Sequence[Sample]) -> dict[str, float]:
    """Per series, its increase per second between the newest sample and the oldest one
    of the last RATE_WINDOW_MS (none with fewer than two samples)."""
    if len(samples) < 2:
        return {}
    last_ms, last = samples[-1]
    first_ms, first = next(s for s in samples[:-1] if last_ms - s[0] <= RATE_WINDOW_MS
                           or s is samples[-2])
    seconds = (last_ms - first_ms) / 1000
    return {name: max(0.0, (value - first.get(name, 0.0)) / seconds)
            for name, value in last.items()}


def throughput(samples: Sequence[Sample], series: str) -> list[list[float]]:
    """`[bucket_ms, per second]` between consecutive samples of one series."""
    points = []
    for (before_ms, before), (after_ms, after) in zip(samples, samples[1:], strict=False):
        per_s = max(0.0, after.get(series, 0.0) - before.get(series, 0.0)) / (
            (after_ms - before_ms) / 1000)
        points.append([after_ms - after_ms % BUCKET_MS, per_s])
    return points


def _operator_series(name: str, labels: str) -> str:
    return f"orderstream_operator_{name}_total{{{labels}}}"


def operator_figures(samples: Sequence[Sample]) -> list[dict[str, Any]]:
    """Each operator: records in and out (totals and per second), and the time its task
    waits on its input or output, in ms per second (Flink's idle and back-pressured)."""
    last = samples[-1][1] if samples else {}
    per_s = rates(samples)
    figures = []
    for op in OPERATORS:
        record_in = _operator_series("records_in", f"operator={op.name}")
        record_out = _operator_series("records_out", f"operator={op.name}")
        wait = (None if op.waits_on is None else
                _operator_series("wait_seconds", f"on={op.waits_on},operator={op.name}"))
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
    service.refresh_gauges()
    families = list(service.metrics.registry.collect())
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
                "sources": [{"partition": carrier, "idle": channel.idle_until_ms is not None,
                             "watermark_ms": None if channel.watermark_ms == NO_WATERMARK
                             else channel.watermark_ms} for carrier, channel in channels]})
    last = samples[-1][1] if samples else {}
    per_s = rates(samples)
    url = service.settings.advertised_url.rstrip("/")
    return {
        "workers": [{"url": url, "status": service.readiness, "partitions": sorted(
            service.owned()), "lag": int(sum(lag.values()))}],
        "operators": operator_figures(samples),
        "counters": {name: int(last.get(series, 0)) for name, series in COUNTERS.items()},
        "orders_per_s": per_s.get(COUNTERS["processed"], 0.0),
        "throughput": throughput(samples, COUNTERS["processed"]),
        "sources": sorted(sources, key=lambda s: s["partition"]),
        "aggregation": aggregation,
    }


def merge_views(views: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The group's dashboard from its workers' views: figures added, lists joined."""
    merged: dict[str, Any] = {
        "workers": sorted((w for v in views for w in v["workers"]), key=lambda w: w["url"]),
        "sources": sorted((s for v in views for s in v["sources"]),
                          key=lambda s: s["partition"]),
        "aggregation": sorted((a for v in views for a in v["aggregation"]),
                              key=lambda a: a["partition"]),
        "counters": {name: sum(v["counters"].get(name, 0) for v in views) for name in COUNTERS},
        "orders_per_s": sum(v["orders_per_s"] for v in views),
    }
    operators = [dict(op) for op in views[0]["operators"]] if views else []
    for view in views[1:]:
        for op, other in zip(operators, view["operators"], strict=True):
            for field in ("in_total", "out_total", "in_per_s", "out_per_s"):
                op[field] += other[field]
            if op["wait_ms_per_s"] is not None:
                op["wait_ms_per_s"] += other["wait_ms_per_s"] or 0.0
    merged["operators"] = operators
    buckets: dict[float, float] = {}
    for view in views:
        for at, per_s in view["throughput"]:
            buckets[at] = buckets.get(at, 0.0) + per_s
    merged["throughput"] = [[at, buckets[at]] for at in sorted(buckets)]
    return merged
