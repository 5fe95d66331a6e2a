"""The in-worker datagen (DATAGEN_RPS, DATAGEN_ROWS): the CLI's generator, as a worker task."""

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka.errors import ProducerClosed

from agents.ports import Sender
from core.datagen import OrderGenerator
from core.timefmt import wall_ms

log = logging.getLogger(__name__)
TICK_S = 0.05


async def run_datagen(sender: Sender, topic: str, rows_per_second: float, rows: int,
                      stopping: Callable[[], bool]) -> None:
    """`rows_per_second` random orders into `topic` (`rows` in all; 0: no end) until the
    worker stops."""
    generator = OrderGenerator(rows_per_second=rows_per_second)
    limit = rows or None
    log.info("datagen: %s orders/s into %s%s", rows_per_second, topic,
             f", {limit} in all" if limit else "")
    sent, started = 0, time.monotonic()
    while (limit is None or sent < limit) and not stopping():
        due = int((time.monotonic() - started) * rows_per_second) + 1
        burst = min(due, limit or due) - sent
        if burst > 0:
            now_ms = wall_ms()
            orders = [generator.encode(generator.next_order(now_ms)) for _ in range(burst)]
            try:
                await sender.send_all([(topic, key, value, None) for key, value in orders])
            except ProducerClosed:  # the worker is stopping
                return
            sent += burst
        await asyncio.sleep(TICK_S)
    log.info("datagen: sent %d orders", sent)
