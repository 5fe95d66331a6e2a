"""The ingest step over one partition's batch: skip what was applied, parse, dead-letter
the invalid, send each order number to the partition that owns it, deduplicate, and group
the accepted orders by the partition owning their buyer; with the watermarks it moves.

An order number is owned by the orders partition Kafka's default partitioner gives its
decimal text (datagen's key), so orders keyed that way are deduplicated where they
arrive; any other copy takes one hop through the rekey topic to its owner.

State of dedup partition p besides core.dedup's entries (SPEC.md, Event time):
- `m|source`    -> the source watermark of orders partition p: the largest order time read
                   from it, in offset order
- `m|via|<q>`   -> orders partition q's watermark and lease as the rekey topic last
                   carried them here (core.watermarks.Channel)
- `m|watermark` -> this partition's watermark: the min over its own source and every `via`
                   (idle ones left out), never moving back
- `s|<orders>:<q>` -> the last offset of orders partition q applied here (via the rekey
                   topic, for q != p; from the topic itself for p, see core.sources)
- `m|next`      -> `[source, last offset]`: the batch this partition takes next (see
                   `next_batch`)

A redo must decide as the attempt it repeats did. Orders partition p and the rekey
topic's partition p share one lane, and which of their batches came first is not in the
input: a redo that took the other one first could accept the other copy of an order
number whose first copy the aggregation has already counted. So the batch a partition
takes next is durable before its outputs go out: written with the commit before it (the
lane knows what waits), or, when nothing waited, in a commit of its own first; and after
a restart the lane takes that source up to that offset before any other.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import orjson

from core import shuffle
from core.dedup import DedupResult, dedup_batch, expire
from core.late import late_value
from core.models import Order
from core.parse import InvalidOrder, parse_order
from core.partitioning import key_partition
from core.raw import KEY_LIMIT_BYTES, cut_raw
from core.schema import NEXT_KEY, SOURCE_KEY, WATERMARK_KEY, source_key, via_key
from core.shuffle import (
    Origin,
    Positioned,
    chunked,
    decode_rekeyed,
    encode_rekeyed,
    encode_shuffle,
    group_by_buyer_partition,
    regroup,
)
from core.sinks import dlq_value
from core.sources import applied_offsets, skip_applied
from core.storage import ReadMany, Scan
from core.watermarks import (
    NO_WATERMARK,
    Channel,
    Combined,
    Emitter,
    advance,
    combine,
    decode_channel,
    encode_channel,
)
from core.windows import Window

_new_tuple = tuple.__new__  # a NamedTuple without its Python-level __new__: once per order


class RawMessage(NamedTuple):
    """A message as read from the orders (or rekey) topic (aiokafka's ConsumerRecord has
    the same fields, and the ingest agent passes those as they are)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(frozen=True, slots=True)
class IngestConfig:
    """What the ingest step needs to know of topics and time."""

    orders_topic: str
    rekey_topic: str
    orders_partitions: int
    buyer_partitions: int
    horizon_ms: int
    windows: Sequence[Window]
    allowed_lateness_ms: int
    max_future_skew_ms: int = 3_600_000
    max_message_bytes: int = 1024 * 1024
    dedup: bool = True  # off (DEDUP=0, for benchmarks): every order counts where it arrives


class Clock(NamedTuple):
    """The wall clock, and until when this worker declares its orders partition idle."""

    now_ms: int
    idle_until_ms: int | None = None


Tag = tuple[str, int, Origin, int | None]  # source, offset, origin, late clock
Candidate = tuple[Tag, Order, int]  # tag, order, clock


