"""Apache Kafka for the suite: its jars fetched once from Maven Central by Maven into a
git-ignored cache, and a one-node KRaft broker (broker and controller in one JVM) on loopback;
for the fault tests, a node stopped and started again on its data, and a cluster of three.

Where Java 17+ or Maven is missing, or the fetch fails, `Unavailable` says why in one line
and the Kafka tier is skipped with it.
"""

import asyncio
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from base64 import urlsafe_b64encode
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from aiokafka import AIOKafkaClient
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from app.embedded import free_port, stop_process

KAFKA_VERSION = "4.1.1"
SCALA_VERSION = "2.13"
LOG4J_VERSION = "2.24.3"  # the log4j-core that kafka_2.13 4.1.1 depends on
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "kafka"
FETCH_TIMEOUT_S = 900  # a hang guard: the first fetch took 23 s here
START_TIMEOUT_S = 90
BROKER_JVM = ["-Xms256m", "-Xmx512m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
              "-Djava.awt.headless=true"]
# A one-shot tool: the quick compiler only starts it in 1.5 s rather than 4 s here.
TOOL_JVM = ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]

POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>orderstream.tests</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{version}</version>
    </dependency>
    <!-- Kafka logs through slf4j 1.7; its distribution binds that to log4j2 -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

# Everything to the console at INFO, which the fixture sends to a file of the session.
LOG4J2 = """status = warn
shutdownHook = disable
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.console.ref = console
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
"""

# One node, nothing replicated: every internal topic at replication factor 1, few
# partitions (each one is a log to create), no rebalance delay for the tests' groups.
# Topics are created by their users (app/topics.py), never by a metadata request.
# In a cluster (`KafkaCluster`) every node is a broker and a voter of the controller
# quorum, and the internal topics have `replicas` replicas, `min_isr` of them in sync.
SERVER_PROPERTIES = """process.roles=broker,controller
node.id={node_id}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={log_dir}
num.partitions=1
default.replication.factor={replicas}
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor={replicas}
offsets.topic.num.partitions=8
transaction.state.log.replication.factor={replicas}
transaction.state.log.min.isr={min_isr}
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor={replicas}
share.coordinator.state.topic.min.isr={min_isr}
group.initial.rebalance.delay.ms=0
# the compaction test's changelogs roll segments every few hundred ms: clean them soon
log.cleaner.backoff.ms=500
"""


class Unavailable(Exception):
    """Apache Kafka cannot be had on this machine; the message is the one line saying why."""


def java_major(java: str) -> int | None:
    """The feature version of a `java` (17 for "17.0.15"), None if it does not say."""
    result = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    found = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr)
    if not found:
        return None
    major = int(found[1])
    return int(found[2] or 0) if major == 1 else major  # "1.8.0" is Java 8


