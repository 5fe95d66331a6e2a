"""The ingest step over one batch of raw messages: parse, dead-letter the invalid,
group the valid by the partition owning their buyer."""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from core.parse import InvalidOrder, parse_order
from core.shuffle import Positioned, encode_shuffle, group_by_buyer_partition
from core.sinks import dlq_value


class RawMessage(NamedTuple):
    """A message as read from the orders topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass(slots=True)
class IngestResult:
    """What one batch produces: DLQ records and one repartition record per buyer partition."""

    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)
    shuffled: list[tuple[int, bytes]] = field(default_factory=list)  # (partition, value)
    valid: int = 0


def ingest_batch(messages: Iterable[RawMessage], partitions: int) -> IngestResult:
    """Parse every message; valid orders go to their buyer's partition with their offsets."""
    result = IngestResult()
    by_source: dict[str, list[Positioned]] = defaultdict(list)
    for message in messages:
        try:
            order = parse_order(message.value)
        except InvalidOrder as error:
            result.dead_letters.append((message.key, dlq_value(
                str(error), message.topic, message.partition, message.offset, message.value)))
            continue
        by_source[f"{message.topic}:{message.partition}"].append((message.offset, order))
    for source, orders in by_source.items():
        result.valid += len(orders)
        for partition, group in group_by_buyer_partition(orders, partitions).items():
            result.shuffled.append((partition, encode_shuffle(source, group)))
    return result
