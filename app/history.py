"""The worker's figures over the last minutes, for the dashboard: a sample of the counters
it shows every SAMPLE_INTERVAL_S, kept for HISTORY_S. Rates come from the difference of
two samples, as Prometheus' rate() would compute them from /metrics."""

import time
from collections import deque
from collections.abc import Iterable

from prometheus_client.registry import Collector

SAMPLE_INTERVAL_S = 2.0
HISTORY_S = 600  # the dashboard's chart: orders/s over the last 10 minutes

# wall ms (where it sits on the chart), monotonic ms (how far apart two samples are: the
# wall clock may step), value by series name
Sample = tuple[int, int, dict[str, float]]


def series_name(sample_name: str, labels: dict[str, str]) -> str:
    """`orderstream_operator_wait_seconds_total{on=input,operator=source}` as one key."""
    if not labels:
        return sample_name
    return sample_name + "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"


class MetricHistory:
    """Samples of some of the worker's counters, oldest first."""

    def __init__(self, sources: Iterable[Collector]) -> None:
        """`sources`: the counters to sample (collecting only these keeps a sample cheap:
        the registry's histograms are not walked)."""
        self.sources = list(sources)
        self._samples: deque[Sample] = deque(maxlen=int(HISTORY_S / SAMPLE_INTERVAL_S) + 2)

    def sample(self, now_ms: int) -> None:
        """Take a sample of every counter the dashboard shows."""
        values = {series_name(s.name, s.labels): s.value for source in self.sources
                  for family in source.collect() for s in family.samples
                  if s.name.endswith("_total")}
        self._samples.append((now_ms, int(time.monotonic() * 1000), values))

    def samples(self) -> list[Sample]:
        """Every sample kept, oldest first (a copy: the worker's loop appends)."""
        return list(self._samples)
