"""The stages as faust agents and timers: each stage gets whole fetches of its input
topics (app.faust.transport) in per-partition lanes (app.faust.batches), and its timer."""

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import faust

from agents.aggregate import TIMER_INTERVAL_S as AGGREGATE_TICK_S
from agents.aggregate import AggregateStage
from agents.batches import Peek
from agents.datagen import run_datagen
from agents.ingest import TIMER_INTERVAL_S as INGEST_TICK_S
from agents.ingest import IngestStage
from agents.ports import Sender
from app.faust.batches import each_batch
from app.faust.schedule import every, once_started
from app.faust.transport import batch_topic, release
from app.history import SAMPLE_INTERVAL_S, MetricHistory
from app.memory import TRIM_INTERVAL_S, heap_trimmer
from core.shuffle import decode_shuffle
from core.timefmt import wall_ms


def register_ingest(app: faust.App, stage: IngestStage,
                    fail: Callable[[BaseException], None]) -> None:
    """The ingest agent on ORDERS_TOPIC and the rekey topic (co-partitioned), and its timer."""
    topic = batch_topic(app, stage.topics.orders, stage.topics.rekey)

    @app.agent(topic, name="ingest")
    async def ingest(stream: faust.StreamT[Any]) -> None:
        # faust's ConsumerRecords serve as the stage's RawMessages
        await each_batch(stream, stage.apply, fail=fail,
                         release=functools.partial(release, app),
                         waiting=functools.partial(stage.metrics.operators.waiting, "source",
                                                   "input"))

    @every(app, INGEST_TICK_S)
    async def ingest_watermarks() -> None:
        await stage.tick()


def register_aggregate(app: faust.App, stage: AggregateStage,
                       fail: Callable[[BaseException], None]) -> None:
    """The aggregate agent on the internal by-buyer topic, and its timer."""
    topic = batch_topic(app, stage.topics.by_buyer)

    @app.agent(topic, name="aggregate")
    async def aggregate(stream: faust.StreamT[Any]) -> None:
        async def handle(partition: int, items: list[Any], _: Peek) -> str | None:
            return await stage.apply(partition, items)

        await each_batch(stream, handle, fail=fail, release=functools.partial(release, app),
                         to_item=lambda record: decode_shuffle(record.value, record.offset),
                         waiting=functools.partial(stage.metrics.operators.waiting,
                                                   "aggregate", "input"))

    @every(app, AGGREGATE_TICK_S)
    async def aggregate_watermarks() -> None:
        await stage.tick()


def register_datagen(app: faust.App, sender: Sender, topic: str, rows_per_second: float,
                     rows: int, stopping: Callable[[], bool]) -> None:
    """Start producing orders once the worker runs, when `rows_per_second` > 0."""
    if rows_per_second <= 0:
        return

    @once_started(app)
    async def datagen() -> None:
        await run_datagen(sender, topic, rows_per_second, rows, stopping)


def register_sampler(app: faust.App, history: MetricHistory) -> None:
    """A sample of the worker's counters every SAMPLE_INTERVAL_S, for the dashboard."""

    @every(app, SAMPLE_INTERVAL_S)
    async def sample_metrics() -> None:
        history.sample(wall_ms())


def register_heap_trim(app: faust.App) -> None:
    """Free heap pages back to the system every TRIM_INTERVAL_S (app.memory), on glibc."""
    trim = heap_trimmer()
    if trim is None:
        return

    @every(app, TRIM_INTERVAL_S)
    async def trim_heap() -> None:
        await asyncio.to_thread(trim)
