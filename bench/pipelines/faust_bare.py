"""The floor of faust's per-event path: an agent that only decodes each order and counts.

    faust -A bench.pipelines.faust_bare worker -l warn     # settings from BENCH_*
"""

from __future__ import annotations

from typing import Any

import orjson

from bench.pipelines.common import ChildConfig
from bench.pipelines.faust_app import bench_app

config = ChildConfig.from_env()
app, status = bench_app(config)
orders_topic = app.topic(config.topic, key_serializer="raw", value_serializer="raw")


@app.agent(orders_topic)
async def decode(orders: Any) -> None:
    """orjson.loads of every order; done at the N-th."""
    decoded = 0
    async for value in orders:
        status.on_consumed()
        decoded += isinstance(orjson.loads(value), dict)
        if status.on_counted():
            status.finish({"orders decoded to an object": (decoded, config.orders)})
