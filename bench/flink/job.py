"""The Flink SQL peer's driver: bench/flink/job.sql run by PyFlink in a local mini-cluster.

    .cache/flink-venv/bin/python bench/flink/job.py   # settings from BENCH_* (ChildConfig)

Run by bench/flink.py with the interpreter of its own venv (apache-flink is no dependency of
orderstream) and PYTHONPATH at the repository root, for bench.pipelines (common and job,
which need the standard library only). PyFlink starts a JVM (its gateway) that runs the job
in a Flink mini-cluster; no Python code runs per order (no UDF): Python only submits the SQL.

It writes the bench's status file, as the Kafka Streams app does: `first_consumed_at`, the
moment on the monotonic clock that Flink's Kafka source set its first partition's position
(the line FIRST_FETCH of the JVM's log, which starts with System.nanoTime()), after which it
fetches the first orders; then it waits for the job, which runs until the bench stops it.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from pathlib import Path
from string import Template
from typing import Any

from pyflink.table import (  # type: ignore[import-not-found, unused-ignore]
    EnvironmentSettings,
    TableEnvironment,
)

from bench.pipelines.common import ChildConfig, write_status
from bench.pipelines.job import HOP, results_topic, totals_topic

HERE = Path(__file__).resolve().parent
SQL = HERE / "job.sql"
# Flink's settings for the job; the rest are Flink's defaults
FLINK_CONF = {
    # state in RocksDB, as the seed's job keeps it, and Kafka Streams and orderstream do
    # (Flink's default is a heap backend; BENCH_FLINK_STATE=hashmap runs with it)
    "state.backend.type": os.environ.get("BENCH_FLINK_STATE", "rocksdb"),
    # the machine's 2 cores, as the Kafka Streams app's 2 stream threads
    "parallelism.default": "2",
    # exactly-once sinks commit their Kafka transaction when a checkpoint completes, so a
    # total is visible (read_committed) only then: Flink's Kafka docs say to choose the
    # interval for the latency that allows. 1 s: between Kafka Streams' 100 ms commits
    # under exactly-once and Quix's 5 s checkpoints.
    "execution.checkpointing.interval": "1 s",
    "execution.checkpointing.mode": "EXACTLY_ONCE",
    # windows in UTC, as the bench's expected results (epoch-aligned)
    "table.local-time-zone": "UTC",
    # Flink's performance tuning docs' mini-batch aggregation (their values): the buyer
    # totals emit the latest per buyer per batch (and at each checkpoint), as Kafka
    # Streams' record cache does per commit, and aggregate in two phases
    "table.exec.mini-batch.enabled": "true",
    "table.exec.mini-batch.allow-latency": "5 s",
    "table.exec.mini-batch.size": "5000",
}
# Kafka's producer transaction timeout: the broker's maximum (transaction.max.timeout.ms,
# 15 min), far above a checkpoint; the connector's default (1 h) would be refused
TRANSACTION_TIMEOUT_MS = 15 * 60 * 1000
# The JVM's log lines start with System.nanoTime() (bench/flink/log4j2.properties).
# kafka-clients' SubscriptionState (shaded into the connector), at INFO: a source reader's
# consumer has its first partition's position, from which it fetches next.
FIRST_FETCH = re.compile(r"^(\d+) .*SubscriptionState - .*Resetting offset for partition ")
# The job master's task transitions: every task scheduled, then each one running.
TASK = re.compile(r"^(\d+) .*executiongraph\.ExecutionGraph - .* switched from "
                  r"(CREATED to SCHEDULED|INITIALIZING to RUNNING)\.$")
LOG_POLL_S = 0.02


def statements(text: str) -> list[str]:
    """The statements of a SQL file, `--` comment lines dropped: each ends with a line ending
    in `;`, except EXECUTE STATEMENT SET ... BEGIN ... END;, which ends at its END;."""
    found: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.lstrip().startswith("--") or not (line.strip() or current):
            continue
        current.append(line)
        block = current[0].lstrip().upper().startswith("EXECUTE STATEMENT SET")
        if line.rstrip().endswith(";") and (not block or line.strip().upper() == "END;"):
            found.append("\n".join(current).strip().removesuffix(";"))
            current = []
    return found


def day_to_second(ms: int) -> str:
    """A DAY TO SECOND(3) interval literal's text: 259999 -> '0 00:04:19.999'."""
    seconds, ms = divmod(ms, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return f"{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{ms:03d}"


def settings(config: ChildConfig) -> dict[str, str]:
    """The SQL file's $names."""
    grace_ms = config.event_span_ms + HOP.size_ms  # as the peers' (quix_windows.grace_ms)
    return {
        "broker": config.broker, "input_topic": config.topic, "group": config.group,
        "totals_topic": totals_topic(config.group), "results_topic": results_topic(config.group),
        "watermark_delay": day_to_second(grace_ms),
        "delivery_guarantee": "exactly-once" if config.exactly_once else "at-least-once",
        "transaction_timeout_ms": str(TRANSACTION_TIMEOUT_MS),
    }


def table_environment(config: ChildConfig) -> Any:
    """A streaming TableEnvironment on a local mini-cluster: FLINK_CONF, the connector jar
    (BENCH_FLINK_JARS), checkpoints in the run's state folder."""
    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = env.get_config()
    for key, value in FLINK_CONF.items():
        conf.set(key, value)
    conf.set("pipeline.jars", os.environ["BENCH_FLINK_JARS"])
    conf.set("execution.checkpointing.dir", (config.state_dir / "checkpoints").as_uri())
    conf.set("pipeline.name", config.group)
    return env


class LogWatch:
    """What the JVM's log says about the job's start: the first fetch's moment and when its
    last task was running, on the monotonic clock (seconds)."""

    def __init__(self) -> None:
        self.first_fetch: float | None = None
        self.all_running: float | None = None
        self.scheduled = self.running = 0

    def line(self, line: str) -> bool:
        """Take one log line; True if it told something new."""
        if self.first_fetch is None and (found := FIRST_FETCH.match(line)):
            self.first_fetch = int(found[1]) / 1e9
            return True
        if (found := TASK.match(line)) is None:
            return False
        if found[2].startswith("CREATED"):
            self.scheduled += 1
            return False
        self.running += 1
        if self.running == self.scheduled:
            self.all_running = int(found[1]) / 1e9
            return True
        return False

    def status(self) -> dict[str, Any]:
        """The status file: `first_consumed_at` starts the bench's clock."""
        document: dict[str, Any] = {"first_consumed_at": self.first_fetch,
                                    "all_tasks_running_at": self.all_running}
        if self.first_fetch is not None and self.all_running is not None:
            document["tasks_running_after_s"] = self.all_running - self.first_fetch
        return document


def watch_log(log: Path, status: Path, stop: threading.Event) -> None:
    """Follow the log, writing the status each time it tells something new, until it has
    told both moments."""
    watch, offset, pending = LogWatch(), 0, ""
    while not stop.is_set():
        try:
            with open(log, encoding="utf-8", errors="replace") as handle:
                handle.seek(offset)
                pending += handle.read()
                offset = handle.tell()
        except FileNotFoundError:
            pass
        *lines, pending = pending.split("\n")
        told = False
        for line in lines:
            told = watch.line(line) or told
        if told:
            write_status(status, watch.status())
            if watch.first_fetch is not None and watch.all_running is not None:
                return
        time.sleep(LOG_POLL_S)


def main() -> int:
    config = ChildConfig.from_env()
    config.state_dir.mkdir(parents=True, exist_ok=True)
    names = settings(config)
    *definitions, job = [Template(statement).substitute(names)
                         for statement in statements(SQL.read_text())]
    env = table_environment(config)
    for statement in definitions:
        env.execute_sql(statement)
    stop = threading.Event()
    watcher = threading.Thread(target=watch_log, daemon=True, args=(
        Path(os.environ["BENCH_FLINK_LOG"]), config.status_path, stop))
    watcher.start()
    result = env.execute_sql(job)
    print(f"submitted job {result.get_job_client().get_job_id()}", flush=True)
    try:
        result.wait()  # until the bench stops it: the source is unbounded
    except Exception as error:  # the job failed: the bench reports the log
        stop.set()
        print(f"the Flink job failed: {error}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