@dataclass(slots=True)
class IngestResult:
    """What one batch produces and the store updates that record it."""

    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    late: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    rekeyed: dict[int, list[tuple[Origin, Order, int]]] = field(
        default_factory=lambda: defaultdict(list))  # owner -> copies
    shuffled: dict[int, list[tuple[str, list[Positioned]]]] = field(
        default_factory=lambda: defaultdict(list))  # buyer partition -> groups by source
    updates: dict[str, str | None] = field(default_factory=dict)
    read: int = 0  # messages read from the orders topic, replays included
    parsed: int = 0  # those parsed: not applied before
    decided: int = 0  # orders the dedup step decided on: this batch's order matters
    invalid: int = 0
    duplicates: int = 0
    conflicts: int = 0
    too_old: int = 0
    source_watermark_ms: int = NO_WATERMARK  # of this orders partition, after the batch
    source_before_ms: int = NO_WATERMARK  # and before it
    watermark_before_ms: int = NO_WATERMARK  # of this partition, before the batch
    output: Combined = Combined(NO_WATERMARK, None)  # what the repartition records carry


def next_batch(source: str, last_offset: int) -> dict[str, str | None]:
    """The update naming the batch this partition takes next."""
    return {NEXT_KEY: orjson.dumps([source, last_offset]).decode()}


class Take(NamedTuple):
    """What the named next batch allows a batch: to go now; to go only once it is named
    itself (its outputs must not leave first); to name the batch after it."""

    now: bool
    name_first: bool
    name_next: bool


def may_take(source: str, last_offset: int, read: ReadMany) -> Take:
    """Whether the batch of `source` ending at `last_offset` may be taken now (no other
    batch is named first); whether it must be named durably before its outputs go (unless
    it lies within the batch named, a redo could take another first); and whether it may
    name the next one (not while the batch named is only partly done: a redo cut shorter)."""
    [value] = read([NEXT_KEY])
    if value is None:
        return Take(True, True, True)
    due, due_offset = orjson.loads(value)
    if applied_offsets([due], read)[due] >= due_offset:
        return Take(True, True, True)  # the batch named is done: nobody names this one yet
    if due == source:
        return Take(True, last_offset > due_offset, last_offset >= due_offset)
    return Take(False, False, False)  # a redo: the batch named first


def number_partition(order_number: int, partitions: int) -> int:
    """The orders partition owning an order number: Kafka's partitioner on its decimal text."""
    return key_partition(str(order_number).encode(), partitions)


def read_state(partition: int, config: IngestConfig,
               read: ReadMany) -> tuple[int, int, dict[int, Channel]]:
    """Source watermark, partition watermark and the rekey channels of a dedup partition."""
    others = [q for q in range(config.orders_partitions) if q != partition and config.dedup]
    source, watermark, *vias = read([SOURCE_KEY, WATERMARK_KEY, *map(via_key, others)])
    return (NO_WATERMARK if source is None else int(source),
            NO_WATERMARK if watermark is None else int(watermark),
            {q: decode_channel(v) for q, v in zip(others, vias, strict=True)})


def output_of(source_ms: int, watermark_ms: int, vias: dict[int, Channel],
              clock: Clock) -> Combined:
    """What the partition sends downstream: its watermark (never behind the one it keeps);
    while its own source and every other are idle, with the earliest lease; and the
    largest of them all."""
    combined = combine([Channel(source_ms, clock.idle_until_ms, source_ms), *vias.values()],
                       clock.now_ms)
    if combined.idle_until_ms is None:
        return Combined(max(watermark_ms, combined.watermark_ms), None, combined.top_ms)
    return Combined(watermark_ms, combined.idle_until_ms, combined.top_ms)


