"""The ingest agent: orders (and copies rekeyed by order number) in; invalid ones and
conflicts to the DLQ, orders too old to check to orders-late, the rest deduplicated in
the partition's RocksDB store and shuffled by buyer.

Per partition and batch: skip offsets already applied, decide, send everything the batch
produces together with its changelog record, and only once the broker has it all, commit
the store and ack the batch.
"""

from typing import Any

import faust

from agents.batches import commit_durably, each_batch
from app.runtime import Runtime
from app.transport import batch_topic
from core.ingest import IngestConfig, IngestResult, RawMessage, ingest_partition


def register_ingest(app: faust.App, runtime: Runtime) -> None:
    """Declare the agent on ORDERS_TOPIC and the rekey topic (co-partitioned)."""
    names = runtime.names
    topic = batch_topic(app, names.orders, names.rekey)

    @app.agent(topic, name="ingest")
    async def ingest(stream: faust.StreamT[Any]) -> None:
        async def handle(partition: int, messages: list[RawMessage]) -> None:
            latest_order_ms = await ingest_one(runtime, partition, messages)
            if messages:
                first = messages[0]
                tp = faust.types.TP(first.topic, first.partition)
                runtime.align(tp, latest_order_ms, backlog=_report_lag(app, runtime, tp,
                                                                       messages[-1].offset))

        await each_batch(stream, runtime, handle)  # ConsumerRecords serve as RawMessages


def ingest_config(runtime: Runtime) -> IngestConfig:
    """The ingest step's view of settings and topics."""
    names, settings = runtime.names, runtime.settings
    return IngestConfig(
        orders_topic=names.orders, rekey_topic=names.rekey,
        orders_partitions=runtime.partitions[names.orders],
        buyer_partitions=runtime.partitions[names.by_buyer],
        horizon_ms=settings.dedup_horizon, windows=settings.windows,
        allowed_lateness_ms=settings.allowed_lateness, dedup=settings.dedup,
    )


async def ingest_one(runtime: Runtime, partition: int,
                     messages: list[RawMessage]) -> int | None:
    """Apply one partition's messages to its dedup store and send what they produce;
    the latest order time read, if any."""
    async with runtime.dedup.holding(partition) as store:
        if store is None:  # revoked meanwhile: the new owner processes these
            return None
        result = ingest_partition(messages, ingest_config(runtime), store.get_many, store.scan)
        _count(runtime, result)
        if result.updates:
            await commit_durably(runtime, runtime.dedup, partition, store, result.updates,
                                 _outputs(runtime, result))
        return result.latest_order_ms


def _outputs(runtime: Runtime, result: IngestResult) -> list[tuple[str, bytes | None, bytes,
                                                                  int | None]]:
    names = runtime.names
    return (
        [(names.dlq, key, value, None) for key, value in result.dead_letters]
        + [(names.late, key, value, None) for key, value in result.late]
        + [(names.rekey, key, value, p) for p, key, value in result.rekeyed]
        + [(names.by_buyer, None, value, p) for p, value in result.shuffled]
    )


def _count(runtime: Runtime, result: IngestResult) -> None:
    metrics = runtime.metrics
    metrics.processed.inc(result.read)
    metrics.invalid.inc(result.invalid)
    metrics.duplicate.inc(result.duplicates)
    metrics.conflict.inc(result.conflicts)
    metrics.late.inc(result.too_old)


def _report_lag(app: faust.App, runtime: Runtime, tp: faust.types.TP, last_offset: int) -> bool:
    """Messages behind the end of the partition after this batch, as a gauge; whether any."""
    highwater = app.consumer.highwater(tp)
    if highwater is None:
        return False
    lag = max(highwater - last_offset - 1, 0)
    runtime.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)
    return lag > 0