def tools() -> tuple[str, str]:
    """Paths of `java` (17 or later) and `mvn`; Unavailable names what is missing."""
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if java is None:
        raise Unavailable("no java on PATH (Java 17+ and Maven run the Apache Kafka tier)")
    major = java_major(java)
    if major is None or major < 17:
        raise Unavailable(f"{java} is Java {major}, Apache Kafka {KAFKA_VERSION} needs 17+")
    if mvn is None:
        raise Unavailable("no mvn on PATH (Maven fetches Apache Kafka's jars once)")
    return java, mvn


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on a file: two pytest processes do not fetch the same jars twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def kafka_jars(mvn: str, version: str = KAFKA_VERSION) -> Path:
    """The folder of Kafka's jars and their dependencies, fetched on the first call ever.

    Maven copies them into a folder beside the final one, renamed into place once complete,
    so a fetch cut short leaves nothing that looks usable.
    """
    final = CACHE / version
    if (final / "lib").is_dir():
        return final / "lib"
    with locked(CACHE / f"{version}.lock"):
        if (final / "lib").is_dir():  # another process fetched them while we waited
            return final / "lib"
        partial = CACHE / f"{version}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        pom = POM.format(scala=SCALA_VERSION, version=version, log4j=LOG4J_VERSION)
        (partial / "pom.xml").write_text(pom)
        command = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(partial / "pom.xml"),
                   "dependency:copy-dependencies", "-DincludeScope=runtime",
                   f"-DoutputDirectory={partial / 'lib'}"]
        try:
            result = subprocess.run(command, capture_output=True, text=True,
                                    timeout=FETCH_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            shutil.rmtree(partial, ignore_errors=True)
            raise Unavailable(f"mvn did not fetch kafka_{SCALA_VERSION} {version} "
                              f"in {FETCH_TIMEOUT_S}s") from None
        if result.returncode != 0:
            shutil.rmtree(partial, ignore_errors=True)
            raise Unavailable(f"mvn could not fetch kafka_{SCALA_VERSION} {version}: "
                              f"{last_error(result.stdout + result.stderr)}")
        partial.rename(final)
    return final / "lib"


def last_error(output: str) -> str:
    """The first `[ERROR]` line of Maven's output (the cause), else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [found[1] for line in lines if (found := re.search(r"\[ERROR\] (.+)", line))]
    return (errors or lines[-1:] or ["no output"])[0][:300]


def cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64 without padding, as Kafka's Uuid."""
    return urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


class KafkaNode:
    """One Apache Kafka process in KRaft combined mode, its data in a folder of its own.

    `stop()` then `start()` again runs it on the same ports and data (formatted once): a
    broker restarted with everything it had. In a cluster, `KafkaCluster` sets `node_id`,
    `voters`, `cluster` (the id every node is formatted with) and `replicas`."""

    def __init__(self, java: str, jars: Path, workdir: Path) -> None:
        self.java, self.workdir = java, workdir
        self.classpath = f"{jars}/*"
        self.port, self.controller_port = free_port(), free_port()
        self.log_path = workdir / "kafka.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.node_id, self.voters, self.cluster = 1, "", cluster_id()
        self.replicas, self.min_isr = 1, 1

    @property
    def bootstrap(self) -> str:
        """`host:port` for clients."""
        return f"127.0.0.1:{self.port}"

    @property
    def voter(self) -> str:
        """This node in `controller.quorum.voters`: `id@host:port`."""
        return f"{self.node_id}@127.0.0.1:{self.controller_port}"

    @property
    def formatted(self) -> bool:
        """Whether the log folder was formatted (a start since then keeps its data)."""
        return (self.workdir / "data" / "meta.properties").exists()

    def _java(self, options: list[str], main: str, *args: str) -> list[str]:
        logging = f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}"
        return [self.java, *options, logging, "-cp", self.classpath, main, *args]

    def configure(self) -> Path:
        """Write server.properties and the logging config; format the log folder unless it
        was formatted before (a restart keeps the node's data)."""
        (self.workdir / "log4j2.properties").write_text(LOG4J2)
        properties = self.workdir / "server.properties"
        properties.write_text(SERVER_PROPERTIES.format(
            node_id=self.node_id, voters=self.voters or self.voter, port=self.port,
            controller_port=self.controller_port, log_dir=self.workdir / "data",
            replicas=self.replicas, min_isr=self.min_isr))
        if self.formatted:
            return properties
        result = subprocess.run(
            # `=`: an id may start with "-", which would read as an option
            self._java(TOOL_JVM, "kafka.tools.StorageTool", "format",
                       f"--cluster-id={self.cluster}", "-c", str(properties)),
            capture_output=True, text=True, timeout=120)
        (self.workdir / "format.log").write_text(result.stdout + result.stderr)
        if result.returncode != 0:
            raise RuntimeError(f"kafka-storage format failed ({result.returncode}):\n"
                               f"{result.stdout}{result.stderr}")
        return properties

    def start(self) -> "KafkaNode":
        """Format (the first time), start the JVM, and wait until the broker answers a
        metadata request."""
        self.launch(self.configure())
        try:
            self.wait_started(START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self, properties: Path) -> None:
        """Start the JVM, not waiting for it."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self._java(BROKER_JVM, "kafka.Kafka", str(properties)), cwd=self.workdir,
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)

    def wait_started(self, timeout_s: float, brokers: int = 1) -> None:
        """Until it listens and its metadata lists `brokers` brokers."""
        self._wait_until_listening(timeout_s)
        asyncio.run(self._wait_until_answering(timeout_s, brokers))

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"Apache Kafka exited with {self.process.returncode}:\n"
                               f"{self.log_path.read_text(errors='replace')[-3000:]}")

    def _wait_until_listening(self, timeout_s: float) -> None:
        """Quietly, before any Kafka client tries (aiokafka logs each refused connection)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"Apache Kafka did not listen on {self.bootstrap} within "
                           f"{timeout_s}s (log: {self.log_path})")

    async def _wait_until_answering(self, timeout_s: float, brokers: int = 1) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            self._check_alive()
            client = AIOKafkaClient(bootstrap_servers=self.bootstrap, request_timeout_ms=2000)
            try:
                await client.bootstrap()
                if len(client.cluster.brokers()) >= brokers:
                    return
            except KafkaError:
                pass
            finally:
                await client.close()
            if time.monotonic() > deadline:
                raise TimeoutError(f"Apache Kafka did not answer on {self.bootstrap} "
                                   f"within {timeout_s}s (log: {self.log_path})")
            await asyncio.sleep(0.2)

    def stop(self, timeout_s: float = 30, sig: int = signal.SIGTERM) -> None:
        """SIGTERM (a controlled shutdown), SIGKILL after timeout_s; `sig=SIGKILL`: a crash."""
        if self.process is not None:
            stop_process(self.process, timeout_s=timeout_s, sig=sig)


