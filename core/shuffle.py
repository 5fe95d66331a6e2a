"""The records of the two internal hops, each carrying its sender's watermark (core.watermarks).

- The rekey topic (`<APP_ID>-orders-by-number`): from orders partition `origin` to the
  partition owning the order numbers, one record per batch and owner, with each order's
  coordinates, its origin's source watermark just before it, and the origin's watermark
  and idle lease after the batch. A record without orders carries the watermark only.
- The repartition topic (`<APP_ID>-orders-by-buyer`): from dedup partition `carrier` to
  the partition owning the buyers, one record per batch and buyer partition, its orders in
  groups by source (`<orders topic>:<origin>` for the carrier's own orders partition,
  `...:<origin>><carrier>` for those that hopped), each with its source offset, so the
  aggregation applies an order only beyond what it applied from that source
  (core.sources); an order's `late_clock` is its origin's watermark before it, when later
  than its own time (the late rule), else None.
"""

from collections import defaultdict
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import NamedTuple, TypeVar

import orjson

from core import jsonbytes
from core.models import Order
from core.partitioning import key_partition
from core.raw import cut_raw

Positioned = tuple[int, Order, bytes | None, int | None]  # offset, order, key, late clock
_new_tuple = tuple.__new__  # a NamedTuple without its Python-level __new__: the hot path


class Origin(NamedTuple):
    """Where an order first arrived, for the DLQ and orders-late; a value over 64 KiB
    travels cut, with its size and hash, as a DLQ record would hold it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    raw_bytes: int | None = None
    raw_sha256: str | None = None


class Shuffled(NamedTuple):
    """A repartition record: the carrier's watermark, lease and largest input watermark,
    and orders by source; `offset` is the record's own (-1: not known)."""

    carrier: int
    watermark_ms: int
    idle_until_ms: int | None
    groups: list[tuple[str, list[Positioned]]]
    top_ms: int = -(2**63)
    offset: int = -1


class Rekeyed(NamedTuple):
    """A rekey record: the origin's watermark and lease, and copies with their clocks."""

    origin: int
    watermark_ms: int
    idle_until_ms: int | None
    orders: list[tuple[Origin, Order, int]]  # coordinates, order, origin watermark before


RECORD_LIMIT_BYTES = 512 * 1024  # half the broker's default max.message.bytes (1 MiB)
T = TypeVar("T")


def chunked(items: list[T], encode: Callable[[list[T], bool], bytes],
            limit: int | None = None, last: bool = True) -> list[bytes]:
    """`items` as records of at most `limit` bytes where one item alone allows, halved
    until they fit; `encode(chunk, is_last)` writes one record, and every record but the
    last must carry a watermark from before the batch: its later chunks are still on the
    way."""
    limit = RECORD_LIMIT_BYTES if limit is None else limit
    record = encode(items, last)
    if len(record) <= limit or len(items) <= 1:
        return [record]
    middle = len(items) // 2
    return (chunked(items[:middle], encode, limit, last=False)
            + chunked(items[middle:], encode, limit, last))


def regroup(rows: list[tuple[str, Positioned]]) -> list[tuple[str, list[Positioned]]]:
    """(source, row) pairs back into groups by source, in order."""
    groups: dict[str, list[Positioned]] = {}
    for source, row in rows:
        groups.setdefault(source, []).append(row)
    return list(groups.items())


def buyer_key(first_name: str, last_name: str) -> bytes:
    """The Kafka key of a buyer: JSON `["<first_name>", "<last_name>"]` (buyer-totals, SPEC.md)."""
    return jsonbytes.dumps([first_name, last_name])


def buyer_partition(first_name: str, last_name: str, partitions: int) -> int:
    """Partition owning a buyer: Kafka's default partitioner on the buyer key."""
    return key_partition(buyer_key(first_name, last_name), partitions)


def group_by_buyer_partition(
    orders: Iterable[Positioned], partitions: int
) -> dict[int, list[Positioned]]:
    """Split positioned orders by the partition owning their buyer, keeping their order.

    A buyer's partition is remembered for this batch only. A process-wide cache of it,
    with more buyers than entries, kept replacing entries that held each order's name
    strings: long-lived objects scattered over Python's arenas kept them from being freed
    (the RSS grew with the orders, `make bench-state`, memory)."""
    groups: dict[int, list[Positioned]] = defaultdict(list)
    owners: dict[tuple[str, str], int] = {}
    for item in orders:
        order = item[1]
        buyer = (order.first_name, order.last_name)
        owner = owners.get(buyer)
        if owner is None:
            owner = owners[buyer] = buyer_partition(*buyer, partitions)
        groups[owner].append(item)
    return groups


def encode_shuffle(carrier: int, watermark_ms: int, idle_until_ms: int | None,
                   groups: Iterable[tuple[str, list[Positioned]]] = (),
                   top_ms: int | None = None) -> bytes:
    """One repartition record (no groups: a watermark-only record)."""
    return jsonbytes.dumps({
        "carrier": carrier, "watermark": watermark_ms, "idle_until": idle_until_ms,
        "top": watermark_ms if top_ms is None else top_ms,
        "groups": [[source, [
            (offset, o.order_number, str(o.price), o.first_name, o.last_name, o.order_time_ms,
             None if key is None else key.decode("latin-1"), clock)
            for offset, o, key, clock in rows]] for source, rows in groups],
    })


def decode_shuffle(value: bytes, offset: int = -1) -> Shuffled:
    """Inverse of encode_shuffle; `offset` is where the record was read."""
    record = orjson.loads(value)
    groups = [(source, [
        (offset, _new_tuple(Order, (number, Decimal(price), first, last, time_ms)),
         None if key is None else key.encode("latin-1"), clock)
        for offset, number, price, first, last, time_ms, key, clock in rows])
        for source, rows in record["groups"]]
    return Shuffled(record["carrier"], record["watermark"], record["idle_until"], groups,
                    record.get("top", record["watermark"]), offset)


def encode_rekeyed(origin: int, watermark_ms: int, idle_until_ms: int | None,
                   orders: Iterable[tuple[Origin, Order, int]] = ()) -> bytes:
    """One rekey record (no orders: a watermark-only record)."""
    return jsonbytes.dumps({
        "origin": origin, "watermark": watermark_ms, "idle_until": idle_until_ms,
        "orders": [_copy(where, o, before_ms) for where, o, before_ms in orders],
    })


def _copy(where: Origin, o: Order, before_ms: int) -> tuple[object, ...]:
    """One copy of a rekey record; its raw value cut as a DLQ record would cut it, so that
    one large order cannot make a record over the broker's limit."""
    raw, size, digest = (where.value, where.raw_bytes, where.raw_sha256)
    if size is None:
        raw, size, digest = cut_raw(raw)
    return (where.topic, where.offset, None if where.key is None else where.key.decode("latin-1"),
            raw.decode("utf-8", errors="ignore"), o.order_number, str(o.price), o.first_name,
            o.last_name, o.order_time_ms, before_ms, size, digest)


def decode_rekeyed(value: bytes) -> Rekeyed:
    """Inverse of encode_rekeyed."""
    record = orjson.loads(value)
    origin = record["origin"]
    orders = [
        (Origin(topic, origin, offset, None if key is None else key.encode("latin-1"),
                raw.encode("utf-8"), size, digest),
         _new_tuple(Order, (number, Decimal(price), first, last, time_ms)), before_ms)
        for topic, offset, key, raw, number, price, first, last, time_ms, before_ms, size,
        digest in record["orders"]]
    return Rekeyed(origin, record["watermark"], record["idle_until"], orders)
