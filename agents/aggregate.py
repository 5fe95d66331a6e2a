"""The aggregate agent: orders grouped by buyer in; RocksDB state, buyer-totals, the print
sink, window-results and orders-late out.

Per partition and batch: skip orders already applied (by source offset), fold the rest,
each by its own clock, send the changelog record and the late orders, and once the broker
has them, commit the store; then publish the batch's buyer-totals and print them (a
restart publishes the last batch's again from the store: `o|totals`, the outbox). Then
close the windows the committed watermark passed: publish them to window-results and
commit that too. The batch is acked last. A timer moves the watermark by the idle rule.
"""

import contextlib
import sys
from typing import Any

import faust

from agents.batches import NOT_OURS, commit_durably, consumed_offsets, each_batch
from agents.schedule import every
from app.runtime import BrokerLost, Runtime, wall_ms
from app.transport import batch_topic
from core.aggregate import BatchResult
from core.aggregation import (
    READ_KEY,
    AggregateConfig,
    Clock,
    apply_batch,
    close_windows,
    outbox,
)
from core.late import late_value
from core.shuffle import Shuffled, decode_shuffle
from core.sinks import buyer_total_records, print_lines
from tables.changelog import Fenced, Outgoing
from tables.store import PartitionStore

TIMER_INTERVAL_S = 0.5
PUBLISHED = "totals-published"  # local: the outbox number whose buyer-totals went out


def register_aggregate(app: faust.App, runtime: Runtime) -> None:
    """Declare the agent on the internal by-buyer topic, and its timer."""
    topic = batch_topic(app, runtime.names.by_buyer)

    @app.agent(topic, name="aggregate")
    async def aggregate(stream: faust.StreamT[Any]) -> None:
        await each_batch(stream, runtime, lambda partition, items, _: apply_partition(
            runtime, partition, items), lambda record: decode_shuffle(record.value, record.offset))

    @every(app, TIMER_INTERVAL_S)
    async def aggregate_watermarks() -> None:
        # a loss: the runtime stops the worker; fenced: the group assigns the partition anew
        with contextlib.suppress(BrokerLost, Fenced):
            for partition in sorted(runtime.aggregates.read_only_view()):
                await apply_partition(runtime, partition, [])


def aggregate_config(runtime: Runtime) -> AggregateConfig:
    settings = runtime.settings
    return AggregateConfig(settings.windows, settings.allowed_lateness,
                           settings.window_retention, runtime.dropped_windows,
                           carriers=runtime.partitions[runtime.names.orders],
                           idle_timeout_ms=settings.idle_timeout)


async def apply_partition(runtime: Runtime, partition: int, items: list[Shuffled]) -> str | None:
    """Apply one partition's repartition records (none: only move time on) to its store,
    exactly once per order."""
    config = aggregate_config(runtime)
    await runtime.settled()
    async with runtime.aggregates.holding(partition) as store:
        if store is None:  # revoked meanwhile: never committed, the owner applies these
            return NOT_OURS
        if not items:
            runtime.check_backed()
        else:
            read = store.get(READ_KEY)
            runtime.check_read(runtime.names.by_buyer, partition, -1 if read is None else int(read))
        if partition not in runtime.totals_sent:
            await _resend_outbox(runtime, partition, store)
        now_ms = wall_ms()
        result = apply_batch(items, config, store.get_many,
                             Clock(now_ms, runtime.all_idle_since.get(partition)))
        _track_idle(runtime, partition, result, now_ms)
        if result.changed:
            transactional = runtime.producer.transactional
            # with transactions buyer-totals commit with the batch; without, they go out
            # once it is committed, from the store (the outbox covers a crash between)
            totals = _totals(runtime, partition, result.total_changes) if transactional else []
            consumed = (consumed_offsets(runtime.names.by_buyer, partition, items[-1].offset)
                        if items and items[-1].offset >= 0 else None)
            await commit_durably(runtime, runtime.aggregates, partition, store,
                                 result.updates, _late(runtime, result) + totals, consumed)
            if not transactional:
                await runtime.producer.send_all(_totals(runtime, partition,
                                                        result.total_changes))
            _print_changes(runtime, result.total_changes)
            if result.outbox_sequence:
                store.set_local(PUBLISHED, str(result.outbox_sequence))
            _count(runtime, result)
        await _close(runtime, config, partition, store)
    return None


async def _close(runtime: Runtime, config: AggregateConfig, partition: int,
                 store: PartitionStore) -> None:
    closing = close_windows(config, store.get_many, store.scan)
    if closing.changed:
        await commit_durably(runtime, runtime.aggregates, partition, store, closing.updates,
                             [(runtime.names.window_results, key, value, None)
                              for key, value in closing.finals])


async def _resend_outbox(runtime: Runtime, partition: int, store: PartitionStore) -> None:
    """After a crash between a commit and its buyer-totals, or a restore elsewhere: the
    last batch's buyers' totals again, from the store (never an older value)."""
    sequence, changes = outbox(store.get_many)
    if (sequence and store.get_local(PUBLISHED) != str(sequence)
            and not runtime.producer.transactional):  # committed with their batch there
        await runtime.producer.send_all(_totals(runtime, partition, changes))
        store.set_local(PUBLISHED, str(sequence))
    runtime.totals_sent.add(partition)


def _track_idle(runtime: Runtime, partition: int, result: BatchResult, now_ms: int) -> None:
    """Since when every channel of the partition has been idle (the idle rule's clock)."""
    if result.all_idle:
        runtime.all_idle_since.setdefault(partition, now_ms)
    else:
        runtime.all_idle_since.pop(partition, None)


def _totals(runtime: Runtime, partition: int, changes: list[Any]) -> list[Outgoing]:
    """buyer-totals records of the changed buyers."""
    names = runtime.names
    # A buyer's buyer-totals partition is its aggregation partition when the counts agree
    # (both are Kafka's default partitioner on the same key): no hash per record then.
    target = (partition if runtime.partitions[names.buyer_totals]
              == runtime.partitions[names.by_buyer] else None)
    return [(names.buyer_totals, key, value, target)
            for key, value in buyer_total_records(changes)]


def _print_changes(runtime: Runtime, changes: list[Any]) -> None:
    """The print sink, once the batch is committed."""
    if changes and runtime.settings.print_sink:
        _print("\n".join(print_lines(changes)) + "\n")


def _late(runtime: Runtime, result: BatchResult) -> list[Outgoing]:
    settings = runtime.settings
    return [(runtime.names.late, item.key, late_value(
        item.order, f"late: {len(item.missed)} of its windows had closed before it arrived",
        settings.windows, settings.allowed_lateness, missed=item.missed), None)
        for item in result.late]


def _count(runtime: Runtime, result: BatchResult) -> None:
    metrics = runtime.metrics
    metrics.counted.inc(result.counted)
    metrics.late.inc(len(result.late))


def _print(text: str) -> None:
    # The real stdout: faust's worker redirects sys.stdout into its log.
    out = sys.__stdout__ or sys.stdout
    out.write(text)
    out.flush()
