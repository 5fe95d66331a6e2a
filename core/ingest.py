"""The ingest step over one partition's batch: skip what was applied, parse, dead-letter
the invalid, send each order number to the partition that owns it, deduplicate, and group
the accepted orders by the partition owning their buyer.

An order number is owned by the orders partition Kafka's default partitioner gives its
decimal text (datagen's key), so orders keyed that way are deduplicated where they
arrive; any other copy takes one hop through the rekey topic to its owner.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import orjson

from core import jsonbytes
from core.dedup import DedupResult, ReadMany, Scan, dedup_batch
from core.late import late_value
from core.models import Order
from core.parse import InvalidOrder, parse_order
from core.partitioning import key_partition
from core.shuffle import Positioned, encode_shuffle, group_by_buyer_partition
from core.sinks import dlq_value
from core.sources import skip_applied
from tables.windows import WindowSpec


class RawMessage(NamedTuple):
    """A message as read from the orders (or rekey) topic (aiokafka's ConsumerRecord has
    the same fields, and the ingest agent passes those as they are)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Origin(NamedTuple):
    """Where an order first arrived, for the DLQ and orders-late."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """What the ingest step needs to know of topics and time."""

    orders_topic: str
    rekey_topic: str
    orders_partitions: int
    buyer_partitions: int
    horizon_ms: int
    windows: Sequence[WindowSpec]
    allowed_lateness_ms: int
    dedup: bool = True  # off (DEDUP=0, for benchmarks): every order counts where it arrives


@dataclass(slots=True)
class IngestResult:
    """What one batch produces and the store updates that record it."""

    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    late: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    rekeyed: list[tuple[int, bytes, bytes]] = field(default_factory=list)  # partition, key, value
    shuffled: list[tuple[int, bytes]] = field(default_factory=list)  # partition, value
    updates: dict[str, str | None] = field(default_factory=dict)
    read: int = 0  # messages read from the orders topic, replays included
    invalid: int = 0
    duplicates: int = 0
    conflicts: int = 0
    too_old: int = 0
    latest_order_ms: int | None = None  # of every order read, for the ingest's alignment


_new_tuple = tuple.__new__  # a NamedTuple without its Python-level __new__: once per order


def number_partition(order_number: int, partitions: int) -> int:
    """The orders partition owning an order number: Kafka's partitioner on its decimal text."""
    return key_partition(str(order_number).encode(), partitions)


def ingest_partition(
    messages: Iterable[RawMessage], config: IngestConfig, read: ReadMany, scan: Scan
) -> IngestResult:
    """The whole ingest step for one partition's messages, in arrival order."""
    messages = list(messages)
    result = IngestResult(read=sum(m.topic == config.orders_topic for m in messages))
    fresh, offsets = skip_applied(messages, read)
    if not fresh:  # all replayed: nothing to do, nothing to write
        return result
    owned: list[tuple[tuple[str, int, Origin], Order]] = []
    for message in fresh:
        claimed = _claim(message, config, result)
        if claimed is not None:
            owned.append(claimed)
    decided = (dedup_batch(owned, config.horizon_ms, read, scan) if config.dedup
               else DedupResult(accepted=owned))
    _record_rejects(decided.conflicts, decided.too_old, config, result)
    result.duplicates = len(decided.duplicates)
    _shuffle(decided.accepted, config, result)
    result.updates.update(decided.updates)
    result.updates.update(offsets)
    return result


def _claim(
    message: RawMessage, config: IngestConfig, result: IngestResult
) -> tuple[tuple[str, int, Origin], Order] | None:
    """The order of a message this partition owns; invalid and foreign ones are routed away."""
    source = f"{message.topic}:{message.partition}"
    if message.topic == config.rekey_topic:
        origin, order = decode_rekeyed(message.value or b"")
        return (source, message.offset, origin), order
    try:
        order = parse_order(message.value)
    except InvalidOrder as error:
        result.invalid += 1
        result.dead_letters.append((message.key, dlq_value(
            str(error), message.topic, message.partition, message.offset, message.value)))
        return None
    if result.latest_order_ms is None or order.order_time_ms > result.latest_order_ms:
        result.latest_order_ms = order.order_time_ms
    origin = _new_tuple(Origin, (message.topic, message.partition, message.offset,
                                 message.key, message.value or b""))
    owner = number_partition(order.order_number, config.orders_partitions)
    if config.dedup and owner != message.partition:
        result.rekeyed.append((owner, str(order.order_number).encode(),
                               encode_rekeyed(origin, order)))
        return None
    return (source, message.offset, origin), order


def _record_rejects(conflicts: list, too_old: list, config: IngestConfig,  # type: ignore[type-arg]
                    result: IngestResult) -> None:
    for (_, _, origin), order in conflicts:
        result.dead_letters.append((origin.key, dlq_value(
            f"conflict: order_number {order.order_number} seen with different content",
            origin.topic, origin.partition, origin.offset, origin.value)))
    for (_, _, origin), order in too_old:
        reason = ("older than the watermark minus DEDUP_HORIZON: it can no longer be checked "
                  "for duplicates, so it counts nowhere")
        result.late.append((origin.key, late_value(
            order, reason, config.windows, config.allowed_lateness_ms, missed_all=True)))
    result.conflicts, result.too_old = len(conflicts), len(too_old)


def _shuffle(accepted: list, config: IngestConfig, result: IngestResult) -> None:  # type: ignore[type-arg]
    """Accepted orders to their buyer's partition, per source stream, offsets kept."""
    by_source: dict[str, list[Positioned]] = defaultdict(list)
    for (source, offset, origin), order in accepted:
        by_source[source].append((offset, order, origin.key))
    for source, orders in by_source.items():
        for partition, group in group_by_buyer_partition(orders, config.buyer_partitions).items():
            result.shuffled.append((partition, encode_shuffle(source, group)))


def encode_rekeyed(origin: Origin, order: Order) -> bytes:
    """A copy sent to the partition owning its order number, with where it first arrived."""
    return jsonbytes.dumps({
        "origin": [origin.topic, origin.partition, origin.offset],
        "key": None if origin.key is None else origin.key.decode("latin-1"),
        "raw": origin.value.decode("utf-8"),
        "order": [order.order_number, str(order.price), order.first_name, order.last_name,
                  order.order_time_ms],
    })


def decode_rekeyed(value: bytes) -> tuple[Origin, Order]:
    """Inverse of encode_rekeyed."""
    from decimal import Decimal

    record = orjson.loads(value)
    topic, partition, offset = record["origin"]
    key = None if record["key"] is None else record["key"].encode("latin-1")
    number, price, first, last, time_ms = record["order"]
    origin = Origin(topic, partition, offset, key, record["raw"].encode("utf-8"))
    return origin, Order(number, Decimal(price), first, last, time_ms)