def ingest_partition(partition: int, messages: Iterable[RawMessage], config: IngestConfig,
                     read: ReadMany, scan: Scan, clock: Clock) -> IngestResult:
    """The whole ingest step for one partition's messages, in arrival order."""
    messages = list(messages)
    result = IngestResult(read=sum(m.topic == config.orders_topic for m in messages))
    stored_source_ms, watermark_ms, stored_vias = read_state(partition, config, read)
    fresh, offsets = skip_applied(messages, read)
    result.parsed = sum(m.topic == config.orders_topic for m in fresh)
    if any(m.topic == config.orders_topic for m in fresh):
        clock = Clock(clock.now_ms)  # it delivers again: no longer idle
    source_ms, vias = stored_source_ms, dict(stored_vias)
    applied: dict[str, int] = {}
    owned: list[Candidate] = []
    for message in fresh:
        if message.topic == config.rekey_topic:
            _receive(message, config, read, vias, applied, owned)
        else:
            source_ms = _claim(message, partition, config, clock, source_ms, owned, result)
    result.decided = len(owned)
    decided = (dedup_batch(owned, config.horizon_ms, watermark_ms, read) if config.dedup
               else DedupResult(accepted=[(tag, order) for tag, order, _ in owned]))
    _record_rejects(decided, config, result)
    _shuffle(decided.accepted, config, result)
    result.updates.update(decided.updates)
    result.updates.update(offsets)
    result.updates.update({source_key(s): str(o) for s, o in applied.items()})
    if source_ms != stored_source_ms:
        result.updates[SOURCE_KEY] = str(source_ms)
    result.updates.update({via_key(q): encode_channel(c) for q, c in vias.items()
                           if c != stored_vias[q]})
    result.source_watermark_ms, result.source_before_ms = source_ms, stored_source_ms
    result.watermark_before_ms = watermark_ms
    result.output = output_of(source_ms, watermark_ms, vias, clock)
    _move_watermark(result, watermark_ms, config, scan)
    return result


def _claim(message: RawMessage, partition: int, config: IngestConfig, clock: Clock,
           source_ms: int, owned: list[Candidate], result: IngestResult) -> int:
    """Parse an orders message: invalid ones to the DLQ, foreign ones to their owner; the
    source watermark after it."""
    key = message.key
    if key is not None and len(key) > KEY_LIMIT_BYTES:
        cut, size, digest = cut_raw(key, KEY_LIMIT_BYTES)
        result.invalid += 1
        result.dead_letters.append((cut, dlq_value(
            f"key: {size} bytes, more than {KEY_LIMIT_BYTES}", message.topic,
            message.partition, message.offset, message.value, key_bytes=size,
            key_sha256=digest)))
        return source_ms
    try:
        order = parse_order(message.value, clock.now_ms + config.max_future_skew_ms,
                            max_future_skew_ms=config.max_future_skew_ms,
                            max_bytes=config.max_message_bytes)
    except InvalidOrder as error:
        result.invalid += 1
        result.dead_letters.append((message.key, dlq_value(
            str(error), message.topic, message.partition, message.offset, message.value)))
        return source_ms
    origin = _new_tuple(Origin, (message.topic, message.partition, message.offset,
                                 message.key, message.value or b"", None, None))
    owner = number_partition(order.order_number, config.orders_partitions)
    if config.dedup and owner != partition:
        result.rekeyed[owner].append((origin, order, source_ms))
    else:
        owned.append(((f"{message.topic}:{partition}", message.offset, origin,
                       source_ms if source_ms > order.order_time_ms else None),
                      order, source_ms))
    return order.order_time_ms if order.order_time_ms > source_ms else source_ms


def _receive(message: RawMessage, config: IngestConfig, read: ReadMany,
             vias: dict[int, Channel], applied: dict[str, int],
             owned: list[Candidate]) -> None:
    """A rekey record: its copies not applied yet (a redone batch of their origin sends
    them again), then its origin's watermark."""
    record = decode_rekeyed(message.value or b"")
    source = f"{config.orders_topic}:{record.origin}"
    if source not in applied:
        applied.update(applied_offsets([source], read))
    for origin, order, before_ms in record.orders:
        if origin.offset <= applied[source]:
            continue
        applied[source] = origin.offset
        label = f"{source}>{message.partition}"
        owned.append(((label, origin.offset, origin,
                       before_ms if before_ms > order.order_time_ms else None), order, before_ms))
    vias[record.origin] = advance(vias.get(record.origin, Channel()), record.watermark_ms,
                                  record.idle_until_ms)


