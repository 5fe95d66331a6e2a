"""The ingest agent: orders (and copies rekeyed by order number) in; invalid ones and
conflicts to the DLQ, orders too old to check to orders-late, the rest deduplicated in
the partition's RocksDB store and shuffled by buyer, every record carrying the watermark.

Per partition and batch: skip offsets already applied, decide, send everything the batch
produces together with its changelog record, and only once the broker has it all, commit
the store and ack the batch. A timer renews idle leases and sends watermark-only records
to the channels that are due one (core.watermarks).
"""

import contextlib
from typing import Any

import faust

from agents.batches import NOT_OURS, Peek, commit_durably, consumed_offsets, each_batch
from agents.schedule import every
from app.runtime import BrokerLost, Runtime, wall_ms
from app.transport import batch_topic
from core.ingest import (
    Clock,
    IngestConfig,
    IngestResult,
    RawMessage,
    channel_records,
    ingest_partition,
    may_take,
    next_batch,
)
from core.sources import applied_offsets
from tables.changelog import Fenced, Outgoing
from tables.store import PartitionStore

TIMER_INTERVAL_S = 0.25


def register_ingest(app: faust.App, runtime: Runtime) -> None:
    """Declare the agent on ORDERS_TOPIC and the rekey topic (co-partitioned), and its timer."""
    names = runtime.names
    topic = batch_topic(app, names.orders, names.rekey)

    @app.agent(topic, name="ingest")
    async def ingest(stream: faust.StreamT[Any]) -> None:
        await each_batch(stream, runtime, lambda partition, messages, peek: ingest_one(
            runtime, partition, messages, peek))  # ConsumerRecords serve as RawMessages

    @every(app, TIMER_INTERVAL_S)
    async def ingest_watermarks() -> None:
        # a loss: the runtime stops the worker; fenced: the group assigns the partition anew
        with contextlib.suppress(BrokerLost, Fenced):
            for partition in sorted(runtime.dedup.read_only_view()):
                await ingest_one(runtime, partition, [])  # no batch: no intent to keep


def ingest_config(runtime: Runtime) -> IngestConfig:
    """The ingest step's view of settings and topics."""
    names, settings = runtime.names, runtime.settings
    return IngestConfig(
        orders_topic=names.orders, rekey_topic=names.rekey,
        orders_partitions=runtime.partitions[names.orders],
        buyer_partitions=runtime.partitions[names.by_buyer],
        horizon_ms=settings.dedup_horizon, windows=settings.windows,
        allowed_lateness_ms=settings.allowed_lateness,
        max_future_skew_ms=settings.max_future_skew,
        max_message_bytes=settings.max_message_bytes, dedup=settings.dedup,
    )


async def ingest_one(runtime: Runtime, partition: int, messages: list[RawMessage],
                     peek: Peek | None = None) -> bool | str:
    """Apply one partition's messages (none: only move time on) to its dedup store and send
    what they produce; False when another batch must go first (core.ingest, `m|next`)."""
    await runtime.settled()
    async with runtime.dedup.holding(partition) as store:
        if store is None:  # revoked meanwhile: never committed, the owner processes these
            return NOT_OURS
        take = None
        if not messages:
            runtime.check_backed()
        else:
            source = f"{messages[0].topic}:{messages[0].partition}"
            runtime.check_read(messages[0].topic, messages[0].partition,
                               applied_offsets([source], store.get_many)[source])
            take = may_take(source, messages[-1].offset, store.get_many)
            if not take.now:
                return False
        now_ms = wall_ms()
        if any(m.topic == runtime.names.orders for m in messages):
            runtime.sources.heard(partition, now_ms)
        _check_backlog(runtime, partition, store, messages)
        clock = Clock(now_ms, runtime.sources.lease(partition, now_ms))
        config = ingest_config(runtime)
        result = ingest_partition(partition, messages, config, store.get_many, store.scan,
                                  clock)
        _count(runtime, result)
        outputs = _outputs(runtime, partition, result, clock, config)
        # only a batch that decides copies must be named before its outputs leave: the
        # order of the others changes no decision
        if take is not None and take.name_first and result.decided:
            await commit_durably(runtime, runtime.dedup, partition, store,
                                 next_batch(source, messages[-1].offset), [])
        following = peek() if take is not None and take.name_next and peek else None
        if following is not None:
            result.updates.update(next_batch(*following))  # spares it a commit of its own
        consumed = consumed_offsets(messages[-1].topic, messages[-1].partition,
                                    messages[-1].offset) if messages else None
        if result.updates or (outputs and runtime.producer.transactional):
            await commit_durably(runtime, runtime.dedup, partition, store, result.updates,
                                 outputs, consumed)
        elif outputs:
            await runtime.producer.send_all(outputs)
        return True


def _outputs(runtime: Runtime, partition: int, result: IngestResult, clock: Clock,
             config: IngestConfig) -> list[Outgoing]:
    """Dead letters, late orders, and the records of the channels that have orders or are
    due a watermark."""
    names = runtime.names
    rekeyed, shuffled = channel_records(partition, result, clock, runtime.emitter, config)
    outputs: list[Outgoing] = [(names.dlq, k, v, None) for k, v in result.dead_letters]
    outputs += [(names.late, k, v, None) for k, v in result.late]
    outputs += [(names.rekey, None, v, owner) for owner, v in rekeyed]
    outputs += [(names.by_buyer, None, v, target) for target, v in shuffled]
    return outputs


def _check_backlog(runtime: Runtime, partition: int, store: PartitionStore,
                   messages: list[RawMessage]) -> None:
    """Whether the orders partition has records left to read, after these messages; as a
    gauge and for the idle rule."""
    tp = faust.types.TP(runtime.names.orders, partition)
    highwater = runtime.app.consumer.highwater(tp)
    if highwater is None:
        runtime.sources.backlog(partition, True)
        return
    read = [m.offset for m in messages if m.topic == runtime.names.orders]
    if read:
        last = read[-1]
    else:
        source = f"{runtime.names.orders}:{partition}"
        last = applied_offsets([source], store.get_many)[source]
    lag = max(highwater - last - 1, 0)
    runtime.metrics.lag.labels(tp.topic, str(tp.partition)).set(lag)
    runtime.sources.backlog(partition, lag > 0)


def _count(runtime: Runtime, result: IngestResult) -> None:
    metrics = runtime.metrics
    metrics.processed.inc(result.read)
    metrics.invalid.inc(result.invalid)
    metrics.duplicate.inc(result.duplicates)
    metrics.conflict.inc(result.conflicts)
    metrics.late.inc(result.too_old)
