"""The ingest agent: orders in, invalid ones to the DLQ, valid ones shuffled by buyer."""

from typing import Any

import faust

from app.runtime import Runtime
from core.ingest import RawMessage, ingest_batch

BATCH_WAIT_S = 0.05


def register_ingest(app: faust.App, runtime: Runtime) -> None:
    """Declare the agent on ORDERS_TOPIC."""
    topic = app.topic(runtime.names.orders, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")
    settings, names, metrics = runtime.settings, runtime.names, runtime.metrics

    @app.agent(topic, name="ingest")
    async def ingest(stream: faust.StreamT[Any]) -> None:
        # Manual acks: a batch is acked only once everything it produced is on the broker.
        async for events in stream.noack_take(settings.batch_max_orders, within=BATCH_WAIT_S):
            messages = [_raw(event.message) for event in events]
            result = ingest_batch(messages, runtime.partitions[names.by_buyer])
            await runtime.producer.send_all(
                [(names.dlq, key, value, None) for key, value in result.dead_letters]
                + [(names.by_buyer, None, value, p) for p, value in result.shuffled]
            )
            metrics.processed.inc(len(messages))
            metrics.invalid.inc(len(result.dead_letters))
            for event in events:
                await stream.ack(event)
            _report_lag(app, runtime, messages)


def _raw(message: Any) -> RawMessage:
    return RawMessage(message.topic, message.partition, message.offset, message.key,
                      message.value)


def _report_lag(app: faust.App, runtime: Runtime, messages: list[RawMessage]) -> None:
    last: dict[int, int] = {}
    for message in messages:
        last[message.partition] = message.offset
    for partition, offset in last.items():
        tp = faust.types.TP(runtime.names.orders, partition)
        highwater = app.consumer.highwater(tp)
        if highwater is not None:
            runtime.metrics.lag.labels(runtime.names.orders, str(partition)).set(
                max(highwater - offset - 1, 0))
