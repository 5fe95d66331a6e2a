"""Idiomatic faust: Records, group_by buyer, and faust Tables written once per order.

    faust -A bench.pipelines.faust_tables worker -l warn     # settings from BENCH_*

The same results as orderstream's defaults: per buyer the count and sum of prices; per buyer
and window of `tumble:10s` and `hop:1m/10s` the count, sum, min and max, in event time
(`relative_to_field(Order.order_time)`). Prices are kept as integer cents, exact.
Windows have no `expires`: faust expires windows by the wall clock, and the bench's orders are
from 2026-11-24, so any expiry shorter than their age would drop them as they are written.
When N orders are applied, the tables are read back: every count must add up.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import faust

from bench.pipelines.common import ChildConfig
from bench.pipelines.faust_app import bench_app

TUMBLE_S, HOP_SIZE_S, HOP_STEP_S = 10.0, 60.0, 10.0
HOPS_PER_ORDER = int(HOP_SIZE_S // HOP_STEP_S)  # windows of the hop every order falls in


class Buyer(faust.Record):
    first_name: str
    last_name: str


class Order(faust.Record, coerce=True, serializer="json"):
    order_number: int
    price: Decimal
    buyer: Buyer
    order_time: datetime


config = ChildConfig.from_env()
app, status = bench_app(config)
orders_topic = app.topic(config.topic, key_type=bytes, value_type=Order)
# value: [count, sum of cents]; windows: [count, sum, min, max] of cents
totals = app.Table("buyer-totals", default=lambda: [0, 0])
tumbling_table = app.Table("tumble-10s", default=list)
hopping_table = app.Table("hop-1m-10s", default=list)
tumbling = tumbling_table.tumbling(TUMBLE_S).relative_to_field(Order.order_time)
hopping = hopping_table.hopping(HOP_SIZE_S, HOP_STEP_S).relative_to_field(Order.order_time)


def buyer_key(order: Order) -> str:
    """The GROUP BY key; called once per order read from the input topic."""
    status.on_consumed()
    return f"{order.buyer.first_name}\x1f{order.buyer.last_name}"


def add_to_window(window: list[int], cents: int) -> list[int]:
    """A window's [count, sum, min, max] with one more price."""
    if not window:
        return [1, cents, cents, cents]
    count, total, low, high = window
    return [count + 1, total + cents, min(low, cents), max(high, cents)]


def window_counts(table: Any) -> int:
    """Sum of the counts of every (buyer, window) row of a windowed table."""
    return sum(value[0] for value in table.data.values())


@app.agent(orders_topic)
async def aggregate(orders: Any) -> None:
    """Every order into the three tables, one write per order and table."""
    async for order in orders.group_by(buyer_key, name="buyer"):
        key = f"{order.buyer.first_name}\x1f{order.buyer.last_name}"
        cents = int(order.price * 100)
        count, total = totals[key]
        totals[key] = [count + 1, total + cents]
        tumbling[key].apply(add_to_window, cents)
        hopping[key].apply(add_to_window, cents)
        if status.on_counted():
            status.finish({
                "buyer totals count": (sum(v[0] for v in totals.values()), config.orders),
                "tumble_10s counts": (window_counts(tumbling_table), config.orders),
                "hop_1m_10s counts": (window_counts(hopping_table),
                                      HOPS_PER_ORDER * config.orders),
            })
