"""The repartition step: accepted orders grouped by buyer partition, one record per batch.

Each record carries the source stream (`topic:partition`) and each order's source
offset, so the aggregation applies an order only if its offset is beyond what it
has already applied from that source (core.sources), and the order's Kafka key as
received, for orders-late.
"""

from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from functools import lru_cache

import orjson

from core import jsonbytes
from core.models import Order, Tick
from core.partitioning import key_partition

Positioned = tuple[int, Order, bytes | None]  # (source offset, order, key as received)


def buyer_key(first_name: str, last_name: str) -> bytes:
    """The Kafka key of a buyer: JSON `["<first_name>", "<last_name>"]` (buyer-totals, SPEC.md)."""
    return jsonbytes.dumps([first_name, last_name])


@lru_cache(maxsize=65_536)
def buyer_partition(first_name: str, last_name: str, partitions: int) -> int:
    """Partition owning a buyer: Kafka's default partitioner on the buyer key."""
    return key_partition(buyer_key(first_name, last_name), partitions)


def group_by_buyer_partition(
    orders: Iterable[Positioned], partitions: int
) -> dict[int, list[Positioned]]:
    """Split positioned orders by the partition owning their buyer, keeping their order."""
    groups: dict[int, list[Positioned]] = defaultdict(list)
    for item in orders:
        order = item[1]
        groups[buyer_partition(order.first_name, order.last_name, partitions)].append(item)
    return groups


def encode_shuffle(source: str, orders: list[Positioned]) -> bytes:
    """One repartition record: the source stream and its orders with their offsets."""
    rows = [
        (offset, o.order_number, str(o.price), o.first_name, o.last_name, o.order_time_ms,
         None if key is None else key.decode("latin-1"))
        for offset, o, key in orders
    ]
    return jsonbytes.dumps({"source": source, "orders": rows})


def decode_shuffle(value: bytes) -> tuple[str, list[Positioned]]:
    """Inverse of encode_shuffle."""
    return _orders(orjson.loads(value))


_new_tuple = tuple.__new__  # Order(...) without its Python-level __new__: the hot path


def _orders(record: dict) -> tuple[str, list[Positioned]]:  # type: ignore[type-arg]
    orders = [
        (offset, _new_tuple(Order, (number, Decimal(price), first, last, time_ms)),
         None if key is None else key.encode("latin-1"))
        for offset, number, price, first, last, time_ms, key in record["orders"]
    ]
    return record["source"], orders


def encode_tick(watermark_ms: int) -> bytes:
    """A watermark tick record for the repartition topic (tables.idle)."""
    return jsonbytes.dumps({"watermark": watermark_ms})


def decode_item(value: bytes) -> tuple[str, list[Positioned]] | Tick:
    """A repartition record: a source's orders, or a watermark tick."""
    record = orjson.loads(value)
    if "watermark" in record:
        return Tick(record["watermark"])
    return _orders(record)
