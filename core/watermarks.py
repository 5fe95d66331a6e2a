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

from collections.abc import Sequence
from typing import NamedTuple

import orjson

NO_WATERMARK = -(2**63)


class Channel(NamedTuple):
    """The last watermark one input carried while active, its idle lease if any, and the
    largest watermark it has reached, idle or not (where the idle rule's catch-up starts;
    an idle sender's largest input must not become its watermark: when it is active
    again, its own lower one holds the others back)."""

    watermark_ms: int = NO_WATERMARK
    idle_until_ms: int | None = None
    top_ms: int = NO_WATERMARK

    def idle_at(self, now_ms: int) -> bool:
        """Idle, and its lease still holds, at `now_ms`."""
        return self.idle_until_ms is not None and now_ms < self.idle_until_ms


def advance(channel: Channel, watermark_ms: int, idle_until_ms: int | None,
            top_ms: int = NO_WATERMARK) -> Channel:
    """The channel after a record carrying a watermark, a lease and the sender's largest;
    neither watermark ever moves back."""
    return Channel(max(channel.watermark_ms, watermark_ms), idle_until_ms,
                   max(channel.top_ms, top_ms, watermark_ms))


def encode_channel(channel: Channel) -> str:
    """Store value of a channel: `[watermark_ms, idle_until_ms | null, top_ms]`."""
    return orjson.dumps(list(channel)).decode()


def decode_channel(value: str | None) -> Channel:
    """Inverse of encode_channel; a channel never heard from has no watermark."""
    if value is None:
        return Channel()
    return Channel(*orjson.loads(value))


class Combined(NamedTuple):
    """An operator's output: the min over its active inputs, its idle lease while every
    input is idle (the earliest of theirs), and the largest watermark among them."""

    watermark_ms: int
    idle_until_ms: int | None
    top_ms: int = NO_WATERMARK


def combine(channels: Sequence[Channel], now_ms: int) -> Combined:
    """The output watermark of an operator with these input channels."""
    active = [c.watermark_ms for c in channels if not c.idle_at(now_ms)]
    top = max((max(c.top_ms, c.watermark_ms) for c in channels), default=NO_WATERMARK)
    if active or not channels:
        return Combined(min(active, default=NO_WATERMARK), None, top)
    leases = [c.idle_until_ms for c in channels if c.idle_until_ms is not None]
    return Combined(min(c.watermark_ms for c in channels), min(leases), top)


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
    start_ms = combined.top_ms
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
        self._sent: dict[object, tuple[Combined, int]] = {}  # channel -> what, when

    def sent(self, channel: object, state: Combined, now_ms: int) -> None:
        """A record carrying this state went out on `channel`."""
        self._sent[channel] = (state, now_ms)

    def due(self, channel: object, state: Combined, now_ms: int) -> bool:
        """Whether `channel` should get a watermark-only record now."""
        last = self._sent.get(channel)
        if last is None:
            return state.watermark_ms != NO_WATERMARK or state.idle_until_ms is not None
        before, at_ms = last
        if _news(state) == _news(before):
            return False
        if before.idle_until_ms is not None and state.idle_until_ms is None:
            return True  # active again: the receivers must stop leaving it out at once
        return now_ms - at_ms >= self.interval_ms

    def forget(self) -> None:
        """A new assignment: every channel is due again."""
        self._sent.clear()


def _news(state: Combined) -> tuple[int, int | None, int | None]:
    """What a receiver needs to hear again: the largest input only matters while idle."""
    return state.watermark_ms, state.idle_until_ms, (
        state.top_ms if state.idle_until_ms is not None else None)
