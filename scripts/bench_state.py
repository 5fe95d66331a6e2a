"""State benchmarks: query latency under ingest, recovery time, worker memory, lookups/s.

Four measurements, each on its own broker (on free ports) with pre-produced orders and real
`faust -A app worker` subprocesses (print sink off, fresh APP_ID and DATA_DIR), as
scripts/bench.py does. `--broker tansu` (the default): the embedded broker, in memory,
workers with EMBEDDED_BROKER=1. `--broker kafka`: Apache Kafka 4.1.1, one KRaft node the
bench starts from the jars tests/kafka.py caches (Java 17+; Maven fetches them the first
time), workers without EMBEDDED_BROKER (every batch a Kafka transaction) and with the
suite's group timeouts (bench.harness.KAFKA_GROUP_TIMEOUTS).

latency   One worker ingests N orders (default 200,000; datagen seed 1, `--buyers` buyers,
          event time at 1,000 orders/s) at full speed while one client fires sequential
          requests: `GET /buyers/{first}/{last}` for a random buyer of the input (half of
          them) and `GET /windows/{name}/top` for each configured window (the other half).
          Reports p50/p99/max and the count per route over the ingest (from the first order
          read to the N-th counted), the ingest rate of the same run, and the same routes
          once ingest is over. Goal: p99 <= 20 ms for key lookups, <= 50 ms for /top
          (reported, not asserted).
recovery  Orders crafted so that no buyer repeats within the largest window: every order
          makes one row per window it falls in (7 with the default windows), so
          ceil(--rows / 7) orders give ~1,000,000 window rows (counted afterwards in the
          RocksDB stores: `w|` keys). WINDOW_RETENTION is set to 3650d for this run so no row
          is deleted. One worker ingests them and stops; then the time from process start to
          `/ready` answering 200 is measured (a) restarting on the same DATA_DIR and broker
          (RocksDB on disk), (b) after deleting DATA_DIR (changelogs only). Each restored
          worker is checked against the first (buyer counts add up to N, a fingerprint of
          /buyers and /windows). Also the size of DATA_DIR. Goal: (a) <= 10 s, (b) <= 30 s.
          On Kafka (b) restores from compacted changelogs. The worker creates them as
          usual (cleanup.policy=compact); after the load the bench reads them once
          (records written, distinct keys, offsets including transaction markers), then
          sets segment.ms=100, min.cleanable.dirty.ratio=0 and delete.retention.ms=0 on
          them, so that restart (a)'s fences roll every segment the load wrote, and waits
          until the broker's log cleaner has cleaned every partition up to its active
          segment (the node's cleaner-offset-checkpoint against its segment files,
          `--compaction-timeout`); then it reads them again (records kept) before (b).
memory    One worker ingests N orders (default 1,000,000 over 100,000 buyers, event time at
          100 orders/s so the input spans ~2.8 h of event time and the default 1 h retention
          applies after ~37% of it); the worker's RSS (/proc/<pid>/status VmRSS) is sampled
          every second. Reports peak (and the kernel's VmHWM), final, samples, and the
          growth after retention applies. Goal: <= 500 MB.
throughput One worker ingests N orders (default 300,000 over `--throughput-buyers` 10,000
          buyers) while `--connections` (50) kept-alive connections ask
          `GET /buyers/{first}/{last}` for random buyers of the input's first 5% (counted
          before the load starts), one request in flight per connection: closed loop (ask
          again on each answer: the most it serves) and open loop (`--open-rate` 1,000/s
          in all, latency from each request's due time, so a stall counts in full), each
          `--load-seconds` (10) after 1 s of warm-up, during ingest (from 15% counted on)
          and once ingest is over and the worker is quiet (its CPU under 5% of a core).
          Reports requests/s, p50/p90/p99/max, statuses, errors, the worker's CPU and the
          ingest rate meanwhile. The load generator is an asyncio client of its own in a
          subprocess, measured first against a trivial server: its ceiling and its CPU per
          request are in the results. Goal: idle >= 1,000/s and p99 <= 50 ms.

Run it (from the repository root; no make needed):

    .venv/bin/python scripts/bench_state.py                       # all three, full sizes
    .venv/bin/python scripts/bench_state.py --orders 20000 --rows 100000   # a quick look
    .venv/bin/python scripts/bench_state.py --only latency --orders 200000 --buyers 10000
    .venv/bin/python scripts/bench_state.py --only recovery --only memory
    .venv/bin/python scripts/bench_state.py --only recovery --broker kafka
    .venv/bin/python scripts/bench_state.py --only throughput --load-seconds 5
    .venv/bin/python scripts/bench_state.py --commit HEAD         # the committed code only
    .venv/bin/python scripts/bench_state.py --summary bench/results/bench-state-<stamp>.json

`--orders` sets N of the latency, memory and throughput runs (and of the recovery run, which
otherwise derives it from `--rows`). `--commit REV` runs the workers from `git archive REV` (the
working tree can hold others' unfinished edits). Results go to
`bench/results/bench-state-<UTC stamp>.json`, a summary to stdout, progress to stderr.
Exit code 0 when every measurement ran, 1 when one failed, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python scripts/bench_state.py` puts scripts/ first, not the root
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from app.embedded import free_port, stop_process  # noqa: E402
from app.settings import Settings  # noqa: E402
from bench.harness import (  # noqa: E402
    BROKER_KINDS,
    Broker,
    BrokerUnavailable,
    broker_description,
    broker_env,
    create_topic,
    interrupt_on_stop_signals,
    kafka_runtime,
    log_tail,
    progress,
    versions,
)
from bench.harness import broker as start_broker  # noqa: E402
from bench.orderstream import buyer_count_sum, counters  # noqa: E402
from core.datagen import OrderGenerator, buyer_pool, encode, price_text  # noqa: E402
from core.durations import parse_duration_ms  # noqa: E402
from core.fixed import FixedWindow, parse_window_specs  # noqa: E402
from core.timefmt import format_time_ms  # noqa: E402

HOST = "127.0.0.1"
START_TIME_MS = int(datetime(2026, 11, 24, 10, tzinfo=UTC).timestamp() * 1000)  # as make bench
RESULTS_DIR = ROOT / "bench" / "results"
DEFAULT_WINDOWS = "tumble:10s,hop:1m/10s"  # SPEC.md's default, passed explicitly
POLL_S = 0.25
READY_POLL_S = 0.05
RSS_EVERY_S = 1.0
WORKER_STOP_S = 30.0
SEED = 1


def say(message: str) -> None:
    """One progress line on stderr (stdout carries the summary)."""
    print(f"bench-state: {message}", file=sys.stderr, flush=True)


class BenchFailed(RuntimeError):
    """A measurement could not be completed (the worker died, stalled, or answered wrong)."""


# --- the code under test ------------------------------------------------------------------

@dataclass(frozen=True)
class Code:
    """Where the workers' code comes from, which commit it is, and extra worker environment."""

    directory: Path
    commit: str | None
    dirty: bool | None  # uncommitted changes in the working tree (None for an archive)
    env: dict[str, str] = field(default_factory=dict)  # --worker-env, --trace-memory


def git(*args: str) -> str | None:
    """Output of a git command in the repository, None when it fails."""
    try:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.decode().strip() if out.returncode == 0 else None


def code_under_test(commit: str | None, workdir: Path, directory: Path | None = None) -> Code:
    """The working tree, `git archive <commit>` unpacked under workdir, or a directory."""
    if directory is not None:
        return Code(directory.resolve(), None, None)
    if commit is None:
        status = git("status", "--porcelain", "--", "app", "agents", "core", "tables", "api")
        return Code(ROOT, git("rev-parse", "HEAD"), None if status is None else bool(status))
    full = git("rev-parse", "--verify", f"{commit}^{{commit}}")
    if full is None:
        raise BenchFailed(f"no such commit: {commit}")
    archive = subprocess.run(["git", "archive", "--format=tar", full], cwd=ROOT,
                             capture_output=True, check=True).stdout
    target = workdir / f"code-{full[:12]}"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return Code(target, full, None)


TRACE_SITECUSTOMIZE = """\
# written by scripts/bench_state.py --trace-memory: tracemalloc in the faust worker
import os, sys, threading, time, tracemalloc
_out, _every = os.environ.get("BENCH_STATE_TRACE"), float(os.environ.get("BENCH_STATE_TRACE_S", 30))
if _out and os.path.basename(sys.argv[0]) == "faust":
    tracemalloc.start(int(os.environ.get("BENCH_STATE_TRACE_FRAMES", "1")))
    def _dump():
        started = time.monotonic()
        while True:
            time.sleep(_every)
            stats = tracemalloc.take_snapshot().statistics("lineno")[:25]
            current, peak = tracemalloc.get_traced_memory()
            rss = [l for l in open("/proc/self/status") if l.startswith(("VmRSS", "RssAnon"))]
            rss_text = " ".join(" ".join(x.split()[:2]) for x in rss)
            with open(f"{_out}.{os.getpid()}.txt", "a") as f:
                f.write(f"--- {time.monotonic() - started:.0f}s: traced {current / 1e6:.0f} MB "
                        f"(peak {peak / 1e6:.0f} MB); {rss_text} kB\\n")
                f.writelines(f"{s}\\n" for s in stats)
    threading.Thread(target=_dump, daemon=True, name="bench-state-trace").start()
"""


def with_diagnostics(code: Code, args: argparse.Namespace, workdir: Path) -> Code:
    """`--worker-env` and `--trace-memory` as extra worker environment."""
    env = dict(item.split("=", 1) for item in args.worker_env)
    if args.trace_memory:
        site = workdir / "trace-site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(TRACE_SITECUSTOMIZE)
        env.update(PYTHONPATH=f"{code.directory}{os.pathsep}{site}",
                   BENCH_STATE_TRACE=str(workdir / "tracemalloc"),
                   BENCH_STATE_TRACE_S=str(args.trace_memory))
    return Code(code.directory, code.commit, code.dirty, env)


