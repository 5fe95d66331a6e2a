"""Exactly-once input: each store remembers the last offset it applied per source stream.

A source stream is `<topic>:<partition>`. A message at or below that offset was already
applied (a replay from an old offset, or a batch redone after a crash) and is skipped;
the new offsets are written in the same batch as the state they produced.
"""

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

from core.schema import SOURCE_OFFSET_PREFIX, source_key
from core.storage import ReadMany, Scan


class HasPosition(Protocol):
    """Where a message was read: read-only, so a NamedTuple (core.ingest.RawMessage) fits."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...

    @property
    def offset(self) -> int: ...


M = TypeVar("M", bound=HasPosition)


def applied_offsets(sources: Iterable[str], read: ReadMany) -> dict[str, int]:
    """Last offset applied per source, -1 for a source never seen."""
    names = sorted(set(sources))
    values = read([source_key(s) for s in names])
    return {s: -1 if v is None else int(v) for s, v in zip(names, values, strict=True)}


def skip_applied(messages: Sequence[M], read: ReadMany) -> tuple[list[M], dict[str, str | None]]:
    """Messages beyond what was applied, in order, and the store updates that record them
    (none for a source with nothing new)."""
    applied = applied_offsets((f"{m.topic}:{m.partition}" for m in messages), read)
    fresh, moved = [], {}
    for message in messages:
        source = f"{message.topic}:{message.partition}"
        if message.offset > applied[source]:
            applied[source] = moved[source] = message.offset
            fresh.append(message)
    return fresh, {source_key(s): str(o) for s, o in moved.items()}




def held_offsets(scan: Scan) -> dict[tuple[str, int], int]:
    """Every input partition a store applied records of, and the last offset applied.

    Labels of hopped orders (`orders:p>q`) name a route, not a partition of their own:
    their origin is held under its own label too.
    """
    held = {}
    for key, value in scan(SOURCE_OFFSET_PREFIX):
        topic, _, partition = key.removeprefix(SOURCE_OFFSET_PREFIX).rpartition(":")
        if topic and partition.isascii() and partition.isdigit():
            held[(topic, int(partition))] = int(value)
    return held
