"""The aggregate agent: orders grouped by buyer in; RocksDB state, buyer-totals, the print
sink, window-results and orders-late out.

Per partition and batch: skip orders already applied (by source offset), fold the rest
against the partition's watermark, send the changelog record and every output, and only
once the broker has them, print and commit the store. Then close the windows the
committed watermark passed: publish them to window-results and commit that too. The
batch is acked last.
"""

import sys
from typing import Any

import faust

from agents.batches import commit_durably, each_batch
from app.runtime import Runtime
from app.transport import batch_topic
from core.aggregate import BatchResult, Item
from core.aggregation import AggregateConfig, apply_batch, close_windows
from core.late import late_value
from core.models import Tick
from core.shuffle import decode_item
from core.sinks import buyer_total_records, print_lines


def register_aggregate(app: faust.App, runtime: Runtime) -> None:
    """Declare the agent on the internal by-buyer topic."""
    topic = batch_topic(app, runtime.names.by_buyer)

    @app.agent(topic, name="aggregate")
    async def aggregate(stream: faust.StreamT[Any]) -> None:
        async def handle(partition: int, items: list[Item]) -> None:
            if any(not isinstance(item, Tick) for item in items):
                runtime.idle.heard()
            await apply_partition(runtime, partition, items)

        await each_batch(stream, runtime, handle, lambda record: decode_item(record.value))


def aggregate_config(runtime: Runtime) -> AggregateConfig:
    settings = runtime.settings
    return AggregateConfig(settings.windows, settings.allowed_lateness,
                           settings.window_retention, runtime.dropped_windows)


async def apply_partition(runtime: Runtime, partition: int, items: list[Item]) -> None:
    """Apply one partition's repartition records to its store, exactly once per order."""
    config = aggregate_config(runtime)
    async with runtime.aggregates.holding(partition) as store:
        if store is None:  # revoked meanwhile: the new owner applies these
            return
        result = apply_batch(items, config, store.get_many)
        if result.changed:
            await commit_durably(runtime, runtime.aggregates, partition, store,
                                 result.updates, _outputs(runtime, partition, result))
            if runtime.settings.print_sink and result.total_changes:
                _print("\n".join(print_lines(result.total_changes)) + "\n")
            _count(runtime, result)
        closing = close_windows(config, store.get_many, store.scan)
        if closing.changed:
            await commit_durably(runtime, runtime.aggregates, partition, store,
                                 closing.updates, _outputs(runtime, partition, closing))


def _outputs(runtime: Runtime, partition: int,
             result: BatchResult) -> list[tuple[str, bytes | None, bytes, int | None]]:
    names, settings = runtime.names, runtime.settings
    # A buyer's buyer-totals partition is its aggregation partition when the counts agree
    # (both are Kafka's default partitioner on the same key): no hash per record then.
    totals_partition = (partition if runtime.partitions[names.buyer_totals]
                        == runtime.partitions[names.by_buyer] else None)
    late = [(names.late, item.key, late_value(
        item.order, f"late: {len(item.missed)} of its windows were final before it arrived",
        settings.windows, settings.allowed_lateness, missed=item.missed), None)
        for item in result.late]
    return ([(names.buyer_totals, key, value, totals_partition)
             for key, value in buyer_total_records(result.total_changes)]
            + [(names.window_results, key, value, None) for key, value in result.finals]
            + late)


def _count(runtime: Runtime, result: BatchResult) -> None:
    metrics = runtime.metrics
    metrics.counted.inc(result.counted)
    metrics.late.inc(len(result.late))


def _print(text: str) -> None:
    # The real stdout: faust's worker redirects sys.stdout into its log.
    out = sys.__stdout__ or sys.stdout
    out.write(text)
    out.flush()
