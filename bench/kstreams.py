"""The Kafka Streams run: bench/kstreams (a Java app, built with Maven from Maven Central
into bench/kstreams/target the first time) as a subprocess, timed from outside, on Apache
Kafka only, exactly-once v2 as its docs recommend for a job like this.

The clock starts when the app consumes its first order (its status file gives that moment
on the shared monotonic clock, as the Quix run's does) and stops when the bench has read
buyer totals back, committed, whose latest counts add up to N. Kafka Streams caches a
KTable's updates and emits the latest per key at each commit (100 ms under exactly-once),
as orderstream coalesces per batch, so counting records would never reach N. Then the
app is stopped and, off the clock, its outputs are checked as the Quix run's are.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.harness import (
    ROOT,
    BenchContext,
    RunResult,
    failed,
    new_run,
    say,
)
from bench.pipelines.job import results_topic, totals_topic
from bench.quix import LatestCounts, run_peer

APP_DIR = ROOT / "bench" / "kstreams"
JAR = APP_DIR / "target" / "kstreams-peer-0.1.0.jar"
MAIN = "orderstream.bench.OrdersJob"


def build() -> str | None:
    """Build the app once (mvn package); the error text if it cannot be."""
    sources = sorted(APP_DIR.rglob("*.java")) + [APP_DIR / "pom.xml"]
    if JAR.exists() and all(s.stat().st_mtime <= JAR.stat().st_mtime for s in sources):
        return None
    mvn = shutil.which("mvn")
    if mvn is None:
        return "Maven (mvn) is missing: the Kafka Streams peer cannot be built"
    say("building the Kafka Streams peer (bench/kstreams, mvn package)")
    done = subprocess.run([mvn, "-q", "-B", "package", "-DskipTests"], cwd=APP_DIR,
                          capture_output=True, text=True, check=False)
    return None if done.returncode == 0 else f"mvn package failed:\n{done.stdout[-3000:]}"


async def create_outputs(broker: str, group: str, partitions: int) -> None:
    """The app's output topics: Kafka Streams creates its internal topics, not the ones it
    writes to, as its docs tell a user to create them first."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=partitions,
                                            replication_factor=1)
                                   for topic in (totals_topic(group), results_topic(group))])
    finally:
        await admin.close()


def classpath() -> str:
    return os.pathsep.join([str(JAR), str(APP_DIR / "target" / "dependency" / "*")])


def run_kstreams(ctx: BenchContext, run_index: int) -> RunResult:
    """Kafka Streams: orderstream's job as its DSL writes it (bench/kstreams), exactly-once v2."""
    error = build()
    if error:
        return failed(error)
    java = shutil.which("java")
    if java is None:
        return failed("java is missing: the Kafka Streams peer cannot run")
    run_dir, config = new_run(ctx, "kstreams", exactly_once=True)
    asyncio.run(create_outputs(ctx.broker, config.group, ctx.partitions))
    return run_peer(ctx, run_index, "Kafka Streams", config, [java, "-cp", classpath(), MAIN],
                    {**os.environ, **config.to_env()}, run_dir / "app.log", LatestCounts())
