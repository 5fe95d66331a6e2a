"""`make run`: the embedded broker (unless KAFKA_BROKER is set), the topics, one worker.

What it does, in order:

1. Validates the settings (environment and `.env`); a bad value stops it with one line.
2. Without `KAFKA_BROKER`, starts the embedded broker (tansu) on 127.0.0.1:9092, logging
   to `DATA_DIR/tansu.log`; if that port is taken it stops with a line saying so.
   `KAFKA_BROKER` counts as set when it is non-empty: an empty value means "unset", as
   it does for the worker's own settings (`app.settings`), so both always agree on which
   broker is used.
3. Creates the missing topics and prints one line listing them.
4. Starts `faust -A app worker -l info` (the faust next to this Python) in the repository
   root, in its own session and with a parent-death signal, so it never outlives this
   launcher, even a `kill -9`-ed one. The embedded broker gets the same guard.
   With the embedded broker the worker gets `KAFKA_BROKER=127.0.0.1:9092`,
   `EMBEDDED_BROKER=1` and `DATAGEN_RPS=10`; with a broker of the user's, `DATAGEN_RPS=0`
   and no `EMBEDDED_BROKER`. A `DATAGEN_RPS` the user gave (environment or `.env`) is kept
   in both cases.
5. Waits for the worker's `/ready`, then prints the URLs to look at.

Ctrl-C (SIGINT), SIGTERM and SIGHUP (the terminal closing) stop the worker first (SIGINT to
its process group, so it shuts down cleanly; SIGKILL after 7 s), then the broker (SIGTERM,
SIGKILL after 2 s), and the launcher exits 0: a stop that was asked for is a success.
When the worker exits on its own, the launcher stops the broker and exits with the worker's
code (128 + N when signal N killed it).

Messages of the launcher go to stderr; the worker inherits stdout and stderr, so the print
sink's lines (`+I[...]`) are the only thing on stdout.
"""

import signal
import sys

# Until main() takes over, a stop signal ends the launcher quietly: nothing is started yet.
for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, lambda signum, frame: sys.exit(0))