def _move_watermark(result: IngestResult, watermark_ms: int, config: IngestConfig,
                    scan: Scan) -> None:
    """The partition's watermark moves on with its output; entries fall behind the horizon."""
    output = result.output
    if output.idle_until_ms is None and output.watermark_ms > watermark_ms:
        result.updates[WATERMARK_KEY] = str(output.watermark_ms)
        if config.dedup:
            expire(output.watermark_ms - config.horizon_ms, scan, result.updates)


def channel_records(partition: int, result: IngestResult, clock: Clock, emitter: Emitter,
                    config: IngestConfig) -> tuple[list[tuple[int, bytes]],
                                                   list[tuple[int, bytes]]]:
    """`(owner, rekey record)` and `(buyer partition, repartition record)` for every output
    channel that has orders or is due a watermark: rekey channels carry this source's
    watermark and lease, repartition channels the partition's output."""
    rekeyed: list[tuple[int, bytes]] = []
    shuffled: list[tuple[int, bytes]] = []
    source, before, now_ms = result.source_watermark_ms, result.source_before_ms, clock.now_ms
    state = Combined(source, clock.idle_until_ms, source)
    for owner in range(config.orders_partitions) if config.dedup else ():
        copies, channel = result.rekeyed.get(owner, []), ("rekey", partition, owner)
        if owner != partition and (copies or emitter.due(channel, state, now_ms)):
            rekeyed += [(owner, value) for value in chunked(copies, lambda chunk, last: (
                encode_rekeyed(partition, source if last else before,
                               state.idle_until_ms if last else None, chunk)))]
            emitter.sent(channel, state, now_ms)
    output, kept = result.output, result.watermark_before_ms
    for target in range(config.buyer_partitions):
        groups, channel = result.shuffled.get(target, []), ("buyer", partition, target)
        if groups or emitter.due(channel, output, now_ms):
            record = encode_shuffle(partition, output.watermark_ms, output.idle_until_ms,
                                    groups, output.top_ms)
            if len(record) <= shuffle.RECORD_LIMIT_BYTES:
                shuffled.append((target, record))
            else:  # rare: split, the watermark moving with the last part only
                rows = [(name, row) for name, group in groups for row in group]
                shuffled += [(target, value) for value in chunked(rows, lambda chunk, last: (
                    encode_shuffle(partition, output.watermark_ms, output.idle_until_ms,
                                   regroup(chunk), output.top_ms) if last
                    else encode_shuffle(partition, kept, None, regroup(chunk), kept)))]
            emitter.sent(channel, output, now_ms)
    return rekeyed, shuffled


def _record_rejects(decided: DedupResult[Tag], config: IngestConfig,
                    result: IngestResult) -> None:
    for (_, _, origin, _), order in decided.conflicts:
        result.dead_letters.append((origin.key, dlq_value(
            f"conflict: order_number {order.order_number} seen with different content",
            origin.topic, origin.partition, origin.offset, origin.value, origin.raw_bytes,
            origin.raw_sha256)))
    for (_, _, origin, _), order in decided.too_old:
        reason = ("older than its partition's watermark minus DEDUP_HORIZON: it can no longer "
                  "be checked for duplicates, so it counts nowhere")
        result.late.append((origin.key, late_value(
            order, reason, config.windows, config.allowed_lateness_ms, missed_all=True)))
    result.duplicates = len(decided.duplicates)
    result.conflicts, result.too_old = len(decided.conflicts), len(decided.too_old)


def _shuffle(accepted: list[tuple[Tag, Order]], config: IngestConfig,
             result: IngestResult) -> None:
    """Accepted orders to their buyer's partition, per source, offsets and clocks kept."""
    by_source: dict[str, list[Positioned]] = defaultdict(list)
    for (source, offset, origin, late_clock), order in accepted:
        by_source[source].append((offset, order, origin.key, late_clock))
    for source, orders in by_source.items():
        for partition, group in group_by_buyer_partition(orders, config.buyer_partitions).items():
            result.shuffled[partition].append((source, group))
