"""orderstream end to end, with 1 or more workers: real `faust -A app worker` subprocesses with
the default configuration (PRINT_SINK=0), timed through their /metrics.

On tansu the workers run with EMBEDDED_BROKER=1, as `make run` does. On Apache Kafka they
run without it, so each batch is a Kafka transaction, with the suite's group timeouts
(bench.harness.KAFKA_GROUP_TIMEOUTS). `orderstream-notxn` measures what the transactions
cost on Kafka, the same run with them turned off (`without_transactions`):
KAFKA_TRANSACTIONS=off where orderstream has that setting, else EMBEDDED_BROKER=1, the only
other way. Either way the batches are then plain sends (buyer-totals go out after the
batch's commit, input offsets are committed by faust, not in a transaction). EMBEDDED_BROKER=1
changes more: it also turns off the 30 s purge of the repartition topics (DeleteRecords) and,
at start-up, makes the worker check the topics it created for records (one ListOffsets) and
treat state the broker lost as disposable (neither happens in a run from a fresh DATA_DIR on
a clean broker); its group timeouts are tansu's unless set, and the bench sets them, the
same as `orderstream`'s. The run's note and `extra` say which setting it used.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from app.embedded import free_port
from app.settings import Settings
from bench.harness import (
    HOST,
    POLL_S,
    BenchContext,
    RunResult,
    broker_env,
    failed,
    log_tail,
    progress,
    say,
    start_process,
    stop_child,
    venv_command,
)


def worker_env(ctx: BenchContext, app_id: str, data_dir: Path, api_port: int) -> dict[str, str]:
    """A worker's environment: ours without orderstream's variables, plus the run's own."""
    ours = {name.upper() for name in Settings.model_fields}
    suffix = app_id.removeprefix("bench-")
    return {
        **{k: v for k, v in os.environ.items() if k not in ours},
        "KAFKA_BROKER": ctx.broker,
        **broker_env(ctx.broker_kind),
        "APP_ID": app_id,
        "ORDERS_TOPIC": ctx.topic,
        "BUYER_TOTALS_TOPIC": f"buyer-totals-{suffix}",
        "WINDOW_RESULTS_TOPIC": f"window-results-{suffix}",
        "DATA_DIR": str(data_dir),
        "API_PORT": str(api_port),
        "PRINT_SINK": "0",
        "DATAGEN_RPS": "0",
        "PYTHONUNBUFFERED": "1",
    }


def parse_metrics(text: str, names: tuple[str, ...]) -> dict[str, float]:
    """Unlabelled samples of a Prometheus text page, e.g. `orders_counted_total 12345.0`."""
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name in names:
            values[name] = float(rest)
    return values


COUNTERS = ("orders_processed_total", "orders_counted_total", "orders_invalid_total",
            "orders_duplicate_total", "orders_conflict_total", "orders_late_total")


def counters(client: httpx.Client) -> dict[str, float] | None:
    """The worker's counters, or None while its API does not answer."""
    try:
        response = client.get("/metrics")
    except httpx.HTTPError:
        return None
    return parse_metrics(response.text, COUNTERS) if response.status_code == 200 else None


def is_ready(client: httpx.Client) -> bool:
    """True once GET /ready answers 200."""
    try:
        return client.get("/ready").status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Worker:
    """One worker process of a run and the client for its API."""

    process: subprocess.Popen[bytes]
    client: httpx.Client
    log_path: Path
    ready: bool = False
    counters: dict[str, float] = field(default_factory=dict)  # the last /metrics that answered

    def poll(self) -> None:
        """One look at /ready (until it says ready) and /metrics."""
        self.ready = self.ready or is_ready(self.client)
        values = counters(self.client)
        if values is not None:
            self.counters = values


@dataclass
class ClusterWatch:
    """What polling the workers saw: times are seconds since the workers were started."""

    started: float
    ready_s: float | None = None  # every worker ready
    first_processed_s: float | None = None  # on any worker
    counted_s: float | None = None  # the sum over workers reached N
    last: dict[str, float] = field(default_factory=dict)  # counters summed over workers
    last_change: float = 0.0

    def observe(self, now: float, workers: list[Worker], target: int) -> None:
        """Sum the workers' counters; note readiness, the first processed, the N-th counted."""
        total = {name: sum(w.counters.get(name, 0.0) for w in workers) for name in COUNTERS}
        if total != self.last:
            self.last, self.last_change = total, now
        if self.ready_s is None and all(w.ready for w in workers):
            self.ready_s = now - self.started
        if self.first_processed_s is None and total["orders_processed_total"] > 0:
            self.first_processed_s = now - self.started
        if self.counted_s is None and total["orders_counted_total"] >= target:
            self.counted_s = now - self.started


def watch_cluster(workers: list[Worker], ctx: BenchContext, label: str) -> ClusterWatch | str:
    """Poll until N orders are counted over all workers; the error text when one dies or
    everything stalls."""
    now = time.monotonic()
    watch = ClusterWatch(started=now, last_change=now)
    with progress(label, ctx.orders) as report:
        while watch.counted_s is None:
            for index, worker in enumerate(workers):
                if worker.process.poll() is not None:
                    return f"worker {index + 1} exited with code {worker.process.returncode}"
                worker.poll()
            watch.observe(time.monotonic(), workers, ctx.orders)
            if time.monotonic() - watch.last_change > ctx.stall_timeout_s:
                return f"no progress for {ctx.stall_timeout_s:.0f}s (counters {watch.last})"
            state = "ready" if watch.ready_s is not None else "starting"
            report(int(watch.last["orders_counted_total"]),
                   f"{state}, {int(watch.last['orders_processed_total']):,} read")
            time.sleep(POLL_S)
    return watch


