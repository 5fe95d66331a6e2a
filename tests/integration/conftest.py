"""Real worker processes (`faust -A app worker`) against the session's broker."""

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic

from app.embedded import free_port
from app.settings import Settings
from app.topics import topic_configs, topic_names
from tests import kafka
from tests.integration.fresh import REPO, copy_working_tree, make_run_venv, wheel_venv

T = TypeVar("T")
FAUST = Path(sys.executable).parent / "faust"


class Worker:
    """One `faust -A app worker` subprocess with its own API port and DATA_DIR."""

    def __init__(self, env: dict[str, str], log_path: Path, faust: Path = FAUST,
                 cwd: Path = REPO) -> None:
        self.env, self.faust, self.cwd = env, faust, cwd
        self.log_path = log_path
        self.port = int(env["API_PORT"])
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "Worker":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [str(self.faust), "-A", "app", "worker", "-l", "info"], cwd=self.cwd, env=self.env,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        return self

    def wait_ready(self, timeout_s: float = 90) -> None:
        """Hang guard only: poll /ready until 200."""
        deadline = time.monotonic() + timeout_s
        last = "no answer"
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log()[-3000:]
            try:
                answer = httpx.get(f"{self.url}/ready", timeout=1)
                if answer.status_code == 200:
                    return
                last = f"{answer.status_code} {answer.text}"
            except httpx.HTTPError as error:
                last = repr(error)
            time.sleep(0.2)
        raise AssertionError(f"worker not ready after {timeout_s}s (/ready: {last}):\n"
                             f"{self.log()[-3000:]}")

    def get(self, path: str, **params: object) -> httpx.Response:
        """GET a route, with the bearer token when the worker has API_TOKEN."""
        token = self.env.get("API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else None
        return httpx.get(f"{self.url}{path}", params=params, headers=headers, timeout=10)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def fresh_checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the working tree whose `.venv` `make run` built: runtime and embedded only."""
    checkout = copy_working_tree(tmp_path_factory.mktemp("checkout"))
    make_run_venv(checkout)
    return checkout


@pytest.fixture(scope="session")
def wheel_install(fresh_checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the project installed non-editable (`pip install '.[embedded]'`)."""
    return wheel_venv(fresh_checkout, tmp_path_factory.mktemp("wheel") / "venv")


@pytest.fixture
def worker_env(broker: str, tmp_path: Path) -> dict[str, str]:
    """Environment of a worker with its own app id (consumer group, internal topics)."""
    suffix = uuid.uuid4().hex[:8]
    ours = {name.upper() for name in Settings.model_fields}
    return {
        **{k: v for k, v in os.environ.items() if k not in ours},
        "KAFKA_BROKER": broker,
        "EMBEDDED_BROKER": "1",
        "APP_ID": f"it-{suffix}",
        "ORDERS_TOPIC": f"orders-{suffix}",
        "BUYER_TOTALS_TOPIC": f"buyer-totals-{suffix}",
        "WINDOW_RESULTS_TOPIC": f"window-results-{suffix}",
        "DATA_DIR": str(tmp_path / "data"),
        "API_PORT": str(free_port()),
        "PRINT_SINK": "1",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(REPO),  # this checkout's code, whatever the venv was installed from
    }


@pytest.fixture
def make_worker(tmp_path: Path) -> Iterator[Callable[..., Worker]]:
    """Start workers; every one still running is stopped at the end of the test."""
    started: list[Worker] = []

    def make(env: dict[str, str], name: str = "worker", **where: Path) -> Worker:
        """A worker of this checkout's faust, or of `faust=`, run in `cwd=`."""
        worker = Worker(env, tmp_path / f"{name}-{len(started)}.log", **where).start()
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.stop(signal.SIGKILL)


def run_sync(coroutine: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, in a thread of its own while this thread runs a loop (Playwright's)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def produce(broker: str, topic: str, records: list[tuple[bytes | None, bytes]],
            max_request_size: int = 1024 * 1024) -> None:
    """Send (key, value) records in order and wait for all of them."""
    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=broker, linger_ms=5,
                                    max_request_size=max_request_size)
        await producer.start()
        try:
            futures = [await producer.send(topic, value, key=key) for key, value in records]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
    run_sync(run())


async def partitions_of(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    """A topic's partitions, from fresh metadata (a topic made since the start is known)."""
    await consumer._client.force_metadata_update()  # noqa: SLF001
    return [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]


def consume_all(broker: str, topic: str, timeout_s: float = 10,
                isolation: str = "read_uncommitted") -> list[tuple[bytes | None, bytes]]:
    """Every record of a topic, read from the start to its end, partition by partition
    (`isolation="read_committed"`: those of committed transactions only)."""
    async def run() -> list[tuple[bytes | None, bytes]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    isolation_level=isolation)
        await consumer.start()
        try:
            tps = await partitions_of(consumer, topic)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: list[tuple[bytes | None, bytes]] = []
            deadline = time.monotonic() + timeout_s
            quiet = 0  # tansu's ListOffsets can lag: also wait for two empty fetches
            while time.monotonic() < deadline and quiet < 2:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    out.extend((r.key, r.value) for r in records)
                for tp in tps:
                    ends[tp] = max(ends[tp], consumer.highwater(tp) or 0)
                caught_up = all([await consumer.position(tp) >= ends[tp] for tp in tps])
                quiet = quiet + 1 if caught_up and not batch else 0
            return out
        finally:
            await consumer.stop()
    return run_sync(run())


def end_offsets(broker: str, topic: str) -> dict[int, int]:
    """The end offset of each partition of a topic."""
    async def run() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None)
        await consumer.start()
        try:
            ends = await consumer.end_offsets(await partitions_of(consumer, topic))
            return {tp.partition: offset for tp, offset in ends.items()}
        finally:
            await consumer.stop()
    return run_sync(run())


def committed_offsets(broker: str, group: str, topic: str) -> dict[int, int]:
    """The offsets a consumer group has committed on a topic's partitions (as Kafka has them);
    read with OffsetFetch by a consumer that never joins the group."""
    async def run() -> dict[int, int]:
        consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=group,
                                    enable_auto_commit=False)
        await consumer.start()
        try:
            found = {tp.partition: await consumer.committed(tp)
                     for tp in await partitions_of(consumer, topic)}
            return {p: offset for p, offset in found.items() if offset is not None}
        finally:
            await consumer.stop()
    return run_sync(run())


