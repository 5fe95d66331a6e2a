"""Watermarks as Flink makes them (SPEC.md, Event time), as plain functions over channels.

Each orders partition is a source whose watermark is the largest order time read from it,
in offset order. It travels with the records through every hop, and an operator's
watermark is the minimum over its input channels, each of which carries the watermark of
whoever sends on it:
- a dedup partition p (the ingest stage) has its own orders partition p as one input, and
  every other orders partition q as another, through the rekey topic (`via` q): an order
  that hops to its owner is never overtaken by its origin's watermark;
- an aggregation partition has each dedup partition as an input, through the repartition
  topic (`carrier` p).

A channel whose sender declares it idle (a source silent for IDLE_TIMEOUT with nothing
left to read, and an operator all of whose inputs are idle) carries a lease: until
`idle_until_ms` on the sender's wall clock it holds nobody back. Without renewal it is
active again at its last watermark, so a source whose owner is gone holds the others.
"""

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import orjson

NO_WATERMARK = -(2**63)


class Channel(NamedTuple):
    """The last watermark one input carried, and its idle lease, if any."""

    watermark_ms: int = NO_WATERMARK
    idle_until_ms: int | None = None

    def idle_at(self, now_ms: int) -> bool:
        """Idle, and its lease still holds, at `now_ms`."""
        return self.idle_until_ms is not None and now_ms < self.idle_until_ms


def advance(channel: Channel, watermark_ms: int, idle_until_ms: int | None) -> Channel:
    """The channel after a record carrying a watermark and a lease; it never moves back."""
    return Channel(max(channel.watermark_ms, watermark_ms), idle_until_ms)


def encode_channel(channel: Channel) -> str:
    """Store value of a channel: `[watermark_ms, idle_until_ms | null]`."""
    return orjson.dumps(list(channel)).decode()


def decode_channel(value: str | None) -> Channel:
    """Inverse of encode_channel; a channel never heard from has no watermark."""
    if value is None:
        return Channel()
    watermark_ms, idle_until_ms = orjson.loads(value)
    return Channel(watermark_ms, idle_until_ms)


class Combined(NamedTuple):
    """An operator's output: min over active inputs, or, when all are idle, the largest
    watermark among them with the earliest lease (the output is idle only while all are)."""

    watermark_ms: int
    idle_until_ms: int | None


def combine(channels: Sequence[Channel], now_ms: int) -> Combined:
    """The output watermark of an operator with these input channels."""
    active = [c.watermark_ms for c in channels if not c.idle_at(now_ms)]
    if active or not channels:
        return Combined(min(active, default=NO_WATERMARK), None)
    leases = [c.idle_until_ms for c in channels if c.idle_until_ms is not None]
    return Combined(max(c.watermark_ms for c in channels), min(leases))


def last_window_final_ms(latest_order_ms: int, sizes_slides: Iterable[tuple[int, int]],
                         lateness_ms: int) -> int:
    """The watermark at which every window holding `latest_order_ms` is final."""
    return max(latest_order_ms - latest_order_ms % slide + size
               for size, slide in sizes_slides) + lateness_ms


def idle_catch_up_ms(combined: Combined, all_idle_since_ms: int | None, now_ms: int,
                     idle_timeout_ms: int, final_at_ms: int) -> int:
    """When every input has been idle for IDLE_TIMEOUT: the watermark follows the wall
    clock from the largest input watermark until `final_at_ms` (every window holding an
    order final). NO_WATERMARK otherwise."""
    if combined.idle_until_ms is None or all_idle_since_ms is None:
        return NO_WATERMARK
    following_ms = now_ms - all_idle_since_ms - idle_timeout_ms
    if following_ms < 0:
        return NO_WATERMARK
    start_ms = combined.watermark_ms
    return max(start_ms, min(start_ms + following_ms, final_at_ms))


class Emitter:
    """Which output channels are due a watermark-only record.

    A record with orders always carries the current watermark. A channel that got none
    gets a watermark-only record when what it would carry changed, at most once per
    `interval_ms`, so that a quiet stream does not multiply internal records. In memory:
    after a restart everything is due once, which is harmless (channels only move on).
    """

    def __init__(self, interval_ms: int) -> None:
        self.interval_ms = interval_ms
        self._sent: dict[object, tuple[int, int | None, int]] = {}  # channel -> wm, lease, at

    def sent(self, channel: object, watermark_ms: int, idle_until_ms: int | None,
             now_ms: int) -> None:
        """A record carrying this state went out on `channel`."""
        self._sent[channel] = (watermark_ms, idle_until_ms, now_ms)

    def due(self, channel: object, watermark_ms: int, idle_until_ms: int | None,
            now_ms: int) -> bool:
        """Whether `channel` should get a watermark-only record now."""
        last = self._sent.get(channel)
        if last is None:
            return watermark_ms != NO_WATERMARK or idle_until_ms is not None
        last_wm, last_lease, at_ms = last
        if (watermark_ms, idle_until_ms) == (last_wm, last_lease):
            return False
        if last_lease is not None and idle_until_ms is None:
            return True  # active again: the receivers must stop leaving it out at once
        return now_ms - at_ms >= self.interval_ms

    def forget(self) -> None:
        """A new assignment: every channel is due again."""
        self._sent.clear()
