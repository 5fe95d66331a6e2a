"""The in-worker datagen (DATAGEN_RPS, DATAGEN_ROWS): the CLI's generator, as a worker task."""

import asyncio
import logging
import time

import faust
from aiokafka.errors import ProducerClosed

from agents.schedule import once_started
from app.runtime import Runtime
from core.datagen import OrderGenerator

log = logging.getLogger(__name__)
TICK_S = 0.05


def register_datagen(app: faust.App, runtime: Runtime) -> None:
    """Start producing orders once the worker runs, when DATAGEN_RPS > 0."""
    settings = runtime.settings
    if settings.datagen_rps <= 0:
        return

    @once_started(app)
    async def datagen() -> None:
        generator = OrderGenerator(rows_per_second=settings.datagen_rps)
        limit = settings.datagen_rows or None
        log.info("datagen: %s orders/s into %s%s", settings.datagen_rps, runtime.names.orders,
                 f", {limit} in all" if limit else "")
        sent, started = 0, time.monotonic()
        while (limit is None or sent < limit) and not runtime.should_stop:
            due = int((time.monotonic() - started) * settings.datagen_rps) + 1
            burst = min(due, limit or due) - sent
            if burst > 0:
                now_ms = int(time.time() * 1000)
                orders = [generator.encode(generator.next_order(now_ms)) for _ in range(burst)]
                try:
                    await runtime.producer.send_all(
                        [(runtime.names.orders, key, value, None) for key, value in orders])
                except ProducerClosed:  # the worker is stopping
                    return
                sent += burst
            await asyncio.sleep(TICK_S)
        log.info("datagen: sent %d orders", sent)
