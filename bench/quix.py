"""The Quix Streams run: bench/pipelines/quix_windows.py as a subprocess, timed from outside.

The clock starts when the child consumes its first order (its status file gives that moment
on the shared monotonic clock) and stops when the bench has read N records back from the
totals topic (the job writes one buyer total per order; the bench's consumer reads along,
in batches of at most POLL_S). That is orderstream's span: first order processed to the
N-th whose buyer total is out and acknowledged. Then the child is stopped (SIGTERM: Quix commits and
exits) and, off the clock, the bench reads the input and both output topics back and checks
them against the job computed in plain Python (bench/pipelines/job.py).

On Apache Kafka the bench reads the outputs `read_committed`: with `quix-eos` (Quix's
exactly-once, a transaction per checkpoint) a total counts once its transaction committed,
as orderstream counts an order once its batch committed. (tansu has no transactions.)
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from bench.children import python_module
from bench.harness import (
    POLL_S,
    ROOT,
    BenchContext,
    RunResult,
    failed,
    log_tail,
    new_run,
    progress,
    say,
    start_process,
    stop_child,
)
from bench.pipelines.common import ChildConfig, read_status
from bench.pipelines.job import Expected, results_topic, totals_topic

MODULE = "bench.pipelines.quix_windows"


async def from_beginning(consumer: AIOKafkaConsumer, topic: str, partitions: int) -> bool:
    """Assign the `partitions` partitions of `topic` from their beginning; False while the
    broker does not know the topic yet."""
    if topic not in await consumer.topics():
        return False
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    return True


def group_less_consumer(broker: str, kind: str = "tansu") -> AIOKafkaConsumer:
    """A consumer of the bench's own, in no group, committing nothing; on Kafka it reads
    committed records only."""
    isolation = "read_uncommitted" if kind == "tansu" else "read_committed"
    return AIOKafkaConsumer(bootstrap_servers=broker, group_id=None, enable_auto_commit=False,
                            isolation_level=isolation)


class Records:
    """Orders counted from the totals read back, one total per order (Quix): records
    counted as they arrive, not decoded. tansu's end offsets cannot stand in for the count:
    its ListOffsets answers about half of a partition's real end offset."""

    def __init__(self) -> None:
        self.counted = 0

    def add(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        self.counted += len(records)


class LatestCounts:
    """Orders counted from totals that coalesce (a KTable emits the latest per key at each
    commit): the latest count of every buyer, added up."""

    def __init__(self) -> None:
        self.latest: dict[bytes | None, int] = {}
        self.counted = 0

    def add(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        for record in records:
            count = orjson.loads(record.value or b"{}")["count"]
            self.counted += count - self.latest.get(record.key, 0)
            self.latest[record.key] = count


async def watch_totals(process: subprocess.Popen[bytes], config: ChildConfig,
                       ctx: BenchContext, label: str,
                       tally: Records | LatestCounts | None = None) -> tuple[float, float] | str:
    """(first order consumed, totals of N orders read back) on the monotonic clock; the
    error text if the child dies or nothing moves for the stall timeout. `tally` counts
    the orders the totals read back stand for (Records unless given)."""
    consumer = group_less_consumer(ctx.broker, ctx.broker_kind)
    await consumer.start()
    counter = tally or Records()
    topic, assigned, last_change = totals_topic(config.group), False, time.monotonic()
    try:
        with progress(label, ctx.orders) as report:
            while True:
                if assigned:
                    batches = await consumer.getmany(timeout_ms=int(POLL_S * 1000))
                    for records in batches.values():
                        counter.add(records)
                else:
                    assigned = await from_beginning(consumer, topic, config.partitions)
                    batches = {}
                now = time.monotonic()
                status = read_status(config.status_path) or {}
                totals = counter.counted
                if totals >= ctx.orders:
                    if status.get("first_consumed_at") is None:
                        return "every total is out, but the child never said it started"
                    report(totals, "every total out")
                    return status["first_consumed_at"], now
                if process.poll() is not None:
                    return f"exited with code {process.returncode} before finishing"
                if batches:
                    last_change = now
                elif now - last_change > ctx.stall_timeout_s:
                    return f"no progress for {ctx.stall_timeout_s:.0f}s ({totals:,} totals out)"
                report(totals, "reading" if status else "starting")
                if not assigned:
                    await asyncio.sleep(POLL_S)
    finally:
        await consumer.stop()


async def read_topic(broker: str, topic: str, partitions: int, kind: str = "tansu",
                     quiet_ms: int = 2000) -> list[tuple[bytes | None, Any]]:
    """Every record of `topic` (no longer written to), as (key, decoded JSON value): read
    until nothing came for `quiet_ms` (tansu's end offsets are unreliable, see above)."""
    consumer = group_less_consumer(broker, kind)
    await consumer.start()
    try:
        records: list[tuple[bytes | None, Any]] = []
        if not await from_beginning(consumer, topic, partitions):
            return records
        while batches := await consumer.getmany(timeout_ms=quiet_ms):
            for batch in batches.values():
                records.extend((r.key, orjson.loads(r.value)) for r in batch)
        return records
    finally:
        await consumer.stop()


async def check_outputs(ctx: BenchContext, config: ChildConfig) -> dict[str, tuple[int, int]]:
    """The run's outputs against the job over the input: (got, expected) per check."""
    kind = ctx.broker_kind
    orders = [value for _, value in await read_topic(ctx.broker, ctx.topic, ctx.partitions,
                                                     kind)]
    expected = Expected.of(orders)
    latest: dict[str, list[int]] = {}
    for key, value in await read_topic(ctx.broker, totals_topic(config.group), config.partitions,
                                       kind):
        latest[(key or b"").decode()] = [value["count"], value["cents"]]
    results: dict[tuple[str, int, str], list[int]] = {}
    twice = 0
    for key, value in await read_topic(ctx.broker, results_topic(config.group),
                                       config.partitions, kind):
        row = (value["window"], value["start"], (key or b"").decode())
        twice += row in results
        results[row] = [value["count"], value["sum"], value["min"], value["max"]]
    right = sum(expected.windows.get(row) == stats for row, stats in results.items())
    return {
        "orders in the input": (len(orders), ctx.orders),
        "buyers whose latest total is right": (
            sum(latest.get(b) == t for b, t in expected.totals.items()), len(expected.totals)),
        "sum of the latest buyer counts": (sum(c for c, _ in latest.values()), ctx.orders),
        "closed windows with the right count, sum, min, max": (right, len(results)),
        "closed windows written twice": (twice, 0),
    }


def run_quix(ctx: BenchContext, run_index: int, exactly_once: bool = False) -> RunResult:
    """Quix Streams: orderstream's job as Quix's docs write it (bench/pipelines/quix_windows.py),
    at-least-once (Quix's default) or exactly-once."""
    label = "Quix Streams, exactly-once" if exactly_once else "Quix Streams"
    run_dir, config = new_run(ctx, "quix-eos" if exactly_once else "quix", exactly_once)
    env = {**os.environ, **config.to_env(), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    return run_peer(ctx, run_index, label, config, python_module(MODULE), env,
                    run_dir / "child.log", Records(), child_checks=True)


def run_quix_exactly_once(ctx: BenchContext, run_index: int) -> RunResult:
    """The same with `processing_guarantee="exactly-once"` (Kafka transactions)."""
    return run_quix(ctx, run_index, exactly_once=True)


def run_peer(ctx: BenchContext, run_index: int, label: str, config: ChildConfig,
             command: list[str], env: dict[str, str], log_path: Path,
             tally: Records | LatestCounts, child_checks: bool = False) -> RunResult:
    """One peer's run, timed from outside (watch_totals), then stopped; its outputs checked
    off the clock (`child_checks`: also the child's own final status and checks)."""
    name = f"{label} run {run_index + 1}"
    launched = time.monotonic()
    process = start_process(command, env, log_path)
    try:
        outcome = asyncio.run(watch_totals(process, config, ctx, name, tally))
    finally:
        code = stop_child(process)
    result = peer_result(outcome, ctx, config, launched, child_checks)
    result.extra.update(group=config.group, log=str(log_path), exit_code=code)
    if not result.ok:
        say(f"{name} failed: {result.error}; log {log_path}:\n{log_tail(log_path)}")
    return result


def peer_result(outcome: tuple[float, float] | str, ctx: BenchContext, config: ChildConfig,
                launched: float, child_checks: bool) -> RunResult:
    """orders/s over the watched span, if every output check holds (and with
    `child_checks`, the child's final status and its own checks). Its note: how long the
    child took from its start to its first order (Quix creates its topics, then joins the
    group: on tansu that takes 25-36 s; a JVM peer starts its runtime), outside the span."""
    if isinstance(outcome, str):
        return failed(outcome)
    started, done = outcome
    status = read_status(config.status_path) or {}
    checks = {name: tuple(pair) for name, pair in status.get("checks", {}).items()}
    checks.update(asyncio.run(check_outputs(ctx, config)))
    extra = {"checks": checks, "consumed": status.get("consumed"),
             "first_order_after_s": started - launched}
    wrong = [f"{name}: {got:,}, expected {expected:,}"
             for name, (got, expected) in checks.items() if got != expected]
    unfinished = child_checks and not status.get("finished")
    if status.get("error") or wrong or unfinished:
        return failed(status.get("error") or "; ".join(wrong)
                      or "the child wrote no final status", **extra)
    seconds = done - started
    return RunResult(orders_per_s=ctx.orders / seconds, seconds=seconds, extra=extra,
                     note=f"first order after {started - launched:.1f}s")
