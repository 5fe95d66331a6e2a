"""The Flink SQL run: bench/flink/job.sql, run by PyFlink (bench/flink/job.py) in a local
mini-cluster as a subprocess, timed from outside as the Kafka Streams run is.

Bench-only and fetched on first use, as the Kafka Streams app is built on first use: PyFlink
(`apache-flink` from PyPI, FLINK_VERSION) into its own venv, .cache/flink-venv, and Flink's
Kafka SQL connector (CONNECTOR, one shaded jar from Maven Central) into .cache/flink; neither
is a dependency of orderstream.

State is in RocksDB, as the seed's job and the other peers keep it (BENCH_FLINK_STATE=hashmap
keeps it on the heap, Flink's default). On Apache Kafka both sinks are exactly-once
(`sink.delivery-guarantee = exactly-once`): a Kafka transaction per sink subtask per
checkpoint (bench/flink/job.py says which interval); on tansu, which has no transactions,
at-least-once.

The clock starts when Flink's Kafka source has its first partition's position, right
before its first fetch (bench/flink/job.py writes that moment, from the JVM's log line
stamped with System.nanoTime(), into the status file, on the clock the bench reads), and
stops when the bench has read buyer totals back, committed, whose latest counts add up to N:
the upsert-kafka sink writes the latest total per buyer per mini-batch, visible at each
checkpoint, so counting records would never reach N (LatestCounts, as for Kafka Streams).
JVM and mini-cluster start-up, the job's planning and deployment are before that moment;
Flink starts its source before its sinks have their transactional producers, so on Kafka
the last task runs a little after it (0.2-0.5 s here, `tasks_running_after_first_fetch_s`),
inside the span, while the source works. Then the job is stopped and, off the clock, its
outputs are checked as the other peers' are.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys

from bench.harness import (
    ROOT,
    BenchContext,
    RunResult,
    failed,
    new_run,
    say,
)
from bench.kstreams import create_outputs
from bench.pipelines.common import read_status
from bench.quix import LatestCounts, run_peer

FLINK_VERSION = "2.2.1"  # apache-flink on PyPI: Flink and PyFlink
CONNECTOR_VERSION = "5.0.0-2.2"  # flink-sql-connector-kafka, built for Flink 2.2
CONNECTOR = f"org.apache.flink:flink-sql-connector-kafka:{CONNECTOR_VERSION}"
APP_DIR = ROOT / "bench" / "flink"
DRIVER = APP_DIR / "job.py"
LOG4J = APP_DIR / "log4j2.properties"
CACHE = ROOT / ".cache"
VENV = CACHE / "flink-venv"
PYTHON = VENV / "bin" / "python"
INSTALLED = VENV / f".installed-apache-flink-{FLINK_VERSION}"
JAR_DIR = CACHE / "flink"
JAR = JAR_DIR / f"flink-sql-connector-kafka-{CONNECTOR_VERSION}.jar"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
SETUP_TIMEOUT_S = 900


def install_pyflink() -> str | None:
    """PyFlink into its own venv, once; the error text if it cannot be."""
    if INSTALLED.exists():
        return None
    say(f"installing PyFlink (apache-flink {FLINK_VERSION}) into {VENV.relative_to(ROOT)}")
    steps = [[sys.executable, "-m", "venv", str(VENV)],
             [str(PYTHON), "-m", "pip", "install", "-q", f"apache-flink=={FLINK_VERSION}"]]
    for command in steps:
        try:
            done = subprocess.run(command, capture_output=True, text=True, check=False,
                                  timeout=SETUP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return f"{' '.join(command[:4])} took over {SETUP_TIMEOUT_S}s"
        if done.returncode != 0:
            return f"{' '.join(command[:4])} failed:\n{(done.stdout + done.stderr)[-3000:]}"
    INSTALLED.touch()
    return None


def fetch_connector() -> str | None:
    """Flink's Kafka SQL connector jar from Maven Central, once (Maven copies it into a
    folder beside .cache/flink, renamed into place once complete); the error text if not."""
    if JAR.exists():
        return None
    mvn = shutil.which("mvn")
    if mvn is None:
        return "Maven (mvn) is missing: Flink's Kafka connector cannot be fetched"
    say(f"fetching {CONNECTOR} into {JAR_DIR.relative_to(ROOT)}")
    partial = CACHE / f"flink.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    command = [mvn, "-q", "-B", "-Dstyle.color=never", f"{DEPENDENCY_PLUGIN}:copy",
               f"-Dartifact={CONNECTOR}", f"-DoutputDirectory={partial}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              timeout=SETUP_TIMEOUT_S, cwd=CACHE)
    except subprocess.TimeoutExpired:
        return f"mvn did not fetch {CONNECTOR} in {SETUP_TIMEOUT_S}s"
    if done.returncode != 0 or not (partial / JAR.name).exists():
        shutil.rmtree(partial, ignore_errors=True)
        return f"mvn could not fetch {CONNECTOR}:\n{(done.stdout + done.stderr)[-3000:]}"
    shutil.rmtree(JAR_DIR, ignore_errors=True)
    partial.rename(JAR_DIR)
    return None


def prepare() -> str | None:
    """PyFlink and the connector, fetched the first time; the error text if they cannot be."""
    if shutil.which("java") is None:
        return "java is missing: the Flink peer cannot run"
    CACHE.mkdir(exist_ok=True)
    return install_pyflink() or fetch_connector()


def run_flink(ctx: BenchContext, run_index: int) -> RunResult:
    """Flink SQL: orderstream's job as Flink SQL (bench/flink/job.sql), exactly-once on Kafka."""
    exactly_once = ctx.broker_kind == "kafka"
    label = "Flink SQL" + (", exactly-once" if exactly_once else ", at-least-once")
    error = prepare()
    if error:
        return failed(error)
    run_dir, config = new_run(ctx, "flink", exactly_once)
    flink_log, tmp = run_dir / "flink.log", run_dir / "tmp"
    tmp.mkdir()
    env = {**os.environ, **config.to_env(), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
           "BENCH_FLINK_JARS": JAR.as_uri(), "BENCH_FLINK_LOG": str(flink_log),
           # PyFlink's gateway JVM: its log configuration and folder, and a temporary folder
           # removed with the bench's (Flink unpacks a 21 MB jar there per run, and leaves it)
           "LOG4J_PROPERTIES": str(LOG4J), "FLINK_LOG_DIR": str(run_dir),
           "JVM_ARGS": f"-Djava.io.tmpdir={tmp}"}
    asyncio.run(create_outputs(ctx.broker, config.group, ctx.partitions))
    result = run_peer(ctx, run_index, label, config, [str(PYTHON), str(DRIVER)], env,
                      run_dir / "driver.log", LatestCounts())
    status = read_status(config.status_path) or {}
    result.extra.update(flink_log=str(flink_log), exactly_once=exactly_once,
                        versions={"apache-flink": FLINK_VERSION,
                                  "flink-sql-connector-kafka": CONNECTOR_VERSION},
                        tasks_running_after_first_fetch_s=status.get("tasks_running_after_s"))
    return result