class KafkaCluster:
    """`size` KRaft nodes on loopback, each a broker and a voter of the controller quorum
    (a majority of voters keeps the cluster up when one node dies), the internal topics
    replicated on `min(3, size)` of them, 2 in sync when that is 3."""

    def __init__(self, java: str, jars: Path, workdir: Path, size: int = 3) -> None:
        self.nodes = [KafkaNode(java, jars, workdir / f"node{i}") for i in range(1, size + 1)]
        cluster, voters = cluster_id(), ",".join(
            f"{i}@127.0.0.1:{node.controller_port}" for i, node in enumerate(self.nodes, 1))
        replicas = min(3, size)
        for node_id, node in enumerate(self.nodes, 1):
            node.workdir.mkdir(parents=True, exist_ok=True)
            node.node_id, node.voters, node.cluster = node_id, voters, cluster
            node.replicas, node.min_isr = replicas, 2 if replicas >= 3 else 1

    @property
    def bootstrap(self) -> str:
        """Every node's `host:port`, comma-separated, for clients."""
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    def start(self) -> "KafkaCluster":
        """Format the nodes (at once), start them all, and wait until each one's metadata
        lists every broker: a quorum forms only once a majority of voters runs."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            configured = list(pool.map(KafkaNode.configure, self.nodes))
        try:
            for node, properties in zip(self.nodes, configured, strict=True):
                node.launch(properties)
            for node in self.nodes:
                node.wait_started(START_TIMEOUT_S, brokers=len(self.nodes))
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Every node at once (SIGKILL: quicker, when their data no longer matters)."""
        with ThreadPoolExecutor(len(self.nodes)) as pool:
            list(pool.map(lambda node: node.stop(timeout_s=10, sig=sig), self.nodes))


async def create_topics(bootstrap: str, topics: list[NewTopic], timeout_s: float = 30) -> None:
    """Create topics and wait until the broker's metadata shows them all.

    CreateTopics answers once the controller has the topics; the broker learns of them from
    the metadata log a moment later (300 ms seen here), and a metadata request in between
    does not list them.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        response = await admin.create_topics(topics)
        errors = [(name, code) for name, code, *_ in response.topic_errors if code != 0]
        assert not errors, f"CreateTopics failed: {errors}"
        deadline = time.monotonic() + timeout_s
        wanted = {t.name: t.num_partitions for t in topics}
        while True:
            metadata = await admin._client.fetch_all_metadata()  # noqa: SLF001
            shown = {t: len(metadata.partitions_for_topic(t) or ()) for t in wanted}
            if shown == wanted:
                return
            assert time.monotonic() < deadline, f"topics not in metadata: {shown} != {wanted}"
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