# --- workers ------------------------------------------------------------------------------

@dataclass
class Worker:
    """A running `faust -A app worker` subprocess and where to reach it."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path
    started: float  # time.monotonic() just before the process was started
    started_wall: float  # time.time() at the same moment

    def rss_mb(self) -> tuple[float, float] | None:
        """(VmRSS, VmHWM) in MB from /proc, None once the process is gone."""
        return proc_memory_mb(self.process.pid)

    def alive(self) -> bool:
        return self.process.poll() is None


def proc_memory_mb(pid: int) -> tuple[float, float] | None:
    """VmRSS and VmHWM (peak RSS) of a process in MB (10^6 bytes)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = dict(re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", text, re.MULTILINE))
    if "VmRSS" not in found:
        return None
    return int(found["VmRSS"]) * 1024 / 1e6, int(found.get("VmHWM", 0)) * 1024 / 1e6


def worker_env(broker: Broker, topic: str, app_id: str, data_dir: Path, port: int, code: Code,
               **extra: str) -> dict[str, str]:
    """Our environment without orderstream's variables, plus the run's own (on tansu
    EMBEDDED_BROKER=1; on Kafka the suite's group timeouts: bench.harness.broker_env)."""
    ours = {name.upper() for name in Settings.model_fields} | {"PYTHONPATH"}
    suffix = app_id.removeprefix("bench-")
    return {
        **{k: v for k, v in os.environ.items() if k not in ours},
        "KAFKA_BROKER": broker.bootstrap,
        **broker_env(broker.kind),
        "APP_ID": app_id,
        "ORDERS_TOPIC": topic,
        "BUYER_TOTALS_TOPIC": f"buyer-totals-{suffix}",
        "WINDOW_RESULTS_TOPIC": f"window-results-{suffix}",
        "DATA_DIR": str(data_dir),
        "API_HOST": HOST,
        "API_PORT": str(port),
        "PRINT_SINK": "0",
        "DATAGEN_RPS": "0",
        "PYTHONUNBUFFERED": "1",
        # the code under test comes first, before the editable install's finder
        "PYTHONPATH": str(code.directory),
        **extra,
        **code.env,
    }


def start_worker(env: dict[str, str], log_path: Path, code: Code, level: str) -> Worker:
    """`faust -A app worker -l <level>` in the code's directory, in its own session."""
    faust = Path(sys.executable).parent / "faust"
    url = f"http://{HOST}:{env['API_PORT']}"
    with open(log_path, "ab") as log:
        started, started_wall = time.monotonic(), time.time()
        process = subprocess.Popen(
            [str(faust), "-A", "app", "worker", "-l", level], cwd=code.directory, env=env,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return Worker(process, url, log_path, started, started_wall)


def stop_worker(worker: Worker) -> tuple[int, float]:
    """SIGTERM (SIGKILL after WORKER_STOP_S); the exit code and the seconds it took."""
    started = time.monotonic()
    try:
        code = stop_process(worker.process, timeout_s=WORKER_STOP_S)
    except BaseException:
        stop_process(worker.process, timeout_s=0.1, sig=signal.SIGKILL)
        raise
    return code, time.monotonic() - started


def ensure_alive(worker: Worker) -> None:
    """BenchFailed with the log's tail when the worker has exited."""
    if not worker.alive():
        raise BenchFailed(f"the worker exited with code {worker.process.returncode}; "
                          f"log {worker.log_path}:\n{log_tail(worker.log_path)}")


def ready_status(client: httpx.Client) -> str:
    """What GET /ready says: ready, starting, restoring, rebalancing, or `down`."""
    try:
        response = client.get("/ready", timeout=2)
        return str(response.json().get("status", response.status_code))
    except (httpx.HTTPError, ValueError):
        return "down"


def wait_ready(worker: Worker, client: httpx.Client, timeout_s: float) -> dict[str, Any]:
    """Poll /ready every 50 ms; seconds from process start to ready, and each state's start."""
    states: list[tuple[str, float]] = []
    while True:
        ensure_alive(worker)
        status = ready_status(client)
        now = time.monotonic() - worker.started
        if not states or states[-1][0] != status:
            states.append((status, round(now, 3)))
            say(f"  /ready: {status} at {now:.2f}s")
        if status == "ready":
            return {"ready_s": now, "states": states}
        if now > timeout_s:
            raise BenchFailed(f"not ready after {timeout_s:.0f}s (last {status})")
        time.sleep(READY_POLL_S)


LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\] \[\d+\] \[\w+\] (.*)$")
LOG_EVENTS = {  # what the worker logs at INFO, as in tables/manager.py and faust
    "restoring": re.compile(r"^(\w+): restoring partitions"),
    "restored": re.compile(r"^(\w+): partitions \[.*\] ready"),
    "worker_ready": re.compile(r"\[\^Worker\]: Ready"),
}


def log_timeline(worker: Worker) -> dict[str, float]:
    """Seconds after the process start of the INFO lines that tell where start-up went."""
    found: dict[str, float] = {}
    try:
        lines = worker.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return found
    for line in lines:
        match = LOG_LINE.match(line)
        if not match:
            continue
        stamp = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for event, pattern in LOG_EVENTS.items():
            hit = pattern.search(match[2])
            if hit:
                name = f"{hit[1]}_{event}" if hit.groups() else event
                found.setdefault(name, round(stamp - worker.started_wall, 3))
    return found


# --- watching ingest -----------------------------------------------------------------------

@dataclass
class IngestWatch:
    """What polling a worker through one ingest saw; times in seconds since its start."""

    target: int
    ready_s: float | None = None
    first_processed_s: float | None = None
    counted_s: float | None = None
    last: dict[str, float] = field(default_factory=dict)
    rss: list[tuple[float, int, float]] = field(default_factory=list)  # (s, counted, MB)
    hwm_mb: float = 0.0

    @property
    def counted(self) -> int:
        return int(self.last.get("orders_counted_total", 0))

    @property
    def rate(self) -> float | None:
        """Orders/s from the first order read to the N-th counted."""
        if self.first_processed_s is None or self.counted_s is None:
            return None
        seconds = self.counted_s - self.first_processed_s
        return self.target / seconds if seconds > 0 else None


def sample_rss(worker: Worker, watch: IngestWatch) -> None:
    """One RSS sample, tagged with the orders counted so far."""
    memory = worker.rss_mb()
    if memory is not None:
        watch.rss.append((round(time.monotonic() - worker.started, 2), watch.counted,
                          round(memory[0], 1)))
        watch.hwm_mb = max(watch.hwm_mb, memory[1])


def watch_ingest(worker: Worker, client: httpx.Client, target: int, label: str,
                 stall_s: float, tail_s: float = 0.0) -> IngestWatch:
    """Poll /ready and /metrics until `target` orders are counted (then `tail_s` more)."""
    watch = IngestWatch(target=target)
    last_change = next_rss = time.monotonic()
    with progress(label, target) as report:
        while True:
            ensure_alive(worker)
            now = time.monotonic()
            if watch.ready_s is None and ready_status(client) == "ready":
                watch.ready_s = now - worker.started
            values = counters(client)
            if values is not None and values != watch.last:
                watch.last, last_change = values, now
            if watch.first_processed_s is None and watch.last.get("orders_processed_total", 0):
                watch.first_processed_s = now - worker.started
            if watch.counted_s is None and watch.counted >= target:
                watch.counted_s = now - worker.started
            if now >= next_rss:
                sample_rss(worker, watch)
                next_rss += RSS_EVERY_S
            if watch.counted_s is not None and now - worker.started >= watch.counted_s + tail_s:
                return watch
            if watch.counted_s is None and now - last_change > stall_s:
                raise BenchFailed(f"no progress for {stall_s:.0f}s (counters {watch.last}); "
                                  f"log {worker.log_path}:\n{log_tail(worker.log_path)}")
            rss = f", RSS {watch.rss[-1][2]:.0f} MB" if watch.rss else ""
            read = int(watch.last.get("orders_processed_total", 0))
            report(watch.counted, f"{read:,} read{rss}")
            time.sleep(POLL_S)


# --- input ----------------------------------------------------------------------------------

async def produce(broker: str, topic: str, partitions: int, records: Iterable[tuple[bytes, bytes]],
                  count: int) -> float:
    """Create the topic and send `count` records, acknowledged; the seconds it took."""
    await create_topic(broker, topic, partitions)
    producer = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=20,
                                max_batch_size=512 * 1024, max_request_size=4 * 1024 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        with progress(f"produce {topic}", count) as report:
            pending: list[asyncio.Future[Any]] = []
            for i, (key, value) in enumerate(records, start=1):
                pending.append(await producer.send(topic, value, key=key))
                if len(pending) >= 10_000 or i == count:
                    await asyncio.gather(*pending)
                    pending.clear()
                    report(i)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def fill_topic(broker: str, topic: str, partitions: int,
               records: Iterable[tuple[bytes, bytes]], count: int) -> float:
    seconds = asyncio.run(produce(broker, topic, partitions, records, count))
    say(f"produced {count:,} orders into {topic} ({partitions} partitions) in {seconds:.1f}s")
    return seconds


def datagen_orders(count: int, buyers: int, event_rate: float,
                   seen: set[tuple[str, str]] | None = None) -> Iterator[tuple[bytes, bytes]]:
    """core.datagen's orders (seed 1, skewed buyers), event time at `event_rate` orders/s."""
    generator = OrderGenerator(seed=SEED, start_time_ms=START_TIME_MS,
                               rows_per_second=event_rate, buyers=buyers)
    for _ in range(count):
        order = generator.next_order(0)
        if seen is not None:
            seen.add((order["buyer"]["first_name"], order["buyer"]["last_name"]))
        yield encode(order)


def spread_orders(count: int, buyers: int, event_rate: float) -> Iterator[tuple[bytes, bytes]]:
    """Buyers in turn (order i has buyer i mod `buyers`), event time at `event_rate` orders/s:
    a buyer comes back every buyers/event_rate seconds, so each order makes its own rows."""
    rng = random.Random(SEED)
    pool = buyer_pool(rng, buyers)
    base = 2_000_000_000_000
    for i in range(count):
        first, last = pool[i % buyers]
        yield encode({
            "order_number": base + i,
            "price": price_text(rng.randint(1_00, 500_00)),
            "buyer": {"first_name": first, "last_name": last},
            "order_time": format_time_ms(START_TIME_MS + int(i * 1000 / event_rate)),
        })


def rows_per_order(windows: tuple[FixedWindow, ...]) -> int:
    """Windows each order falls in: size/slide per window."""
    return sum(w.size_ms // w.slide_ms for w in windows)


# --- state on disk ----------------------------------------------------------------------------

def count_state(state_dir: Path) -> dict[str, Any]:
    """Window rows (`w|` keys) per window and buyer totals (`t|`) in the aggregation stores,
    read with RocksDB read-only (the worker must be stopped)."""
    from rocksdict import AccessType, Options, Rdict

    rows: Counter[str] = Counter()
    totals = 0
    stores = sorted(p for p in (state_dir / "aggregate").glob("*") if p.is_dir())
    for path in stores:
        db = Rdict(str(path), Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            it = db.iter()
            it.seek(b"w|")
            while it.valid() and (key := it.key()).startswith(b"w|"):
                rows[key.split(b"|", 2)[1].decode()] += 1
                it.next()
            it.seek(b"t|")
            while it.valid() and it.key().startswith(b"t|"):
                totals += 1
                it.next()
        finally:
            db.close()
    return {"window_rows": sum(rows.values()), "window_rows_by_window": dict(rows),
            "buyer_totals": totals, "stores": len(stores)}


def disk_usage(path: Path) -> dict[str, float]:
    """Apparent size and allocated blocks of a directory tree, in MB; file count."""
    size = blocks = files = 0
    for parent, _, names in os.walk(path):
        for name in names:
            try:
                st = os.lstat(os.path.join(parent, name))
            except OSError:
                continue
            size += st.st_size
            blocks += st.st_blocks * 512
            files += 1
    return {"apparent_mb": round(size / 1e6, 1), "allocated_mb": round(blocks / 1e6, 1),
            "files": files}


async def topic_ends(broker: str, topics: list[str]) -> dict[str, int]:
    """Records in each topic (sum of the partitions' end offsets)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None)
    await consumer.start()
    try:
        ends: dict[str, int] = {}
        for topic in topics:
            parts = consumer.partitions_for_topic(topic) or set()
            if not parts:
                await consumer._client.force_metadata_update()  # noqa: SLF001
                parts = consumer.partitions_for_topic(topic) or set()
            offsets = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
            ends[topic] = sum(offsets.values())
        return ends
    finally:
        await consumer.stop()


def fingerprint(client: httpx.Client, windows: tuple[FixedWindow, ...]) -> str:
    """A hash of /buyers?limit=1000 and each window's first 1000 rows (without `final`,
    which the idle rule may turn true between two looks)."""
    parts: list[Any] = [client.get("/buyers", params={"limit": 1000}).json()]
    for spec in windows:
        items = client.get(f"/windows/{spec.name}", params={"limit": 1000}).json()["items"]
        parts.append([{k: v for k, v in item.items() if k != "final"} for item in items])
    return hashlib.sha256(orjson.dumps(parts)).hexdigest()[:16]


# --- measurement 3: query latency under ingest ----------------------------------------------

class QueryLoad(threading.Thread):
    """One client firing sequential requests until stopped: half buyer lookups, half top-k."""

    def __init__(self, url: str, buyers: list[tuple[str, str]],
                 windows: tuple[FixedWindow, ...]) -> None:
        super().__init__(daemon=True)
        self.url, self.buyers, self.windows = url, buyers, windows
        self.rng = random.Random(SEED)
        self.stopping = threading.Event()
        self.samples: list[tuple[float, str, int, float]] = []  # (monotonic, route, status, ms)

    def next_request(self, i: int) -> tuple[str, str]:
        """(route label, path) of request i."""
        if i % 2 == 0:
            first, last = self.rng.choice(self.buyers)
            path = f"/buyers/{quote(first, safe='')}/{quote(last, safe='')}"
            return "/buyers/{first}/{last}", path
        spec = self.windows[(i // 2) % len(self.windows)]
        return f"/windows/{spec.name}/top", f"/windows/{spec.name}/top"

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30, trust_env=False) as client:
            i = 0
            while not self.stopping.is_set():
                route, path = self.next_request(i)
                at, started = time.monotonic(), time.perf_counter()
                try:
                    status = client.get(path).status_code
                except httpx.HTTPError:
                    status = 0
                self.samples.append((at, route, status, (time.perf_counter() - started) * 1000))
                i += 1


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latency_table(samples: list[tuple[float, str, int, float]]) -> dict[str, dict[str, Any]]:
    """Per route: requests, status codes, p50/p90/p99/max/mean ms."""
    by_route: dict[str, list[tuple[int, float]]] = {}
    for _, route, status, ms in samples:
        by_route.setdefault(route, []).append((status, ms))
    table = {}
    for route, items in by_route.items():
        ordered = sorted(ms for _, ms in items)
        table[route] = {
            "requests": len(items),
            "statuses": dict(Counter(str(s) for s, _ in items)),
            **{f"p{p}_ms": round(percentile(ordered, p), 2) for p in (50, 90, 99)},
            "max_ms": round(ordered[-1], 2),
            "mean_ms": round(sum(ordered) / len(ordered), 2),
        }
    return table


def time_health(client: httpx.Client, n: int) -> list[tuple[float, str, int, float]]:
    """`n` sequential GET /health on the client's kept-alive connection: the floor that
    HTTP itself costs, without any state read."""
    samples = []
    for _ in range(n):
        at, started = time.monotonic(), time.perf_counter()
        status = client.get("/health").status_code
        samples.append((at, "/health", status, (time.perf_counter() - started) * 1000))
    return samples


def run_latency(args: argparse.Namespace, workdir: Path, code: Code) -> dict[str, Any]:
    """Measurement 3: one worker, ingest at full speed, one sequential client."""
    windows = args.window_specs
    run_dir = workdir / "latency"
    run_dir.mkdir()
    seen: set[tuple[str, str]] = set()
    with start_broker(args.broker, run_dir) as broker:
        topic = f"bench-orders-{uuid.uuid4().hex[:8]}"
        fill_topic(broker.bootstrap, topic, args.partitions,
                   datagen_orders(args.orders_latency, args.buyers, args.latency_event_rate, seen),
                   args.orders_latency)
        app_id, port = f"bench-{uuid.uuid4().hex[:8]}", free_port(HOST)
        env = worker_env(broker, topic, app_id, run_dir / "data", port, code,
                         WINDOWS=args.windows, ALLOWED_LATENESS=args.allowed_lateness)
        worker = start_worker(env, run_dir / "worker.log", code, "warn")
        load = QueryLoad(worker.url, sorted(seen), windows)
        try:
            with httpx.Client(base_url=worker.url, timeout=10, trust_env=False) as client:
                wait_ready(worker, client, args.stall_timeout)
                load.start()
                watch = watch_ingest(worker, client, args.orders_latency, "ingest under queries",
                                     args.stall_timeout)
                ingest_end = time.monotonic()
                time.sleep(args.idle_seconds)
                load.stopping.set()
                load.join()
                floor = time_health(client, 50)
                counted_sum = buyer_count_sum(client)
        finally:
            load.stopping.set()
            code_, _ = stop_worker(worker)
    assert watch.first_processed_s is not None and watch.counted_s is not None
    begin = worker.started + watch.first_processed_s
    during = [s for s in load.samples if begin <= s[0] <= worker.started + watch.counted_s]
    after = [s for s in load.samples if s[0] > ingest_end]
    if counted_sum != args.orders_latency:
        raise BenchFailed(f"/buyers counts add up to {counted_sum:,}, not {args.orders_latency:,}")
    return {
        "orders": args.orders_latency, "buyers": args.buyers, "buyers_in_input": len(seen),
        "partitions": args.partitions, "event_rate": args.latency_event_rate,
        "ingest_orders_per_s": watch.rate, "counters": watch.last,
        "ingest_seconds": watch.counted_s - watch.first_processed_s,
        "ready_s": watch.ready_s, "during_ingest": latency_table(during),
        "after_ingest": latency_table(after), "after_ingest_seconds": args.idle_seconds,
        "health_after_ingest": latency_table(floor),
        "rss_peak_mb": max((r[2] for r in watch.rss), default=None),
        "worker_exit_code": code_, "worker_log": str(worker.log_path), "app_id": app_id,
    }


# --- measurement 4: recovery -------------------------------------------------------------------

def restart(env: dict[str, str], log_path: Path, code: Code, args: argparse.Namespace,
            windows: tuple[FixedWindow, ...], expected_sum: int) -> dict[str, Any]:
    """Start a worker, time it to /ready, check its state, stop it."""
    worker = start_worker(env, log_path, code, "info")
    try:
        with httpx.Client(base_url=worker.url, timeout=30, trust_env=False) as client:
            ready = wait_ready(worker, client, args.recovery_timeout)
            memory = worker.rss_mb()
            counted_sum = buyer_count_sum(client)
            print_ = fingerprint(client, windows)
            values = counters(client) or {}
    finally:
        exit_code, stop_s = stop_worker(worker)
    if counted_sum != expected_sum:
        raise BenchFailed(f"restored /buyers counts add up to {counted_sum:,}, "
                          f"not {expected_sum:,}")
    return {**ready, "log_timeline_s": log_timeline(worker),
            "rss_at_ready_mb": None if memory is None else round(memory[0], 1),
            "buyers_count_sum": counted_sum, "fingerprint": print_,
            "orders_counted_after_restart": values.get("orders_counted_total"),
            "stop_s": round(stop_s, 2), "worker_exit_code": exit_code,
            "worker_log": str(log_path)}


def run_recovery(args: argparse.Namespace, workdir: Path, code: Code) -> dict[str, Any]:
    """Measurement 4: ~1M window rows, then restart from RocksDB and from changelogs only;
    on Kafka from changelogs compacted first (`force_compaction`)."""
    windows = args.window_specs
    per_order = rows_per_order(windows)
    orders = args.orders_recovery or math.ceil(args.rows / per_order)
    repeat_s = args.recovery_buyers / args.recovery_event_rate
    largest_s = max(w.size_ms for w in windows) / 1000
    expected = orders * per_order if repeat_s >= largest_s else None
    run_dir = workdir / "recovery"
    run_dir.mkdir()
    compaction: dict[str, Any] | None = None
    with start_broker(args.broker, run_dir) as broker:
        topic = f"bench-orders-{uuid.uuid4().hex[:8]}"
        fill_topic(broker.bootstrap, topic, args.partitions,
                   spread_orders(orders, args.recovery_buyers, args.recovery_event_rate), orders)
        app_id, port = f"bench-{uuid.uuid4().hex[:8]}", free_port(HOST)
        data_dir = run_dir / "data"
        env = worker_env(broker, topic, app_id, data_dir, port, code, WINDOWS=args.windows,
                         WINDOW_RETENTION=args.recovery_retention,
                         ALLOWED_LATENESS=args.recovery_lateness)
        say(f"recovery: loading {orders:,} orders over {args.recovery_buyers:,} buyers "
            f"(expected window rows: {expected or 'fewer than orders x windows'})")
        worker = start_worker(env, run_dir / "load.log", code, "warn")
        try:
            with httpx.Client(base_url=worker.url, timeout=30, trust_env=False) as client:
                watch = watch_ingest(worker, client, orders, "recovery: load", args.stall_timeout)
                loaded_sum = buyer_count_sum(client)
                loaded_print = fingerprint(client, windows)
        finally:
            load_exit, _ = stop_worker(worker)
        if loaded_sum != orders:
            raise BenchFailed(f"/buyers counts add up to {loaded_sum:,}, not {orders:,}")
        state = count_state(data_dir / app_id)
        disk = disk_usage(data_dir)
        say(f"recovery: {state['window_rows']:,} window rows, {state['buyer_totals']:,} buyers, "
            f"DATA_DIR {disk['allocated_mb']:,.0f} MB on disk")
        topics = changelog_topics(app_id)
        changelogs = asyncio.run(topic_ends(broker.bootstrap, topics))
        if broker.kind == "kafka":
            assert broker.node_dir is not None
            as_loaded = cleaner_view(kafka_log_dir(broker.node_dir), topics)
            load_ends = asyncio.run(partition_ends(broker.bootstrap, topics))
            written = asyncio.run(census(broker.bootstrap, topics, args.stall_timeout))
            say(f"recovery: changelogs as written: {census_text(written)}")
            asyncio.run(compact_eagerly(broker.bootstrap, env, topics))
        say("recovery (a): restart on the same DATA_DIR")
        from_disk = restart(env, run_dir / "restart-disk.log", code, args, windows, orders)
        say(f"recovery (a): ready after {from_disk['ready_s']:.2f}s")
        if broker.kind == "kafka":
            compaction = force_compaction(broker, topics, written, load_ends, as_loaded,
                                          args.compaction_timeout)
        shutil.rmtree(data_dir)
        say("recovery (b): DATA_DIR deleted, restart from the changelogs")
        from_changelog = restart(env, run_dir / "restart-changelog.log", code, args, windows,
                                 orders)
        say(f"recovery (b): ready after {from_changelog['ready_s']:.2f}s")
        state_after = count_state(data_dir / app_id)
        disk_after = disk_usage(data_dir)
    for name, result in (("(a)", from_disk), ("(b)", from_changelog)):
        if result["fingerprint"] != loaded_print:
            raise BenchFailed(f"recovery {name}: state differs from the loaded worker's")
    if state_after["window_rows"] != state["window_rows"]:
        raise BenchFailed(f"recovery (b): {state_after['window_rows']:,} window rows after the "
                          f"restore, {state['window_rows']:,} before")
    return {
        "broker": broker.kind,
        "orders": orders, "buyers": args.recovery_buyers, "partitions": args.partitions,
        "event_rate": args.recovery_event_rate, "window_retention": args.recovery_retention,
        "allowed_lateness": args.recovery_lateness, "load_counters": watch.last,
        "expected_window_rows": expected, "state": state, "data_dir_disk": disk,
        "changelog_records": changelogs, "load_orders_per_s": watch.rate,
        "load_ready_s": watch.ready_s, "load_rss_peak_mb": max((r[2] for r in watch.rss),
                                                                default=None),
        "load_exit_code": load_exit, "fingerprint": loaded_print,
        "from_rocksdb": from_disk, "changelog_compaction": compaction,
        "from_changelogs": from_changelog,
        "state_after_changelog_restore": state_after, "data_dir_disk_after_restore": disk_after,
        "app_id": app_id,
    }


# On Kafka, after the load: the changelogs' segments roll at the next record 100 ms after
# their first (each worker that takes a partition writes a fence first, so restart (a)
# rolls them), any dirty byte makes a log cleanable, and tombstones and transaction
# markers go at the cleaning after the one that found them. The broker's cleaner looks
# for work every 500 ms (log.cleaner.backoff.ms in tests/kafka.py).
EAGER_COMPACTION = {"segment.ms": "100", "min.cleanable.dirty.ratio": "0",
                    "delete.retention.ms": "0"}
COMPACTION_POLL_S = 0.5


def changelog_topics(app_id: str) -> list[str]:
    """The changelogs of a worker of `app_id` (app.topics.topic_names)."""
    return [f"{app_id}-aggregate-changelog", f"{app_id}-dedup-changelog"]


async def compact_eagerly(broker: str, env: dict[str, str], topics: list[str]) -> None:
    """Set EAGER_COMPACTION on `topics`, over the configs the worker created them with
    (AlterConfigs replaces a topic's whole set: the rest is app.topics.topic_configs')."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    from app.topics import topic_configs

    settings = Settings(_env_file=None, app_id=env["APP_ID"], orders_topic=env["ORDERS_TOPIC"],
                        buyer_totals_topic=env["BUYER_TOTALS_TOPIC"],
                        window_results_topic=env["WINDOW_RESULTS_TOPIC"])
    configs = topic_configs(settings, 1)
    admin = AIOKafkaAdminClient(bootstrap_servers=broker, request_timeout_ms=10_000)
    await admin.start()
    try:
        responses = await admin.alter_configs([
            ConfigResource(ConfigResourceType.TOPIC, topic,
                           configs={**configs[topic], **EAGER_COMPACTION}) for topic in topics])
    finally:
        await admin.close()
    refused = [(name, code, message) for response in responses
               for code, message, _type, name in response.resources if code]
    if refused:
        raise BenchFailed(f"the broker refused the changelogs' configs: {refused}")
    say(f"recovery: changelogs set to compact at once ({EAGER_COMPACTION})")


async def census(broker: str, topics: list[str], stall_s: float) -> dict[str, dict[str, int]]:
    """Per topic, what a `read_committed` reader (as the worker's restore) gets from the
    beginning to the end: records, distinct keys (per partition), tombstones; and `offsets`,
    the sum of the partitions' end offsets (records, transaction markers, and what
    compaction removed)."""
    return {topic: await census_of(broker, topic, stall_s) for topic in topics}


async def census_of(broker: str, topic: str, stall_s: float) -> dict[str, int]:
    """`census` of one topic, with a consumer of its own (aiokafka's metadata follows the
    assignment: a second topic would be unknown to it)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None,
                                enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        metadata = await consumer._client.fetch_all_metadata()  # noqa: SLF001
        tps = [TopicPartition(topic, p) for p in sorted(metadata.partitions_for_topic(topic)
                                                        or ())]
        if not tps:
            raise BenchFailed(f"the broker does not know {topic}")
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records = tombstones = 0
        keys: set[int] = set()  # hashes of (partition, key): 1M keys in ~60 MB
        last_change = time.monotonic()
        with progress(f"read {topic}", sum(ends.values())) as report:
            while True:
                positions = {tp: await consumer.position(tp) for tp in tps}
                if all(positions[tp] >= ends[tp] for tp in tps):
                    break
                batches = await consumer.getmany(timeout_ms=1000, max_records=20_000)
                for tp, batch in batches.items():
                    for record in batch:
                        keys.add(hash((tp.partition, record.key)))
                        tombstones += record.value is None
                    records += len(batch)
                if batches:
                    last_change = time.monotonic()
                elif time.monotonic() - last_change > stall_s:
                    raise BenchFailed(f"reading {topic}: stuck at {positions}, ends {ends}")
                report(sum(positions.values()))
        return {"records": records, "distinct_keys": len(keys), "tombstones": tombstones,
                "offsets": sum(ends.values())}
    finally:
        await consumer.stop()


def census_text(found: dict[str, dict[str, int]]) -> str:
    return "; ".join(f"{topic}: {c['records']:,} records ({c['distinct_keys']:,} keys), "
                     f"{c['offsets']:,} offsets" for topic, c in found.items())


def kafka_log_dir(node_dir: Path) -> Path:
    """The node's data folder: `log.dirs` of the server.properties tests/kafka.py wrote."""
    for line in (node_dir / "server.properties").read_text().splitlines():
        if line.startswith("log.dirs="):
            return Path(line.split("=", 1)[1].split(",")[0].strip())
    raise BenchFailed(f"no log.dirs in {node_dir / 'server.properties'}")


def cleaner_view(log_dir: Path, topics: list[str]) -> dict[str, dict[str, int]]:
    """Per changelog partition, from the broker's files: where its active segment begins,
    how far the log cleaner has cleaned (`cleaner-offset-checkpoint`: version, count, then
    `topic partition offset` lines), its segments and their bytes."""
    cleaned: dict[tuple[str, int], int] = {}
    checkpoint = log_dir / "cleaner-offset-checkpoint"
    if checkpoint.exists():
        for line in checkpoint.read_text().splitlines()[2:]:
            fields = line.split()
            if len(fields) == 3:
                cleaned[fields[0], int(fields[1])] = int(fields[2])
    view: dict[str, dict[str, int]] = {}
    for topic in topics:
        for folder in sorted(log_dir.glob(f"{topic}-*")):
            partition = folder.name[len(topic) + 1:]
            if not partition.isdigit():
                continue
            segments = []
            for path in folder.iterdir():
                if path.suffix == ".log":  # not .log.cleaned, .log.swap, .log.deleted
                    try:
                        segments.append((int(path.stem), path.stat().st_size))
                    except (OSError, ValueError):
                        continue
            view[f"{topic}[{partition}]"] = {
                "active_segment_from": max((base for base, _ in segments), default=0),
                "cleaned_to": cleaned.get((topic, int(partition)), 0),
                "segments": len(segments), "log_bytes": sum(size for _, size in segments)}
    return view


def force_compaction(broker: Broker, topics: list[str], written: dict[str, dict[str, int]],
                     loaded: dict[str, int], before: dict[str, dict[str, int]],
                     timeout_s: float) -> dict[str, Any]:
    """Wait until every changelog partition is compacted as far as Kafka can: everything
    the load wrote (up to `loaded`, the partitions' end offsets after it) is in closed
    segments (restart (a)'s fences rolled them) and the cleaner has cleaned up to the
    active segment. Then count what a restore reads. `before`: the segments as loaded."""
    assert broker.node_dir is not None
    log_dir = kafka_log_dir(broker.node_dir)
    say("recovery: waiting for the log cleaner to compact the changelogs")
    started = time.monotonic()
    while True:
        view = cleaner_view(log_dir, topics)
        waiting = [name for name, part in view.items()
                   if part["active_segment_from"] < loaded.get(name, 0)
                   or part["cleaned_to"] < part["active_segment_from"]]
        if not waiting:
            break
        if time.monotonic() - started > timeout_s:
            raise BenchFailed(f"the changelogs were not compacted within {timeout_s:.0f}s: "
                              f"{ {name: view[name] for name in waiting} } (load ended at "
                              f"{ {name: loaded.get(name) for name in waiting} })")
        time.sleep(COMPACTION_POLL_S)
    waited = time.monotonic() - started
    kept = asyncio.run(census(broker.bootstrap, topics, 180.0))
    say(f"recovery: compacted after {waited:.1f}s: {census_text(kept)}")
    return {"configs": EAGER_COMPACTION, "wait_s": round(waited, 1), "written": written,
            "kept": kept, "load_ends": loaded, "partitions_before": before,
            "partitions_after": view,
            "log_bytes_before": sum(p["log_bytes"] for p in before.values()),
            "log_bytes_after": sum(p["log_bytes"] for p in view.values())}


async def partition_ends(broker: str, topics: list[str]) -> dict[str, int]:
    """End offset of each partition of `topics`, as `topic[partition]`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None)
    await consumer.start()
    try:
        metadata = await consumer._client.fetch_all_metadata()  # noqa: SLF001
        tps = [TopicPartition(t, p) for t in topics for p in metadata.partitions_for_topic(t)
               or ()]
        ends = await consumer.end_offsets(tps)
        return {f"{tp.topic}[{tp.partition}]": end for tp, end in ends.items()}
    finally:
        await consumer.stop()


# --- measurement 5: memory ---------------------------------------------------------------------

def retention_from_order(args: argparse.Namespace) -> int:
    """Index of the first order whose time lets retention delete rows: the first window's
    end + ALLOWED_LATENESS + WINDOW_RETENTION, in event time."""
    windows = args.window_specs
    lateness_ms = parse_duration_ms(args.allowed_lateness)
    first_delete_ms = (max(w.size_ms for w in windows) + lateness_ms
                       + parse_duration_ms(args.memory_retention))
    return math.ceil(first_delete_ms / 1000 * args.memory_event_rate)


def pick_samples(rss: list[tuple[float, int, float]], count: int = 12) -> list[dict[str, Any]]:
    """About `count` samples spread over the run, always the first and the last."""
    if not rss:
        return []
    step = max(1, len(rss) // (count - 1))
    chosen = rss[::step] + ([rss[-1]] if (len(rss) - 1) % step else [])
    return [{"s": s, "counted": c, "rss_mb": mb} for s, c, mb in chosen]


def growth_after(rss: list[tuple[float, int, float]], from_order: int) -> dict[str, Any] | None:
    """RSS when retention starts deleting vs at the end of ingest: MB per 100k orders; and
    the trend, a least-squares line through every sample in between (two samples alone
    move with whichever burst they fall on)."""
    after = [r for r in rss if r[1] >= from_order]
    if len(after) < 2 or after[-1][1] == after[0][1]:
        return None
    first, last = after[0], after[-1]
    per_100k = (last[2] - first[2]) / (last[1] - first[1]) * 100_000
    ingesting = [r for r in after if r[1] < last[1]] + [last]
    trend = statistics.linear_regression([r[1] for r in ingesting], [r[2] for r in ingesting])
    return {"from": {"counted": first[1], "rss_mb": first[2]},
            "to": {"counted": last[1], "rss_mb": last[2]},
            "mb_per_100k_orders": round(per_100k, 1),
            "trend_mb_per_100k_orders": round(trend.slope * 100_000, 1),
            "samples": len(ingesting)}


def run_memory(args: argparse.Namespace, workdir: Path, code: Code) -> dict[str, Any]:
    """Measurement 5: RSS every second through N orders over many buyers."""
    run_dir = workdir / "memory"
    run_dir.mkdir()
    with start_broker(args.broker, run_dir) as broker:
        topic = f"bench-orders-{uuid.uuid4().hex[:8]}"
        fill_topic(broker.bootstrap, topic, args.partitions,
                   datagen_orders(args.orders_memory, args.buyers, args.memory_event_rate),
                   args.orders_memory)
        app_id, port = f"bench-{uuid.uuid4().hex[:8]}", free_port(HOST)
        env = worker_env(broker, topic, app_id, run_dir / "data", port, code,
                         WINDOWS=args.windows, WINDOW_RETENTION=args.memory_retention,
                         ALLOWED_LATENESS=args.allowed_lateness)
        worker = start_worker(env, run_dir / "worker.log", code, "warn")
        try:
            with httpx.Client(base_url=worker.url, timeout=30, trust_env=False) as client:
                watch = watch_ingest(worker, client, args.orders_memory, "memory: ingest",
                                     args.stall_timeout, tail_s=args.memory_tail)
                counted_sum = buyer_count_sum(client)
                memory = worker.rss_mb()
                if memory is not None:
                    watch.hwm_mb = max(watch.hwm_mb, memory[1])
        finally:
            exit_code, _ = stop_worker(worker)
        state = count_state(run_dir / "data" / app_id)
        disk = disk_usage(run_dir / "data")
    if counted_sum != args.orders_memory:
        raise BenchFailed(f"/buyers counts add up to {counted_sum:,}, not {args.orders_memory:,}")
    from_order = retention_from_order(args)
    rss_values = [r[2] for r in watch.rss]
    return {
        "orders": args.orders_memory, "buyers": args.buyers, "partitions": args.partitions,
        "event_rate": args.memory_event_rate, "window_retention": args.memory_retention,
        "event_time_span_s": args.orders_memory / args.memory_event_rate,
        "retention_deletes_from_order": from_order if from_order < args.orders_memory else None,
        "ingest_orders_per_s": watch.rate, "counters": watch.last,
        "rss_peak_mb": max(rss_values, default=None),
        "rss_hwm_mb": round(watch.hwm_mb, 1),
        "rss_final_mb": rss_values[-1] if rss_values else None,
        "rss_at_end_of_ingest_mb": next((r[2] for r in watch.rss
                                         if r[1] >= args.orders_memory), None),
        "growth_after_retention": growth_after(watch.rss, from_order),
        "samples": pick_samples(watch.rss), "all_samples": watch.rss,
        "state_at_end": state, "data_dir_disk": disk, "worker_exit_code": exit_code,
        "worker_log": str(worker.log_path), "app_id": app_id,
    }


# --- measurement 6: key lookups/s at 50 connections -------------------------------------------
#
# The load generator is a lean asyncio client in a process of its own (it must not share the
# bench's GIL): one asyncio.Protocol per kept-alive connection, one request in flight on each
# (no pipelining), answers cut by Content-Length, latencies from perf_counter. Against the
# trivial server below it shows what it can do and what it costs per request; both are in
# the results, so a reader can see that it was not the bottleneck.

TRIVIAL_BODY = b'{"buyer":{"first_name":"Ana","last_name":"Ruiz"},"count":1,"total_price":"1.00"}'
TRIVIAL_ANSWER = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
                  + str(len(TRIVIAL_BODY)).encode() + b"\r\n\r\n" + TRIVIAL_BODY)


class _Exchange(asyncio.Protocol):
    """One kept-alive HTTP/1.1 connection with one request in flight at a time."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[int] | None = None
        self.body = b""  # the last answer's body

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None or self.waiter.done():
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:  # every answer of the API has one; anything else is an error
            self.waiter.set_exception(ConnectionError("an answer without content-length"))
            return
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17:stop if stop >= 0 else len(head)])
        if len(self.buffer) >= end + 4 + length:
            self.body = bytes(self.buffer[end + 4:end + 4 + length])
            del self.buffer[:end + 4 + length]
            self.waiter.set_result(int(head[9:12]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc or ConnectionError("closed by the server"))

    async def ask(self, request: bytes, timeout_s: float) -> int:
        """Send one request, the status of its answer (TimeoutError after timeout_s)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[int] = loop.create_future()
        self.waiter = waiter
        # a timer, not asyncio.wait_for: that costs a task per request, in the client's CPU
        timer = loop.call_later(timeout_s, _expire, waiter)
        self.transport.write(request)
        try:
            return await waiter
        finally:
            timer.cancel()


def _expire(waiter: asyncio.Future[int]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError("no answer"))


@dataclass
class _Tally:
    """What the connections of one load run saw, after the warm-up."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)  # what non-200 answers said
    unsent: int = 0  # open loop: requests due before the end that a slow answer held back
    answered: int = 0  # answers that arrived within the measured seconds


async def _connection(host: str, port: int, requests: list[bytes], index: int, spec: dict[str, Any],
                      began: float, tally: _Tally) -> None:
    """One connection's loop: closed (ask again at once) or open (at `rate`/connections)."""
    loop = asyncio.get_running_loop()
    rng = random.Random(SEED + index)
    warm_until, until = began + spec["warmup_s"], began + spec["warmup_s"] + spec["seconds"]
    interval = spec["connections"] / spec["rate"] if spec["rate"] else None
    exchange: _Exchange | None = None
    k = 0
    while True:
        now = time.perf_counter()
        intended = now if interval is None else (
            began + (index / spec["connections"] + k) * interval)
        if now >= until or intended >= until:  # a backlog left at the end is `unsent`
            tally.unsent += max(0, math.ceil((until - intended) / interval)) if interval else 0
            break
        k += 1
        if interval is not None and intended > time.perf_counter():
            await asyncio.sleep(intended - time.perf_counter())
        try:
            if exchange is None:
                _, exchange = await loop.create_connection(_Exchange, host, port)
            status = await exchange.ask(rng.choice(requests), 30)
        except OSError as error:  # TimeoutError and ConnectionError too
            if intended >= warm_until:
                tally.errors[type(error).__name__] += 1
            if exchange is not None and exchange.transport is not None:
                exchange.transport.close()
            exchange = None
            continue
        # from the intended start: a connection that fell behind counts its wait too
        done = time.perf_counter()
        if intended >= warm_until:
            tally.latencies_ms.append((done - intended) * 1000)
            tally.statuses[str(status)] += 1
            if status != 200:
                tally.refusals[exchange.body[:160].decode(errors="replace")] += 1
        if warm_until <= done <= until:
            tally.answered += 1
    if exchange is not None and exchange.transport is not None:
        exchange.transport.close()


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one load as `spec` says; requests/s, percentiles, statuses, the client's CPU."""
    host, port = spec["host"], spec["port"]
    requests = [f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{spec['headers']}\r\n".encode()
                for path in spec["paths"]]
    tally = _Tally()
    cpu, began = time.process_time(), time.perf_counter() + 0.05
    await asyncio.gather(*(_connection(host, port, requests, i, spec, began, tally)
                           for i in range(spec["connections"])))
    cpu = time.process_time() - cpu
    ordered = sorted(tally.latencies_ms)
    done = len(ordered) + sum(tally.errors.values())
    return {
        "connections": spec["connections"], "offered_rate": spec["rate"],
        "seconds": spec["seconds"], "requests": len(ordered),
        "requests_per_s": round(tally.answered / spec["seconds"], 1),
        **{f"p{p}_ms": round(percentile(ordered, p), 2) if ordered else None
           for p in (50, 90, 99)},
        "max_ms": round(ordered[-1], 2) if ordered else None,
        "statuses": dict(tally.statuses), "errors": dict(tally.errors),
        "refusals": dict(tally.refusals.most_common(5)),
        "unsent": tally.unsent, "client_cpu_s": round(cpu, 2),
        "client_cpu_us_per_request": round(cpu / done * 1e6, 1) if done else None,
    }


def load_client_main(source: str) -> int:
    """`bench_state.py --load-client -`: one load run as the JSON on stdin says, its result
    as JSON on stdout."""
    spec = json.loads(sys.stdin.read() if source == "-" else Path(source).read_text())
    print(json.dumps(asyncio.run(_load(spec))), flush=True)
    return 0


async def _trivial_server(port: int) -> None:
    class Answer(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            self.transport, self.buffer = transport, b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
                self.buffer = self.buffer[end + 4:]
                self.transport.write(TRIVIAL_ANSWER)

    server = await asyncio.get_running_loop().create_server(Answer, HOST, port)
    async with server:
        await server.serve_forever()


def trivial_server_main(port: str) -> int:
    """`bench_state.py --trivial-server PORT`: a fixed 200 for every request, until killed."""
    asyncio.run(_trivial_server(int(port)))
    return 0


def run_load(url: str, paths: list[str], args: argparse.Namespace, rate: float | None,
             headers: str = "") -> dict[str, Any]:
    """One load run in a subprocess of its own, against `url`."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    spec = {"host": host, "port": int(port), "paths": paths, "connections": args.connections,
            "seconds": args.load_seconds, "warmup_s": 1.0, "rate": rate, "headers": headers}
    try:
        out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--load-client",
                              "-"], input=json.dumps(spec).encode(), capture_output=True,
                             timeout=args.load_seconds + 120)
    except subprocess.TimeoutExpired:
        raise BenchFailed(f"the load client did not finish in {args.load_seconds + 120:.0f}s"
                          ) from None
    if out.returncode != 0:
        raise BenchFailed(f"the load client failed: {out.stderr.decode()[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def proc_cpu_s(pid: int) -> float | None:
    """User plus system CPU seconds of a process so far (/proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_jiffies() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs so far (/proc/stat): time the hypervisor gave
    this machine's CPUs to others, out of all time."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    steal = fields[7] if len(fields) > 7 else 0
    return steal, sum(fields[:8])


def calibrate_client(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """The client at full speed against the trivial server: its ceiling on this machine."""
    port = free_port(HOST)
    server = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--trivial-server",
                               str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket_ok = httpx.get(f"http://{HOST}:{port}/", timeout=1).status_code == 200
            except httpx.HTTPError:
                socket_ok = False
            if socket_ok:
                break
            if time.monotonic() > deadline or server.poll() is not None:
                raise BenchFailed("the trivial server did not start")
            time.sleep(0.1)
        cpu = proc_cpu_s(server.pid)
        result = run_load(f"http://{HOST}:{port}", ["/buyers/Ana/Ruiz"], args, None)
        after = proc_cpu_s(server.pid)
        if cpu is not None and after is not None:
            result["server_cpu_s"] = round(after - cpu, 2)
        return result
    finally:
        stop_process(server, timeout_s=2)


def lookup_paths(orders: int, buyers: int, event_rate: float, share: float) -> list[str]:
    """`/buyers/{first}/{last}` of the buyers in the first `share` of the input, so they are
    counted by the time the load starts."""
    seen: set[tuple[str, str]] = set()
    for _ in datagen_orders(max(1, int(orders * share)), buyers, event_rate, seen):
        pass
    return [f"/buyers/{quote(first, safe='')}/{quote(last, safe='')}"
            for first, last in sorted(seen)]


def wait_counted(worker: Worker, client: httpx.Client, at_least: int, stall_s: float) -> float:
    """Poll /metrics until `at_least` orders are counted; the orders counted then."""
    last_change, last = time.monotonic(), -1.0
    while True:
        ensure_alive(worker)
        counted = (counters(client) or {}).get("orders_counted_total", 0.0)
        if counted >= at_least:
            return counted
        if counted != last:
            last, last_change = counted, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            raise BenchFailed(f"no progress for {stall_s:.0f}s at {counted:,.0f} counted")
        time.sleep(POLL_S)


def wait_quiet(worker: Worker, timeout_s: float, below: float = 0.05) -> float:
    """Wait until the worker uses under `below` of a core over a second (after the last order
    is counted it still closes windows and publishes them for a while); the seconds waited."""
    started = time.monotonic()
    cpu = proc_cpu_s(worker.process.pid)
    while time.monotonic() - started < timeout_s:
        time.sleep(1.0)
        ensure_alive(worker)
        now = proc_cpu_s(worker.process.pid)
        if cpu is None or now is None or now - cpu < below:
            return time.monotonic() - started
        cpu = now
    raise BenchFailed(f"the worker was still busy {timeout_s:.0f}s after ingest")


def loaded_phase(worker: Worker, client: httpx.Client, paths: list[str],
                 args: argparse.Namespace, rate: float | None) -> dict[str, Any]:
    """One load run, with the orders the worker counted and the CPU it used meanwhile."""
    before, cpu = (counters(client) or {}).get("orders_counted_total", 0.0), proc_cpu_s(
        worker.process.pid)
    jiffies = cpu_jiffies()
    started = time.monotonic()
    result = run_load(worker.url, paths, args, rate)
    seconds = time.monotonic() - started
    after, cpu_after = (counters(client) or {}).get("orders_counted_total", 0.0), proc_cpu_s(
        worker.process.pid)
    result.update(counted_before=before, counted_after=after,
                  ingest_orders_per_s=round((after - before) / seconds, 1))
    if cpu is not None and cpu_after is not None:
        result["worker_cpu_share"] = round((cpu_after - cpu) / seconds, 2)  # 1.0 = one core
    jiffies_after = cpu_jiffies()
    if jiffies is not None and jiffies_after is not None and jiffies_after[1] > jiffies[1]:
        # a share of the CPUs stolen by the hypervisor: the client and worker ran slower
        result["steal_share"] = round(
            (jiffies_after[0] - jiffies[0]) / (jiffies_after[1] - jiffies[1]), 3)
    return result


def run_throughput(args: argparse.Namespace, workdir: Path, code: Code) -> dict[str, Any]:
    """Measurement 6: key lookups at `--connections` connections, during ingest and idle."""
    run_dir = workdir / "throughput"
    run_dir.mkdir()
    orders, buyers, rate = args.orders_throughput, args.throughput_buyers, args.latency_event_rate
    calibration = calibrate_client(args, run_dir)
    say(f"throughput: the client alone: {calibration['requests_per_s']:,.0f} requests/s at "
        f"{calibration['client_cpu_us_per_request']} us of CPU each")
    paths = lookup_paths(orders, buyers, rate, 0.05)
    phases_: dict[str, Any] = {}
    with start_broker(args.broker, run_dir) as broker:
        topic = f"bench-orders-{uuid.uuid4().hex[:8]}"
        fill_topic(broker.bootstrap, topic, args.partitions, datagen_orders(orders, buyers, rate),
                   orders)
        app_id, port = f"bench-{uuid.uuid4().hex[:8]}", free_port(HOST)
        env = worker_env(broker, topic, app_id, run_dir / "data", port, code,
                         WINDOWS=args.windows, ALLOWED_LATENESS=args.allowed_lateness)
        worker = start_worker(env, run_dir / "worker.log", code, "warn")
        try:
            with httpx.Client(base_url=worker.url, timeout=10, trust_env=False) as client:
                wait_ready(worker, client, args.stall_timeout)
                wait_counted(worker, client, int(orders * 0.15), args.stall_timeout)
                for name, offered in (("ingest_closed", None), ("ingest_open", args.open_rate)):
                    say(f"throughput: {name} ({args.load_seconds:.0f}s)")
                    phases_[name] = loaded_phase(worker, client, paths, args, offered)
                    phases_[name]["ingest_ran_throughout"] = phases_[name]["counted_after"] < orders
                watch = watch_ingest(worker, client, orders, "throughput: rest of ingest",
                                     args.stall_timeout)
                quiet_after_s = wait_quiet(worker, args.stall_timeout)
                say(f"throughput: the worker is quiet {quiet_after_s:.1f}s after ingest")
                for name, offered in (("idle_closed", None), ("idle_open", args.open_rate)):
                    say(f"throughput: {name} ({args.load_seconds:.0f}s)")
                    phases_[name] = loaded_phase(worker, client, paths, args, offered)
                counted_sum = buyer_count_sum(client)
        finally:
            code_, _ = stop_worker(worker)
    if counted_sum != orders:
        raise BenchFailed(f"/buyers counts add up to {counted_sum:,}, not {orders:,}")
    return {
        "orders": orders, "buyers": buyers, "lookup_buyers": len(paths),
        "partitions": args.partitions, "connections": args.connections,
        "load_seconds": args.load_seconds, "open_rate": args.open_rate,
        "client_calibration": calibration, "phases": phases_, "counters": watch.last,
        "quiet_after_ingest_s": round(quiet_after_s, 1),
        "worker_exit_code": code_, "worker_log": str(worker.log_path), "app_id": app_id,
    }


# --- summary --------------------------------------------------------------------------------

def fmt(value: float | None, spec: str = ",.0f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def summary_latency(r: dict[str, Any]) -> list[str]:
    lines = [f"3. API under load: {r['orders']:,} orders over {r['buyers']:,} buyers, "
             f"{r['partitions']} partitions, ingest {fmt(r['ingest_orders_per_s'])} orders/s "
             f"in the same run (goal p99 <= 20 ms for key lookups, <= 50 ms for /top)"]
    for phase in ("during_ingest", "after_ingest", "health_after_ingest"):
        lines.append(f"   {phase.replace('_', ' ')}:")
        for route, t in r[phase].items():
            limit_ms = 50 if route.endswith("/top") else 20
            goal = "" if phase != "during_ingest" else (
                "  ok" if t["p99_ms"] <= limit_ms else "  > goal")
            lines.append(f"     {route:<28} p50 {t['p50_ms']:7.2f}  p99 {t['p99_ms']:7.2f}  "
                         f"max {t['max_ms']:7.2f} ms  n={t['requests']:,} {t['statuses']}{goal}")
    health = r["health_after_ingest"].get("/health")
    if health and health["p50_ms"] >= 30:
        lines.append("   note: GET /health takes >= 30 ms on a kept-alive connection: typically "
                     "Nagle's algorithm meeting the client's 40 ms delayed ACK (a server socket "
                     "without TCP_NODELAY; asyncio sets it only on sockets made with IPPROTO_TCP)")
    return lines


def phases(restart: dict[str, Any]) -> str:
    """Where a restart's time went: until the group assigned partitions, then restoring."""
    times = restart["log_timeline_s"]
    begun = [v for k, v in times.items() if k.endswith("_restoring")]
    done = [v for k, v in times.items() if k.endswith("_restored")]
    if not begun or not done:
        return f"log {times}"
    return (f"process start to restore start {min(begun):.2f} s (imports, group join), "
            f"restore {max(done) - min(begun):.2f} s")


def summary_recovery(r: dict[str, Any]) -> list[str]:
    s, a, b = r["state"], r["from_rocksdb"], r["from_changelogs"]
    return [
        f"4. Recovery: {r['orders']:,} orders over {r['buyers']:,} buyers -> "
        f"{s['window_rows']:,} window rows {s['window_rows_by_window']}, "
        f"{s['buyer_totals']:,} buyer totals; WINDOW_RETENTION={r['window_retention']}, "
        f"ALLOWED_LATENESS={r['allowed_lateness']} "
        f"(late orders: {r['load_counters'].get('orders_late_total', 0):,.0f})",
        f"   DATA_DIR on disk: {r['data_dir_disk']['allocated_mb']:,.1f} MB "
        f"({r['data_dir_disk']['apparent_mb']:,.1f} MB apparent, "
        f"{r['data_dir_disk']['files']} files); changelog records {r['changelog_records']}",
        f"   (a) from RocksDB on disk: ready after {a['ready_s']:.2f} s "
        f"(goal <= 10 s: {'ok' if a['ready_s'] <= 10 else 'missed'}); {phases(a)}",
        *summary_compaction(r.get("changelog_compaction")),
        f"   (b) from changelogs only{' (compacted)' if r.get('changelog_compaction') else ''}: "
        f"ready after {b['ready_s']:.2f} s (goal <= 30 s: "
        f"{'ok' if b['ready_s'] <= 30 else 'missed'}); {phases(b)}",
        f"   load: {fmt(r['load_orders_per_s'])} orders/s; restored state identical "
        f"(fingerprint {r['fingerprint']}, {r['state_after_changelog_restore']['window_rows']:,} "
        f"rows after (b))",
    ]


def summary_compaction(c: dict[str, Any] | None) -> list[str]:
    """Kafka only: each changelog's records as written and as kept after compaction."""
    if not c:
        return []
    lines = [f"   changelogs compacted (Kafka, {c['configs']}) {c['wait_s']:.1f} s after "
             f"restart (a) ended; on disk {c['log_bytes_before'] / 1e6:,.1f} MB as loaded, "
             f"{c['log_bytes_after'] / 1e6:,.1f} MB compacted:"]
    for topic, kept in c["kept"].items():
        written = c["written"][topic]
        share = kept["records"] / written["records"] if written["records"] else 0.0
        lines.append(f"     {topic}: {written['records']:,} records written "
                     f"({written['offsets']:,} offsets with transaction markers), "
                     f"{kept['records']:,} kept ({share:.1%}), {kept['distinct_keys']:,} "
                     f"distinct keys, {kept['tombstones']:,} tombstones")
    return lines


def summary_memory(r: dict[str, Any]) -> list[str]:
    growth = r["growth_after_retention"]
    samples = ", ".join(f"{x['s']:.0f}s {x['counted']:,}: {x['rss_mb']:.0f}"
                        for x in r["samples"])
    lines = [
        f"5. Memory: {r['orders']:,} orders over {r['buyers']:,} buyers, event time "
        f"{r['event_time_span_s'] / 3600:.1f} h, WINDOW_RETENTION={r['window_retention']} "
        f"(deletes from order {fmt(r['retention_deletes_from_order'])}), "
        f"ingest {fmt(r['ingest_orders_per_s'])} orders/s",
        f"   RSS peak {fmt(r['rss_peak_mb'], ',.0f', ' MB')} (VmHWM {r['rss_hwm_mb']:,.0f} MB), "
        f"final {fmt(r['rss_final_mb'], ',.0f', ' MB')} (goal <= 500 MB: "
        f"{'ok' if (r['rss_hwm_mb'] or 0) <= 500 else 'missed'}); "
        f"{r['state_at_end']['window_rows']:,} window rows left, DATA_DIR "
        f"{r['data_dir_disk']['allocated_mb']:,.0f} MB",
        f"   samples (time, orders counted: MB): {samples}",
    ]
    if growth:
        lines.append(f"   after retention applies: {growth['from']['rss_mb']:.0f} MB at "
                     f"{growth['from']['counted']:,} -> {growth['to']['rss_mb']:.0f} MB at "
                     f"{growth['to']['counted']:,} ({growth['mb_per_100k_orders']:+.1f} MB "
                     f"per 100k orders; trend of {growth['samples']} samples "
                     f"{growth['trend_mb_per_100k_orders']:+.1f} MB)")
    return lines


def summary_throughput(r: dict[str, Any]) -> list[str]:
    c = r["client_calibration"]
    lines = [f"6. Key lookups at {r['connections']} connections: /buyers/{{first}}/{{last}} of "
             f"{r['lookup_buyers']:,} known buyers, {r['orders']:,} orders over "
             f"{r['buyers']:,} buyers; {r['load_seconds']:.0f} s per phase "
             f"(goal idle: >= 1,000/s, p99 <= 50 ms)",
             f"   the client alone (trivial server): {c['requests_per_s']:,.0f}/s, "
             f"{c['client_cpu_us_per_request']} us of client CPU per request"]
    for name, p in r["phases"].items():
        offered = "as fast as answered" if p["offered_rate"] is None else (
            f"offered {p['offered_rate']:,.0f}/s")
        ingest = (f", ingest {p['ingest_orders_per_s']:,.0f} orders/s"
                  + ("" if p.get("ingest_ran_throughout", True) else " (ended meanwhile)"))
        lines.append(f"   {name:<13} {p['requests_per_s']:7,.0f}/s  p50 {fmt(p['p50_ms'], '.1f')}"
                     f"  p99 {fmt(p['p99_ms'], '.1f')}  max {fmt(p['max_ms'], '.1f')} ms  "
                     f"{p['statuses']} errors {p['errors']} ({offered}; client CPU "
                     f"{p['client_cpu_us_per_request']} us/request, worker "
                     f"{p.get('worker_cpu_share', 0):.2f} cores{ingest}, steal "
                     f"{format(p['steal_share'], '.0%') if 'steal_share' in p else 'n/a'})")
        lines.extend(f"      {count:,} answered {body}" for body, count in
                     p.get("refusals", {}).items())
    return lines


SUMMARIES = {"latency": summary_latency, "recovery": summary_recovery, "memory": summary_memory,
             "throughput": summary_throughput}
RUNNERS = {"latency": run_latency, "recovery": run_recovery, "memory": run_memory,
           "throughput": run_throughput}


def summary(document: dict[str, Any]) -> str:
    """The printed summary of a results document."""
    lines = [f"orderstream state benchmarks, commit {(document['git_commit'] or '?')[:12]}"
             f"{' (+ uncommitted changes)' if document['uncommitted_changes'] else ''}, "
             f"{document['cpu_count']} CPUs, {document['timestamp']}, on "
             f"{document.get('broker', 'tansu (embedded, in memory)')}"]
    for name in document["args"]["only"]:
        if name in document["results"]:
            lines += SUMMARIES[name](document["results"][name])
        else:
            lines.append(f"{name}: FAILED: {document['errors'][name].splitlines()[0]}")
    return "\n".join(lines)


def write_results(document: dict[str, Any], stamp: datetime) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"bench-state-{stamp:%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    return path


# --- command line -----------------------------------------------------------------------------

def positive_int(text: str) -> int:
    value = int(text.replace("_", "").replace(",", ""))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    add = parser.add_argument
    add("--only", action="append", choices=list(RUNNERS),
        help="run only this measurement (repeatable; default: all four)")
    add("--orders", type=positive_int, default=None,
        help="N of the latency (default 200,000), memory (default 1,000,000) and throughput "
             "(default 300,000) runs, and of the recovery run (default: enough for --rows)")
    add("--buyers", type=positive_int, default=100_000,
        help="buyers in the latency and memory runs (default 100,000)")
    add("--partitions", type=positive_int, default=4, help="input partitions (default 4)")
    add("--rows", type=positive_int, default=1_000_000,
        help="recovery: window rows to build (default 1,000,000)")
    add("--recovery-buyers", type=positive_int, default=10_000,
        help="recovery: buyers, taken in turn (default 10,000)")
    add("--recovery-event-rate", type=positive_float, default=100.0,
        help="recovery: orders per second of event time (default 100)")
    add("--recovery-retention", default="3650d",
        help="recovery: WINDOW_RETENTION, large so no row is deleted (default 3650d)")
    add("--recovery-lateness", default="1h",
        help="recovery: ALLOWED_LATENESS, large so no order misses a window when one input "
             "partition runs ahead of another (default 1h)")
    add("--recovery-timeout", type=positive_float, default=600.0,
        help="recovery: seconds a restart may take to be ready (default 600)")
    add("--broker", choices=BROKER_KINDS, default="tansu",
        help="tansu (embedded, in memory; the default) or kafka (Apache Kafka 4.1.1, one "
             "KRaft node the bench starts: needs Java 17+, and Maven the first time)")
    add("--compaction-timeout", type=positive_float, default=600.0,
        help="recovery on Kafka: seconds to wait for the log cleaner (default 600)")
    add("--latency-event-rate", type=positive_float, default=1000.0,
        help="latency: orders per second of event time (default 1000, as make bench)")
    add("--idle-seconds", type=positive_float, default=5.0,
        help="latency: seconds of queries after ingest, for comparison (default 5)")
    add("--throughput-buyers", type=positive_int, default=10_000,
        help="throughput: buyers of the input (default 10,000)")
    add("--connections", type=positive_int, default=50,
        help="throughput: concurrent kept-alive connections (default 50)")
    add("--load-seconds", type=positive_float, default=10.0,
        help="throughput: seconds of each load phase, after 1 s of warm-up (default 10)")
    add("--open-rate", type=positive_float, default=1000.0,
        help="throughput: requests/s offered in the open-loop phases (default 1000)")
    add("--memory-event-rate", type=positive_float, default=100.0,
        help="memory: orders per second of event time (default 100: 1M orders span 2.8 h)")
    add("--memory-retention", default="1h", help="memory: WINDOW_RETENTION (default 1h)")
    add("--memory-tail", type=float, default=10.0,
        help="memory: seconds of RSS samples after the last order is counted (default 10)")
    add("--windows", default=DEFAULT_WINDOWS, help=f"WINDOWS (default {DEFAULT_WINDOWS})")
    add("--allowed-lateness", default="5s",
        help="ALLOWED_LATENESS of the latency and memory runs (default 5s)")
    add("--stall-timeout", type=positive_float, default=180.0,
        help="seconds without progress after which a run fails (default 180)")
    add("--commit", default=None,
        help="run the workers from `git archive COMMIT` instead of the working tree")
    add("--code-dir", type=Path, default=None,
        help="run the workers from this directory (a patched copy, for an A/B comparison)")
    add("--worker-env", action="append", default=[], metavar="NAME=VALUE",
        help="extra environment of every worker, e.g. BATCH_MAX_ORDERS=500 (repeatable)")
    add("--trace-memory", type=positive_float, default=None, metavar="SECONDS",
        help="diagnostics: run workers under tracemalloc, write their top allocations every "
             "SECONDS to <workdir>/tracemalloc.<pid>.txt (slows them down; implies --keep)")
    add("--keep", action="store_true", help="keep the temporary directory (logs, state)")
    args = parser.parse_args(argv)
    args.only = args.only or list(RUNNERS)
    if args.code_dir is not None and args.commit is not None:
        parser.error("--code-dir and --commit exclude each other")
    for item in args.worker_env:
        if "=" not in item or not item.split("=", 1)[0]:
            parser.error(f"--worker-env: {item!r} is not NAME=VALUE")
    args.keep = args.keep or args.trace_memory is not None
    args.window_specs = parse_window_specs(args.windows)
    args.orders_latency = args.orders or 200_000
    args.orders_memory = args.orders or 1_000_000
    args.orders_recovery = args.orders
    args.orders_throughput = args.orders or 300_000
    ms = {}
    for name in ("recovery_retention", "recovery_lateness", "memory_retention",
                 "allowed_lateness"):
        try:
            ms[name] = parse_duration_ms(getattr(args, name))
        except ValueError as error:
            parser.error(f"--{name.replace('_', '-')}: {error}")
    largest_ms = max(w.size_ms for w in args.window_specs)
    for retention, lateness in (("memory_retention", "allowed_lateness"),
                                ("recovery_retention", "recovery_lateness")):
        if ms[retention] < largest_ms + ms[lateness]:
            parser.error(f"--{retention.replace('_', '-')} must be at least the largest window "
                         f"plus --{lateness.replace('_', '-')} ({largest_ms + ms[lateness]} ms)")
    return args


def summary_main(path: str) -> int:
    """`bench_state.py --summary FILE`: a past run's summary."""
    print(summary(json.loads(Path(path).read_text())))
    return 0


# not options of a run: the summary of a past one, and the subprocesses of measurement 6
HELPER_MODES = {"--summary": summary_main, "--load-client": load_client_main,
                "--trivial-server": trivial_server_main}


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 3 and sys.argv[1] in HELPER_MODES:
        return HELPER_MODES[sys.argv[1]](sys.argv[2])
    args = parse_args(argv)
    interrupt_on_stop_signals()
    stamp = datetime.now(UTC).replace(microsecond=0)
    workdir = Path(tempfile.mkdtemp(prefix="orderstream-bench-state-"))
    keep = args.keep
    results: dict[str, Any] = {}
    errors: dict[str, str] = {}
    try:
        if args.broker == "kafka":
            kafka_runtime()  # before any run: Java and the jars, or one line saying why not
        code = with_diagnostics(code_under_test(args.commit, workdir, args.code_dir), args,
                                workdir)
        say(f"workers run {code.directory} (commit {code.commit}"
            f"{', uncommitted changes' if code.dirty else ''}); work directory {workdir}")
        for name in args.only:
            say(f"--- {name} ---")
            started = time.monotonic()
            try:
                results[name] = RUNNERS[name](args, workdir, code)
                results[name]["wall_seconds"] = round(time.monotonic() - started, 1)
            except BenchFailed as error:
                errors[name] = str(error)
                keep = True
                say(f"{name} FAILED: {error}")
        document = {
            "timestamp": stamp.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "git_commit": code.commit, "uncommitted_changes": code.dirty,
            "code_dir": str(code.directory), "args": {k: v for k, v in vars(args).items()
                                                      if k != "window_specs"},
            "broker": broker_description(args.broker), "cpu_count": os.cpu_count(),
            "platform": platform.platform(), "python": platform.python_version(),
            "versions": versions(), "results": results, "errors": errors,
        }
        path = write_results(document, stamp)
        print("\n" + summary(document) + "\n", flush=True)
        say(f"results written to {path.relative_to(ROOT)}")
        return 1 if errors else 0
    except BrokerUnavailable as why:
        say(str(why))
        return 1
    except KeyboardInterrupt:
        say("interrupted; brokers and workers are stopped")
        return 130
    finally:
        if keep:
            say(f"temporary files (logs, state) kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