def wait_for(check: Callable[[], bool], timeout_s: float = 60, what: str = "condition") -> None:
    """Hang guard: poll `check` until true."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def metric(worker: Worker, name: str) -> float:
    """One unlabelled sample of the worker's /metrics."""
    for line in worker.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def kafka_runtime() -> tuple[str, Path]:
    """`java` and Apache Kafka's jars (fetched the first time); the test is skipped, with
    one line saying why, where Java 17+ or Maven is missing. A failed fetch is a skip too,
    but with CI=true an error: there the tier must run."""
    try:
        java, mvn = kafka.tools()
    except kafka.Unavailable as why:
        pytest.skip(f"Apache Kafka tier skipped: {why}")
    try:
        return java, kafka.kafka_jars(mvn)
    except kafka.Unavailable as why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Apache Kafka tier: {why}")
        pytest.skip(f"Apache Kafka tier skipped: {why}")


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`host:port` of an Apache Kafka node (KRaft) for this test session only (see
    `kafka_runtime` for where it is skipped)."""
    java, jars = kafka_runtime()
    node = kafka.KafkaNode(java, jars, tmp_path_factory.mktemp("kafka")).start()
    try:
        yield node.bootstrap
    finally:
        node.stop()


# A worker that was killed stays in its group until its session times out, and the
# group's next rebalance waits for it: shorter than Kafka's 45 s, to keep tests short.
KAFKA_TEST_TIMEOUTS = {"KAFKA_SESSION_TIMEOUT": "10s", "KAFKA_HEARTBEAT_INTERVAL": "1s",
                       "KAFKA_REBALANCE_TIMEOUT": "10s"}


@pytest.fixture
def kafka_worker_env(kafka_broker: str, worker_env: dict[str, str]) -> dict[str, str]:
    """`worker_env` against Apache Kafka: its broker keeps data across worker restarts."""
    env = {k: v for k, v in worker_env.items() if k != "EMBEDDED_BROKER"}
    return {**env, **KAFKA_TEST_TIMEOUTS, "KAFKA_BROKER": kafka_broker}


@pytest.fixture(params=["tansu", pytest.param("kafka", marks=pytest.mark.kafka)])
def on_broker(request: pytest.FixtureRequest, worker_env: dict[str, str]) -> tuple[
        str, dict[str, str]]:
    """(bootstrap, worker environment) on each broker in turn: tansu (the embedded one)
    and Apache Kafka (skipped with one line where it cannot be had)."""
    if request.param == "tansu":
        return request.getfixturevalue("broker"), worker_env
    return (request.getfixturevalue("kafka_broker"),
            request.getfixturevalue("kafka_worker_env"))


def create_worker_topics(broker: str, env: dict[str, str],
                         configs: dict[str, dict[str, str]] | None = None) -> None:
    """Create every topic a worker of `env` uses, as app/topics.py would (TOPIC_PARTITIONS
    partitions, its configs), with `configs` added per topic name, before the worker
    starts: finding them all, it creates none and keeps their configs."""
    settings = Settings(_env_file=None, app_id=env["APP_ID"], orders_topic=env["ORDERS_TOPIC"],
                        buyer_totals_topic=env["BUYER_TOTALS_TOPIC"],
                        window_results_topic=env["WINDOW_RESULTS_TOPIC"])
    partitions = int(env.get("TOPIC_PARTITIONS", Settings.model_fields["topic_partitions"].default))
    ours = topic_configs(settings, 1)
    run_sync(kafka.create_topics(broker, [
        NewTopic(name, partitions, 1, topic_configs={**ours[name], **(configs or {}).get(name, {})})
        for name in vars(topic_names(settings)).values()]))
