"""`make bench`: orders/s of orderstream beside the ceiling, its peer and faust itself, on the
same pre-produced orders.

What it measures, in one invocation:

1. Starts its own broker on free ports; it is always stopped at the end, also on Ctrl-C or
   SIGTERM. `--broker` says which (the results say it too):
   - `tansu` (the default, what `make bench` runs): the embedded broker, in memory, without
     transactions; orderstream runs with EMBEDDED_BROKER=1 as `make run` does.
   - `kafka`: Apache Kafka 4.1.1, one KRaft node (broker and controller in one JVM, data on
     disk in the bench's temporary directory), from the jars tests/kafka.py caches in
     .cache/kafka (Java 17+ and Maven fetch them the first time; without them the bench
     says why in one line and exits 1). orderstream runs as on any broker but tansu: every
     batch is a Kafka transaction; with the suite's group timeouts (10 s session, 1 s
     heartbeat, 10 s rebalance: bench.harness.KAFKA_GROUP_TIMEOUTS).
   - `both`: all of it on tansu, then all of it on Kafka (never both brokers at once), one
     table each, with the same orders.
2. Creates a topic (`--partitions`, 4 by default) and pre-produces N seeded orders into it
   (`core.datagen`, seed 1, order times from 2026-11-24T10:00:00Z at 1000 rows/s).
3. Runs the pipelines of `PIPELINES` against that same topic, `--runs` times each (3 by
   default), interleaved (run 1 of each, then run 2 of each, ...). Each verifies its result;
   a run whose result does not add up to N is reported as failed, never as a rate.
   - `raw`, "raw aiokafka consume + decode", the baseline: one consumer without a group,
     assigned to every partition from the beginning, `getmany` + `orjson.loads` of each value;
     timed from the assignment to the N-th record (timing from the first record would leave
     out the first fetches, up to 1 MiB per partition, and overstate the ceiling).
   - `quix`, "Quix Streams: the same job" (the peer; bench/pipelines/quix_windows.py, a
     subprocess with its own consumer group, state dir and output topics): orderstream's
     results written the way Quix's docs write them: event time from `order_time` (a
     timestamp extractor), a projection, `group_by` buyer, then three branches: a stateful
     apply keeping each buyer's count and sum of cents, to a buyer-totals topic (one record
     per order), and `.tumbling_window(10 s)` and `.hopping_window(1 min, 10 s)` with
     `.agg(count, sum, min, max).final()` to a window-results topic. Quix's defaults
     otherwise (at-least-once, 5 s checkpoints). The windows' grace is the input's whole
     event-time span: Quix has no watermarks, and over this pre-produced input it reads the
     partitions so unevenly that a 5 s or 60 s grace dropped most orders as late; so no
     window closes during the run. Timed by the bench (bench/quix.py) from the child's first
     consumed order to the moment the bench has read all N buyer totals back from the
     topic; then, off the clock, the totals and any closed windows are checked against the
     job computed in plain Python (bench/pipelines/job.py), and no (order, window) may have
     been dropped as late. Quix's start-up (topic creation and the group join, 25-36 s on
     tansu) is outside the span, as orderstream's is. tansu reports no `retention.ms` in
     topic configs, which Quix needs to derive its internal topics' configs: on tansu only,
     the pipeline defaults it to Kafka's (7 days); on Kafka Quix runs with its own topic
     manager. On Kafka the bench reads the outputs `read_committed`.
   - `quix-eos`, "Quix Streams, exactly-once" (Kafka only): the same with Quix's
     `processing_guarantee="exactly-once"` (a Kafka transaction per 5 s checkpoint, so a
     total is counted once its checkpoint committed), the peer of orderstream's transactions.
   - `flink`, "Flink SQL: the same job" (bench/flink.py): the job as Flink SQL
     (bench/flink/job.sql: a Kafka JSON source with a watermark on `order_time`, a GROUP BY
     buyer into an upsert-kafka totals table, TUMBLE and HOP window TVFs into the results
     topic), run by PyFlink (apache-flink 2.2.1 in .cache/flink-venv, with Maven Central's
     flink-sql-connector-kafka 5.0.0-2.2 in .cache/flink, both fetched on first use) in a
     local mini-cluster, parallelism 2, state in RocksDB (`BENCH_FLINK_STATE=hashmap`: on
     the heap, Flink's default), 1 s checkpoints, mini-batch aggregation. On Kafka
     both sinks are exactly-once (a transaction per checkpoint); on tansu at-least-once.
     Its watermark's delay is the peers' grace, so no window closes during the run. Timed
     from the moment its Kafka source has its first partition's position (a JVM log line
     stamped on the monotonic clock) to committed totals whose latest counts add up to N.
   - `faust-tables`, "idiomatic faust (Tables per order)" (bench/pipelines/faust_tables.py, a
     `faust -A ... worker` subprocess, RocksDB store on rocksdict): Records, group_by buyer,
     three faust Tables (buyer totals, `tumble:10s`, `hop:1m/10s`) written once per order;
     the tables' counts must add up to N (6N for the hop).
   - `faust-bare`, "bare faust agent (orjson decode + count)" (bench/pipelines/faust_bare.py):
     the floor of faust's per-event path, with the same faust settings (tansu-friendly group
     timeouts, `producer_linger` as orderstream's; bench/pipelines/faust_app.py).
   These two are timed by the subprocess itself, from the first order it consumed to the
   N-th it counted, and report through a status file (bench/pipelines/common.py).
   - `orderstream`, "orderstream end to end": a real `faust -A app worker -l warn` subprocess
     with the default configuration except `PRINT_SINK=0`, a fresh APP_ID and DATA_DIR per
     run; `/metrics` is polled every 50 ms, the clock starts when `orders_processed_total`
     first is > 0 and stops when `orders_counted_total` reaches N; afterwards the buyer counts
     of `/buyers` must add up to N. Its time to `/ready` is recorded as well.
   - `orderstream-x2`, `orderstream-x3` (scaling, skipped with `--no-scaling`): the same with
     2 and 3 workers of one APP_ID, each with its own DATA_DIR and API port, started together;
     timed from the first order processed on any worker until the sum of `counted` over the
     workers reaches N (bench/orderstream.py).
   - `orderstream-notxn`, "orderstream, no transactions" (Kafka only): orderstream with
     its transactions turned off, so that `orderstream` / `orderstream-notxn` is what they
     cost: KAFKA_TRANSACTIONS=off where orderstream has that setting, else EMBEDDED_BROKER=1
     against Kafka, which also stops the repartition topics' purge (a DeleteRecords every
     30 s) and changes start-up checks (bench/orderstream.py says which); the group
     timeouts are set explicitly, the same as `orderstream`'s. The run's note says which
     setting it used.
   - `orderstream-nodedup`, "orderstream, DEDUP=0" runs only when `--only` names it.
   A pipeline for Kafka only is skipped on tansu, also when `--only` names it.
4. Prints a table per broker (orders/s median, ratio to the baseline and to the peer, every
   run), the issue's checks computed from the medians (orderstream >= 5x idiomatic faust,
   >= 0.75x the bare faust agent; goal >= 1.5x Quix Streams: pass, miss or n/a each) and the
   ratios that are no checks (with / without transactions; with `both`, Kafka / tansu per
   pipeline), and writes the same as JSON to `bench/results/bench-<UTC timestamp>.json`,
   every row and check naming its broker, with the CPU count and versions.

Run it:

    make bench                      # N=200000 orders, 4 partitions, 3 runs, every pipeline, tansu
    make bench N=20000 BENCH_ARGS="--runs 1 --no-scaling"
    make bench BENCH_ARGS="--broker kafka"     # on Apache Kafka, with quix-eos, orderstream-notxn
    make bench BENCH_ARGS="--broker both --only raw,quix,orderstream"
    .venv/bin/python scripts/bench.py --orders 20000 --runs 1
    .venv/bin/python scripts/bench.py --orders 20000 --runs 1 --only raw,orderstream
    .venv/bin/python scripts/bench.py --broker kafka --only raw,orderstream,orderstream-notxn

idiomatic faust is by far the slowest (140-200 orders/s measured here on 2 shared cores: 8
table writes per order, each its own changelog record), so at N=200000 each of its runs takes
15-25 minutes and dominates `make bench`; leave it out with `--only` when iterating.

N comes from `--orders`, else from the environment variable `N`, else 200000. Quix Streams is
the optional dependency group `bench` (`pip install -e '.[test,bench]'`, which `make bench`
does). The exit code is 0 when every run succeeded, 1 otherwise, 130 on Ctrl-C.

A new pipeline is a function `(BenchContext, run_index) -> RunResult` added to `PIPELINES`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python scripts/bench.py` puts scripts/, not the root, first
    sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402

from bench.children import run_faust_bare, run_faust_tables  # noqa: E402
from bench.flink import run_flink  # noqa: E402
from bench.harness import (  # noqa: E402
    BROKER_KINDS,
    BenchContext,
    Broker,
    BrokerUnavailable,
    Pipeline,
    RunResult,
    broker,
    create_topic,
    failed,
    interrupt_on_stop_signals,
    kafka_runtime,
    progress,
    say,
    versions,
)
from bench.kstreams import run_kstreams  # noqa: E402
from bench.orderstream import (  # noqa: E402
    run_orderstream,
    run_orderstream_without_dedup,
    run_orderstream_without_transactions,
    run_orderstream_workers,
)
from bench.quix import run_quix, run_quix_exactly_once  # noqa: E402
from core.datagen import OrderGenerator, encode  # noqa: E402

DEFAULT_ORDERS = 200_000
DEFAULT_RUNS = 3
START_TIME_MS = int(datetime(2026, 11, 24, 10, tzinfo=UTC).timestamp() * 1000)
ROWS_PER_SECOND = 1000
SEED = 1
RESULTS_DIR = ROOT / "bench" / "results"


# --- the input ----------------------------------------------------------------------------

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


def prepare_input(broker: str, topic: str, orders: int, partitions: int, buyers: int
                  ) -> float:
    """Create the topic and fill it; says how fast that went; the seconds it took."""
    async def run() -> float:
        # kept for ever: the orders' times are fixed in the past, and a peer that stamps
        # its own records with event time (Quix's repartition topic copies this topic's
        # retention) would see Kafka delete them at once under a 7-day retention
        await create_topic(broker, topic, partitions, {"retention.ms": "-1"})
        return await produce_orders(broker, topic, orders, buyers)

    seconds = asyncio.run(run())
    say(f"produced {orders:,} orders into {topic} ({partitions} partitions) in {seconds:.1f}s "
        f"({orders / seconds:,.0f}/s)")
    return seconds


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


# --- the pipelines and the checks --------------------------------------------------

BASELINE, PEER = "raw", "quix"
PIPELINES: list[Pipeline] = [
    Pipeline(BASELINE, "raw aiokafka consume + decode", run_raw_aiokafka),
    Pipeline(PEER, "Quix Streams: the same job (totals, tumble 10 s, hop 1 m/10 s)", run_quix),
    Pipeline("quix-eos", "Quix Streams: the same job, exactly-once", run_quix_exactly_once,
             brokers=("kafka",)),
    Pipeline("kstreams", "Kafka Streams: the same job, exactly-once v2", run_kstreams,
             brokers=("kafka",)),
    Pipeline("flink", "Flink SQL: the same job, exactly-once (at-least-once on tansu)",
             run_flink),
    Pipeline("faust-tables", "idiomatic faust (Tables per order)", run_faust_tables),
    Pipeline("faust-bare", "bare faust agent (orjson decode + count)", run_faust_bare),
    Pipeline("orderstream", "orderstream end to end", run_orderstream),
    Pipeline("orderstream-x2", "orderstream ×2 workers", run_orderstream_workers(2),
             scaling=True),
    Pipeline("orderstream-x3", "orderstream ×3 workers", run_orderstream_workers(3),
             scaling=True),
    Pipeline("orderstream-notxn", "orderstream, no transactions",
             run_orderstream_without_transactions, brokers=("kafka",)),
    Pipeline("orderstream-nodedup", "orderstream, DEDUP=0", run_orderstream_without_dedup,
             default=False),
]


@dataclass(frozen=True)
class Check:
    """`subject` >= `factor` x `other`, on median orders/s; a goal is wished for, not required."""

    subject: str
    other: str
    factor: float
    goal: bool = False

    def evaluate(self, medians: dict[str, float | None]) -> dict[str, Any]:
        """The check's text, the measured ratio and pass / miss (n/a when a median is missing)."""
        names = {p.key: p.name for p in PIPELINES}
        text = (f"{'goal: ' if self.goal else ''}{names[self.subject]} >= "
                f"{self.factor:g}x {names[self.other]}")
        subject, other = medians.get(self.subject), medians.get(self.other)
        ratio = subject / other if subject and other else None
        result = "n/a" if ratio is None else "pass" if ratio >= self.factor else "miss"
        return {"check": text, "ratio": ratio, "result": result, "goal": self.goal}


