"""The repartition step: accepted orders grouped by buyer partition, one record per batch.

Each record carries the source stream (`topic:partition`) and each order's source
offset, so the aggregation applies an order only if its offset is beyond what it
has already applied from that source (see core.aggregate.select_new).
"""

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from functools import lru_cache

import orjson
from aiokafka.partitioner import murmur2

from core.models import Order

Positioned = tuple[int, Order]  # (source offset, order)


def buyer_key(first_name: str, last_name: str) -> bytes:
    """The Kafka key of a buyer: JSON `["<first_name>", "<last_name>"]` (buyer-totals, SPEC.md)."""
    return orjson.dumps([first_name, last_name])


@lru_cache(maxsize=65_536)
def buyer_partition(first_name: str, last_name: str, partitions: int) -> int:
    """Partition owning a buyer: Kafka's default partitioner on the buyer key."""
    return (murmur2(buyer_key(first_name, last_name)) & 0x7FFFFFFF) % partitions


def group_by_buyer_partition(
    orders: Iterable[Positioned], partitions: int
) -> dict[int, list[Positioned]]:
    """Split positioned orders by the partition owning their buyer, keeping their order."""
    groups: dict[int, list[Positioned]] = defaultdict(list)
    for offset, order in orders:
        groups[buyer_partition(order.first_name, order.last_name, partitions)].append(
            (offset, order)
        )
    return groups


def encode_shuffle(source: str, orders: list[Positioned]) -> bytes:
    """One repartition record: the source stream and its orders with their offsets."""
    rows = [
        (offset, o.order_number, str(o.price), o.first_name, o.last_name, o.order_time_ms)
        for offset, o in orders
    ]
    return orjson.dumps({"source": source, "orders": rows})


def decode_shuffle(value: bytes) -> tuple[str, list[Positioned]]:
    """Inverse of encode_shuffle."""
    record = orjson.loads(value)
    orders = [
        (offset, Order(number, Decimal(price), first, last, time_ms))
        for offset, number, price, first, last, time_ms in record["orders"]
    ]
    return record["source"], orders