import asyncio  # noqa: E402
import ctypes  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402
from types import FrameType  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python scripts/run.py` puts scripts/, not the root, first
    sys.path.insert(0, str(ROOT))

from aiokafka.errors import KafkaError  # noqa: E402

from app.embedded import port_is_free, start_tansu, stop_process  # noqa: E402
from app.settings import Settings, load_settings  # noqa: E402
from app.topics import ensure_topics  # noqa: E402

EMBEDDED_HOST, EMBEDDED_PORT = "127.0.0.1", 9092
EMBEDDED_DATAGEN_RPS = "10"
WORKER_STOP_S = 7.0  # SIGINT, then SIGKILL: worker and broker together stay under 10 s
BROKER_STOP_S = 2.0
TOPICS_TIMEOUT_S = 60.0
POLL_S = 0.2
SLOW_READY_S = 30.0  # after this long without /ready, say what the worker is doing
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def say(message: str) -> None:
    """One line of the launcher's own, on stderr."""
    print(f"orderstream: {message}", file=sys.stderr, flush=True)


class StopRequest:
    """Records a stop signal instead of raising, so no start is torn in half.

    Every wait of the launcher polls it; a second Ctrl-C during the shutdown changes nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._record)

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:  # no printing here: it could interrupt a print in progress
            self.signum = signum

    def __bool__(self) -> bool:
        return self.signum is not None


_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """In the worker, before exec: get SIGTERM when the launcher dies, however it dies."""
    parent = os.getppid()
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the launcher died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def start_broker(settings: Settings) -> subprocess.Popen[bytes]:
    """The embedded broker on 127.0.0.1:9092, its log under DATA_DIR."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "tansu.log"
    broker = start_tansu(EMBEDDED_HOST, EMBEDDED_PORT, log_path=log_path,
                         preexec_fn=_die_with_parent)
    say(f"embedded broker (tansu, in memory) on {EMBEDDED_HOST}:{EMBEDDED_PORT}, log {log_path}")
    return broker


def create_topics(settings: Settings, stop: StopRequest) -> dict[str, int] | None:
    """ensure_topics, given up on a stop request (None) or after TOPICS_TIMEOUT_S."""

    async def run() -> dict[str, int] | None:
        task = asyncio.create_task(asyncio.wait_for(ensure_topics(settings), TOPICS_TIMEOUT_S))
        while not task.done():
            await asyncio.wait({task}, timeout=POLL_S)
            if stop:
                task.cancel()
                return None
        return task.result()

    try:
        return asyncio.run(run())
    except (KafkaError, OSError, TimeoutError) as error:
        reason = str(error) or f"no answer within {TOPICS_TIMEOUT_S:.0f} s"
        raise RuntimeError(
            f"cannot create the topics on {settings.kafka_broker}: {reason}"
        ) from None


def worker_env(settings: Settings, embedded: bool) -> dict[str, str]:
    """The worker's environment: the launcher's, plus the broker and datagen choices."""
    env = dict(os.environ)
    if embedded:
        env["KAFKA_BROKER"] = f"{EMBEDDED_HOST}:{EMBEDDED_PORT}"
        env["EMBEDDED_BROKER"] = "1"
    else:
        env.pop("EMBEDDED_BROKER", None)
    if "datagen_rps" not in settings.model_fields_set:  # neither environment nor .env has it
        env["DATAGEN_RPS"] = EMBEDDED_DATAGEN_RPS if embedded else "0"
    return env


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """`faust -A app worker -l info` in the repository root, in its own session."""
    faust = Path(sys.executable).parent / "faust"
    return subprocess.Popen(
        [str(faust), "-A", "app", "worker", "-l", "info"],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
        start_new_session=True, preexec_fn=_die_with_parent,
    )


def api_base_url(settings: Settings) -> str:
    """Where this machine reaches the worker's API (a wildcard bind means loopback)."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(
        settings.api_host, settings.api_host
    )
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.api_port}"


_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def ready_status(base_url: str) -> str | None:
    """'ready' on 200 from /ready, the worker's status text on 503, None if nothing answers."""
    try:
        with _no_proxy.open(f"{base_url}/ready", timeout=1) as response:
            return "ready" if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as error:
        return error.read(200).decode(errors="replace") or f"HTTP {error.code}"
    except OSError:
        return None


def exit_code(returncode: int) -> int:
    """A shell's view of a child's status: 128 + N when signal N killed it."""
    return 128 - returncode if returncode < 0 else returncode


def wait_until_ready(worker: subprocess.Popen[bytes], base_url: str,
                     stop: StopRequest) -> bool:
    """Poll /ready until it answers 200; False when the worker exits or a stop comes first."""
    started = time.monotonic()
    told_slow = False
    while not stop and worker.poll() is None:
        status = ready_status(base_url)
        if status == "ready":
            return True
        if not told_slow and time.monotonic() - started > SLOW_READY_S:
            say(f"still waiting for {base_url}/ready ({status or 'no answer yet'})")
            told_slow = True
        time.sleep(POLL_S)
    return False


def print_where_to_look(base_url: str, settings: Settings) -> None:
    """The URLs a user opens next."""
    lines = [
        f"ready. API docs: {base_url}/docs",
        f"  dashboard:      {base_url}/",
        f"  buyer totals:   {base_url}/buyers",
        f"  windows:        {base_url}/windows",
        f"  metrics:        {base_url}/metrics",
    ]
    if settings.api_token:
        lines.append("  API_TOKEN is set: send 'Authorization: Bearer <API_TOKEN>'")
    lines.append("Ctrl-C stops everything.")
    for line in lines:
        say(line)


def supervise(worker: subprocess.Popen[bytes], settings: Settings, stop: StopRequest) -> int:
    """Wait for ready, then for a stop request or the worker's exit; the launcher's exit code."""
    base_url = api_base_url(settings)
    if wait_until_ready(worker, base_url, stop):
        print_where_to_look(base_url, settings)
        while not stop and worker.poll() is None:
            time.sleep(POLL_S)
    if stop:
        return 0
    code = exit_code(worker.returncode)
    say(f"the worker exited with code {code}; stopping")
    return code


def shutdown(worker: subprocess.Popen[bytes] | None,
             broker: subprocess.Popen[bytes] | None) -> None:
    """Worker first (it still talks to the broker while it shuts down), then the broker."""
    if worker is not None:
        stop_process(worker, timeout_s=WORKER_STOP_S, sig=signal.SIGINT)
    if broker is not None:
        stop_process(broker, timeout_s=BROKER_STOP_S)


def main() -> int:
    """Run everything until Ctrl-C or the worker's exit; the process exit code."""
    os.chdir(ROOT)  # `.env`, a relative DATA_DIR and the worker all resolve from the root
    stop = StopRequest()
    settings = load_settings()
    embedded = settings.kafka_broker is None
    if embedded and not port_is_free(EMBEDDED_HOST, EMBEDDED_PORT):
        say(f"port {EMBEDDED_PORT} on {EMBEDDED_HOST} is taken, so the embedded broker cannot "
            f"start; stop what uses it, or set KAFKA_BROKER=host:port to use a running broker")
        return 1
    broker = worker = None
    try:
        if embedded:
            broker = start_broker(settings)
            settings = settings.model_copy(
                update={"kafka_broker": f"{EMBEDDED_HOST}:{EMBEDDED_PORT}"}
            )
        if stop:
            return 0
        topics = create_topics(settings, stop)
        if topics is None:
            return 0
        say(f"topics (partitions) on {settings.kafka_broker}: "
            + ", ".join(f"{name} ({count})" for name, count in topics.items()))
        worker = start_worker(worker_env(settings, embedded))
        return supervise(worker, settings, stop)
    except (RuntimeError, OSError) as error:  # tansu missing or not starting, faust missing
        say(str(error))
        return 1
    finally:
        if stop.signum is not None:
            say(f"{signal.Signals(stop.signum).name}: stopping")
        shutdown(worker, broker)


if __name__ == "__main__":
    sys.exit(main())