def _answer(client: httpx.Client, path: str, params: dict[str, int],
            timeout_s: float = 60.0) -> Any:
    """The JSON of a 200; a 503 (the worker checking the broker after a sign of trouble,
    on a loaded machine) is asked again for up to `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.get(path, params=params)
        if response.status_code != 503 or time.monotonic() > deadline:
            response.raise_for_status()
            return response.json()
        time.sleep(0.5)


def buyer_count_sum(client: httpx.Client) -> int:
    """Sum of `count` over every buyer of GET /buyers, page by page (any worker answers for
    all)."""
    total, offset = 0, 0
    while True:
        page = _answer(client, "/buyers", {"limit": 10_000, "offset": offset})
        total += sum(item["count"] for item in page["items"])
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return total


def cluster_result(watch: ClusterWatch, workers: list[Worker], target: int) -> RunResult:
    """orders/s from the first processed order to the N-th counted; checked against /buyers."""
    assert watch.first_processed_s is not None and watch.counted_s is not None
    seconds = watch.counted_s - watch.first_processed_s
    extra = {"ready_s": watch.ready_s, "first_processed_s": watch.first_processed_s,
             "counters": watch.last,
             "counted_per_worker": [w.counters.get("orders_counted_total") for w in workers],
             "buyers_count_sum": buyer_count_sum(workers[0].client)}
    if extra["buyers_count_sum"] != target:
        return failed(f"/buyers counts add up to {extra['buyers_count_sum']:,}, not {target:,}",
                      **extra)
    return RunResult(orders_per_s=target / seconds if seconds > 0 else float("inf"),
                     seconds=seconds, note=f"ready {watch.ready_s or 0:.1f}s", extra=extra)


def start_workers(ctx: BenchContext, run_dir: Path, app_id: str, count: int,
                  extra_env: dict[str, str]) -> list[Worker]:
    """`count` workers of one app id, each with its own DATA_DIR and API port."""
    command = [venv_command("faust"), "-A", "app", "worker", "-l", "warn"]
    workers = []
    for index in range(count):
        port = free_port(HOST)
        env = {**worker_env(ctx, app_id, run_dir / f"data{index}", port), **extra_env}
        log_path = run_dir / f"worker{index}.log"
        workers.append(Worker(process=start_process(command, env, log_path), log_path=log_path,
                              client=httpx.Client(base_url=f"http://{HOST}:{port}", timeout=5,
                                                  trust_env=False)))
    return workers


def run_orderstream(ctx: BenchContext, run_index: int, workers: int = 1,
                    label: str = "orderstream", **extra_env: str) -> RunResult:
    """orderstream's workers with the defaults (PRINT_SINK=0), fresh state, timed by /metrics."""
    app_id = f"bench-{uuid.uuid4().hex[:8]}"
    run_dir = ctx.workdir / app_id
    run_dir.mkdir()
    started: list[Worker] = []
    try:
        started = start_workers(ctx, run_dir, app_id, workers, extra_env)
        outcome = watch_cluster(started, ctx, f"{label} run {run_index + 1}")
        result = (failed(outcome) if isinstance(outcome, str)
                  else cluster_result(outcome, started, ctx.orders))
    finally:
        codes = [stop_child(w.process) for w in started]
        for worker in started:
            worker.client.close()
    result.extra.update(app_id=app_id, worker_logs=[str(w.log_path) for w in started],
                        worker_exit_codes=codes)
    if not result.ok:
        say(f"{label} run {run_index + 1} failed: {result.error}; last worker log "
            f"{started[-1].log_path}:\n{log_tail(started[-1].log_path)}")
    return result


def run_orderstream_workers(workers: int) -> Callable[[BenchContext, int], RunResult]:
    """orderstream with `workers` workers of one app id on the same data."""
    def run(ctx: BenchContext, run_index: int) -> RunResult:
        return run_orderstream(ctx, run_index, workers=workers,
                               label=f"orderstream ×{workers} workers")
    return run


def run_orderstream_without_dedup(ctx: BenchContext, run_index: int) -> RunResult:
    """The same with DEDUP=0: what deduplication by order number costs."""
    return run_orderstream(ctx, run_index, label="orderstream, DEDUP=0", DEDUP="0")


def without_transactions() -> dict[str, str]:
    """What turns a worker's transactions off on Kafka: KAFKA_TRANSACTIONS=off where the
    settings have it, else EMBEDDED_BROKER=1 (see the module docstring for what else that
    changes)."""
    if "kafka_transactions" in Settings.model_fields:
        return {"KAFKA_TRANSACTIONS": "off"}
    return {"EMBEDDED_BROKER": "1"}


def run_orderstream_without_transactions(ctx: BenchContext, run_index: int) -> RunResult:
    """On Apache Kafka, the same without transactions (`without_transactions`)."""
    setting = without_transactions()
    result = run_orderstream(ctx, run_index, label="orderstream, no transactions", **setting)
    named = ", ".join(f"{name}={value}" for name, value in setting.items())
    result.note = f"{result.note}, {named}" if result.note else named
    result.extra["without_transactions"] = setting
    return result
