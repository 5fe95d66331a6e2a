"""The rule both stages follow for a batch of one partition, whoever delivers it."""

from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import TopicPartition

from agents.ports import Guard
from tables.changelog import Outgoing
from tables.manager import StoreManager
from tables.store import PartitionStore, Updates

Position = tuple[str, int]  # a batch's source (`<topic>:<partition>`) and last offset
Peek = Callable[[], Position | None]
# A handler's answer for a batch of a partition no longer this worker's (revoked meanwhile)
NOT_OURS = "not ours"
# (partition, items, the batch the lane takes next) -> False to put this one aside,
# NOT_OURS when not applied for that
PartitionHandler = Callable[[int, list[Any], Peek], Awaitable[bool | str | None]]


async def commit_durably(guard: Guard, stores: StoreManager, partition: int,
                         store: PartitionStore, updates: Updates, outputs: list[Outgoing],
                         consumed: dict[TopicPartition, int] | None = None) -> None:
    """The rule both stages follow: a batch's outputs, its changelog records (a record per
    key, then a commit marker) and, with transactions, its `consumed` input offsets go out
    as one batch (StoreManager.write); once the broker has them all, the store commits
    (with the changelog offset it now reflects). A commit marker the broker has means
    outputs it has too: a restore never marks a batch applied whose outputs were lost,
    and outputs without their commit marker are sent again by the redo, which downstream
    skips (without transactions) or never sees (a transaction aborted)."""
    guard.check_backed()
    reflected = store.changelog_offset
    await stores.write(partition, store, updates, lambda offset: guard.check_written(
        stores.changelog_topic, partition, offset, reflected), outputs, consumed)


def consumed_offsets(topic: str, partition: int, last: int) -> dict[TopicPartition, int]:
    """The input position after a batch whose last record is at `last`."""
    return {TopicPartition(topic, partition): last + 1}