CHECKS = (Check("orderstream", "faust-tables", 5.0), Check("orderstream", "faust-bare", 0.75),
          Check("orderstream", PEER, 1.5, goal=True))
# Ratios of medians that are no checks: what one choice costs (subject / other).
COMPARISONS = (
    ("orderstream", "orderstream-notxn", "orderstream with transactions / without"),
    ("quix-eos", PEER, "Quix Streams exactly-once / at-least-once"),
    ("orderstream", "quix-eos", "orderstream / Quix Streams exactly-once"),
    ("orderstream", "flink", "orderstream / Flink SQL"),
)


def select_pipelines(only: list[str] | None, scaling: bool, kind: str = "tansu"
                     ) -> list[Pipeline]:
    """The pipelines to run on a broker of `kind`: those `--only` names, else the default
    ones (scaling unless off), less those for another broker. The baseline always runs
    first: every ratio is to it."""
    chosen = [p for p in PIPELINES if kind in p.brokers
              and (p.key in only if only else p.default and (scaling or not p.scaling))]
    if not chosen or chosen[0].key != BASELINE:
        chosen.insert(0, PIPELINES[0])
    return chosen


# --- running, summarising, reporting -------------------------------------------------------

def run_all(ctx: BenchContext, pipelines: list[Pipeline], runs: int
            ) -> dict[str, list[RunResult]]:
    """Every pipeline, `runs` times, interleaved: run 1 of each, then run 2 of each, ..."""
    results: dict[str, list[RunResult]] = {p.key: [] for p in pipelines}
    for run_index in range(runs):
        for pipeline in pipelines:
            result = pipeline.run(ctx, run_index)
            results[pipeline.key].append(result)
            state = (f"{result.orders_per_s:,.0f} orders/s" if result.ok
                     else f"FAILED: {result.error}")
            say(f"{pipeline.name}, run {run_index + 1}/{runs} on {ctx.broker_kind}: {state}")
    return results


