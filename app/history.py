"""The worker's figures over the last minutes, for the dashboard: a sample of its counters
every SAMPLE_INTERVAL_S, kept for HISTORY_S. Rates come from the difference of two
samples, as Prometheus' rate() would compute them from /metrics."""

from collections import deque

from prometheus_client import CollectorRegistry

SAMPLE_INTERVAL_S = 2.0
HISTORY_S = 600  # the dashboard's chart: orders/s over the last 10 minutes
# The counters sampled (Prometheus sample names, with the labels that pick a series).
COUNTERS = ("orders_processed_total", "orders_counted_total", "orders_invalid_total",
            "orders_duplicate_total", "orders_conflict_total", "orders_late_total")
OPERATOR_SERIES = ("orderstream_operator_records_in_total",
                   "orderstream_operator_records_out_total",
                   "orderstream_operator_wait_seconds_total")

Sample = tuple[int, dict[str, float]]  # wall ms, value by series name


def series_name(sample_name: str, labels: dict[str, str]) -> str:
    """`orderstream_operator_wait_seconds_total{operator=source,on=input}` as one key."""
    if not labels:
        return sample_name
    return sample_name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"


class MetricHistory:
    """Samples of the worker's counters, oldest first."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._samples: deque[Sample] = deque(maxlen=int(HISTORY_S / SAMPLE_INTERVAL_S) + 2)

    def sample(self, now_ms: int) -> None:
        """Take a sample of every counter the dashboard shows."""
        values: dict[str, float] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name in COUNTERS or sample.name in OPERATOR_SERIES:
                    values[series_name(sample.name, sample.labels)] = sample.value
        self._samples.append((now_ms, values))

    def samples(self) -> list[Sample]:
        """Every sample kept, oldest first (a copy: the worker's loop appends)."""
        return list(self._samples)