def median_rate(results: list[RunResult]) -> float | None:
    """Median orders/s of the successful runs, None when none succeeded."""
    rates = [r.orders_per_s for r in results if r.ok]
    return statistics.median(rates) if rates else None


def ratio(value: float | None, to: float | None) -> float | None:
    """value / to, None when either is missing."""
    return value / to if value is not None and to else None


def summarise(results: dict[str, list[RunResult]], kind: str = "tansu"
              ) -> list[dict[str, Any]]:
    """One row per pipeline run on the broker of `kind`: median, ratios to the baseline and
    the peer, every run."""
    names = {p.key: p.name for p in PIPELINES}
    medians = {key: median_rate(runs) for key, runs in results.items()}
    return [{"broker": kind, "key": key, "pipeline": names[key],
             "median_orders_per_s": medians[key],
             "ratio_to_baseline": ratio(medians[key], medians.get(BASELINE)),
             "ratio_to_peer": ratio(medians[key], medians.get(PEER)),
             "all_ok": all(r.ok for r in runs), "runs": [asdict(r) for r in runs]}
            for key, runs in results.items()]


def by_broker(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The rows of each broker, in the order the brokers ran."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["broker"], []).append(row)
    return grouped


def evaluate_checks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue's checks, from the rows' medians, per broker."""
    checks = []
    for kind, rows_of in by_broker(rows).items():
        medians = {row["key"]: row["median_orders_per_s"] for row in rows_of}
        checks += [{"broker": kind, **check.evaluate(medians)} for check in CHECKS]
    return checks


def evaluate_comparisons(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """COMPARISONS on each broker where both ran, and each pipeline on Kafka / on tansu."""
    found = []
    grouped = by_broker(rows)
    for kind, rows_of in grouped.items():
        medians = {row["key"]: row["median_orders_per_s"] for row in rows_of}
        found += [{"broker": kind, "comparison": text, "subject": subject, "other": other,
                   "ratio": ratio(medians[subject], medians[other])}
                  for subject, other, text in COMPARISONS
                  if subject in medians and other in medians]
    if set(grouped) >= {"tansu", "kafka"}:
        tansu = {row["key"]: row for row in grouped["tansu"]}
        found += [{"broker": "kafka/tansu", "comparison": f"{row['pipeline']}: Kafka / tansu",
                   "subject": row["key"], "other": row["key"],
                   "ratio": ratio(row["median_orders_per_s"],
                                  tansu[row["key"]]["median_orders_per_s"])}
                  for row in grouped["kafka"] if row["key"] in tansu]
    return found


def format_run(run: dict[str, Any]) -> str:
    """One run in the table: its rate, and the pipeline's note when it has one."""
    if not run["ok"]:
        return "FAILED"
    text = f"{run['orders_per_s']:,.0f}"
    return f"{text} ({run['note']})" if run["note"] else text


def format_ratio(value: float | None) -> str:
    """A ratio with 3 decimals, or n/a."""
    return "n/a" if value is None else f"{value:.3f}"


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table: pipeline, orders/s (median), ratios to baseline and peer, per run."""
    header = ("pipeline", "orders/s (median)", "vs baseline", "vs Quix Streams",
              "runs (orders/s)")
    lines = [header] + [(
        row["pipeline"],
        "n/a" if row["median_orders_per_s"] is None else f"{row['median_orders_per_s']:,.0f}",
        format_ratio(row["ratio_to_baseline"]), format_ratio(row["ratio_to_peer"]),
        ", ".join(format_run(run) for run in row["runs"]),
    ) for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def format_checks(checks: list[dict[str, Any]]) -> str:
    """One line per check: pass / miss / n/a, and the measured ratio."""
    def measured(value: float | None) -> str:
        return "not measured" if value is None else f"measured {value:.2f}x"

    return "\n".join(f"{c['result']:>4}  {c['check']} ({measured(c['ratio'])})"
                      for c in checks)


def format_comparisons(comparisons: list[dict[str, Any]]) -> str:
    """One line per comparison: its ratio."""
    return "\n".join(f"{format_ratio(c['ratio']):>6}  {c['comparison']}" for c in comparisons)


def format_report(args: argparse.Namespace, rows: list[dict[str, Any]],
                  checks: list[dict[str, Any]], comparisons: list[dict[str, Any]],
                  brokers: dict[str, dict[str, Any]]) -> str:
    """What is printed: per broker its table, its checks and its comparisons; then the
    comparisons across brokers."""
    parts = []
    for kind, rows_of in by_broker(rows).items():
        mine = [c for c in comparisons if c["broker"] == kind]
        parts.append(
            f"on {brokers[kind]['description']}: {args.orders:,} orders, {args.partitions} "
            f"partitions, {args.runs} run(s), {os.cpu_count()} CPUs\n\n"
            f"{format_table(rows_of)}\n\nchecks (medians):\n"
            f"{format_checks([c for c in checks if c['broker'] == kind])}"
            + (f"\n\nratios (medians):\n{format_comparisons(mine)}" if mine else ""))
    across = [c for c in comparisons if c["broker"] not in brokers]
    if across:
        parts.append(f"across brokers (medians):\n{format_comparisons(across)}")
    return "\n\n".join(parts)


def git_commit() -> str | None:
    """`git rev-parse --short HEAD` of the repository, None when git cannot say."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def report(args: argparse.Namespace, rows: list[dict[str, Any]], checks: list[dict[str, Any]],
           comparisons: list[dict[str, Any]], brokers: dict[str, dict[str, Any]],
           stamp: datetime) -> Path:
    """Write the results, the checks and the machine they came from as JSON; its path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"bench-{stamp:%Y%m%dT%H%M%SZ}.json"
    document = {
        "timestamp": stamp.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "N": args.orders, "partitions": args.partitions, "runs": args.runs,
        "buyers": args.buyers, "broker": args.broker, "brokers": brokers,
        "baseline": BASELINE, "peer": PEER, "results": rows, "checks": checks,
        "comparisons": comparisons,
        "cpu_count": os.cpu_count(), "platform": platform.platform(),
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


def pipeline_keys(text: str) -> list[str]:
    """argparse type: comma-separated keys of PIPELINES."""
    keys = [key.strip() for key in text.split(",") if key.strip()]
    unknown = sorted(set(keys) - {p.key for p in PIPELINES})
    if unknown or not keys:
        raise argparse.ArgumentTypeError(
            f"unknown pipeline {', '.join(unknown) or '(none)'}; "
            f"known: {', '.join(p.key for p in PIPELINES)}")
    return keys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=positive_int, default=None,
                        help=f"orders to produce and process (env N, default {DEFAULT_ORDERS})")
    parser.add_argument("--broker", choices=(*BROKER_KINDS, "both"), default="tansu",
                        help="tansu (embedded, the default), kafka (Apache Kafka, one KRaft "
                             "node: needs Java 17+, and Maven the first time) or both, one "
                             "after the other")
    parser.add_argument("--partitions", type=positive_int, default=4,
                        help="partitions of the input topic (default 4)")
    parser.add_argument("--runs", type=positive_int, default=DEFAULT_RUNS,
                        help="repetitions of every pipeline on the same data, the table shows "
                             f"the median (default {DEFAULT_RUNS})")
    parser.add_argument("--buyers", type=positive_int, default=20,
                        help="distinct buyers in the orders (default 20, as datagen's)")
    parser.add_argument("--stall-timeout", type=float, default=120.0,
                        help="seconds without progress after which a run fails (default 120)")
    parser.add_argument("--only", type=pipeline_keys, default=None, metavar="NAME[,NAME]",
                        help="run only these pipelines (the baseline always runs): "
                             + ", ".join(p.key for p in PIPELINES))
    parser.add_argument("--no-scaling", dest="scaling", action="store_false",
                        help="skip orderstream with 2 and 3 workers")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary directory (worker logs, state) afterwards")
    args = parser.parse_args(argv)
    if args.orders is None:
        try:
            args.orders = positive_int(str(default_orders()))
        except (ValueError, argparse.ArgumentTypeError) as error:
            parser.error(f"environment variable N: {error}")
    return args


def broker_kinds(choice: str) -> list[str]:
    """The brokers of `--broker`, in the order they run."""
    return list(BROKER_KINDS) if choice == "both" else [choice]


def bench_on(args: argparse.Namespace, kind: str, workdir: Path,
             brokers: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """On a broker of `kind`: broker up, input produced, the selected pipelines run, broker
    stopped; the summary rows. What the broker was goes into `brokers`."""
    pipelines = select_pipelines(args.only, args.scaling, kind)
    skipped = sorted(set(args.only or ()) - {p.key for p in pipelines})
    if skipped:
        say(f"on {kind}: skipping {', '.join(skipped)} (Apache Kafka only)")
    say(f"on {kind}: pipelines {', '.join(p.name for p in pipelines)}; "
        f"{args.runs} run(s) each")
    run_dir = workdir / kind
    run_dir.mkdir()
    with broker(kind, run_dir) as started:
        topic = f"bench-orders-{uuid.uuid4().hex[:8]}"
        produce_s = prepare_input(started.bootstrap, topic, args.orders, args.partitions,
                                  args.buyers)
        brokers[kind] = broker_info(started, topic, produce_s)
        ctx = BenchContext(broker=started.bootstrap, topic=topic, orders=args.orders,
                           partitions=args.partitions, workdir=run_dir,
                           stall_timeout_s=args.stall_timeout,
                           event_span_ms=(args.orders - 1) * 1000 // ROWS_PER_SECOND,
                           broker_kind=kind)
        return summarise(run_all(ctx, pipelines, args.runs), kind)


def broker_info(started: Broker, topic: str, produce_s: float) -> dict[str, Any]:
    """What the results say about a broker of the run."""
    return {"description": started.description, "start_s": round(started.start_s, 1),
            "input_topic": topic, "produce_s": round(produce_s, 1), "log": str(started.log_path)}


def bench(args: argparse.Namespace, workdir: Path, brokers: dict[str, dict[str, Any]]
          ) -> list[dict[str, Any]]:
    """Every broker of `--broker` in turn; the summary rows of all."""
    kinds = broker_kinds(args.broker)
    if "kafka" in kinds:
        kafka_runtime()  # fail before any run when Apache Kafka cannot be had
    rows: list[dict[str, Any]] = []
    for kind in kinds:
        rows += bench_on(args, kind, workdir, brokers)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every run succeeded."""
    args = parse_args(argv)
    interrupt_on_stop_signals()
    stamp = datetime.now(UTC).replace(microsecond=0)
    workdir = Path(tempfile.mkdtemp(prefix="orderstream-bench-"))
    keep = args.keep
    try:
        brokers: dict[str, dict[str, Any]] = {}
        rows = bench(args, workdir, brokers)
        ok = all(row["all_ok"] for row in rows)
        keep = keep or not ok  # the worker logs tell why
        checks, comparisons = evaluate_checks(rows), evaluate_comparisons(rows)
        path = report(args, rows, checks, comparisons, brokers, stamp)
        print(f"\n{format_report(args, rows, checks, comparisons, brokers)}\n", flush=True)
        say(f"results written to {path.relative_to(ROOT)}")
        return 0 if ok else 1
    except BrokerUnavailable as why:
        say(str(why))
        return 1
    except KeyboardInterrupt:
        say("interrupted; the broker and the pipelines' processes are stopped")
        return 130
    finally:
        if keep:
            say(f"temporary files (logs, state) kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
