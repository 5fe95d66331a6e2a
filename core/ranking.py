"""An index by count: buyer totals, and each window start's rows, in ranking order.

`/buyers` and `/windows/{name}/top` read the first k keys of the index instead of ranking
every total or row on each call. An index key's value is the total's or row's key and
value, so a read needs no other lookup. It is derived from the totals and rows in each
aggregation store and written in the same batch as they are (tables.store.Derived), never
to the changelog: a restore derives it again as it applies each batch. Rows are ranked
per window start for the windows whose `/top` ranks one start (fixed windows); a session
window's `/top` ranks sessions of many starts, and reads its rows.
"""

import sys
from collections.abc import Iterable, Mapping
from itertools import islice

import orjson

from core.schema import (
    BUYER_COUNT_KEY,
    RANK_PREFIX,
    TOTAL_PREFIX,
    TOTAL_RANK_PREFIX,
    count_order,
    name_order,
    window_prefix,
)
from core.storage import ReadMany, ReadStore
from core.windows import Window

VERSION = "1"


class RankIndex:
    """The index of one aggregation store, for the totals and the `ranked` windows' rows."""

    def __init__(self, ranked: Iterable[str]) -> None:
        self.ranked = tuple(sorted(ranked))
        self.version = f"{VERSION}:{','.join(self.ranked)}"  # another set: derived anew
        self.derived = (RANK_PREFIX,)
        self.sources = (TOTAL_PREFIX, *(window_prefix(name) for name in self.ranked))

    @classmethod
    def of(cls, windows: Iterable[Window]) -> "RankIndex":
        """The index of the windows whose `/top` ranks one window start."""
        return cls(w.name for w in windows if w.ranks_by_start)

    def derive(self, updates: Mapping[str, str | None], read: ReadMany) -> dict[str, str | None]:
        """The index's updates for a batch of store updates, against the values before."""
        keys = [key for key in updates if key.startswith(self.sources)]
        if not keys:
            return {}
        *olds, buyers = read([*keys, BUYER_COUNT_KEY])
        derived: dict[str, str | None] = {}
        added = 0
        # a buyer's total and rows share its name order; remembered for this batch only,
        # so nothing a batch allocates outlives it (memory: core.shuffle's grouping)
        orders: dict[str, str] = {}
        for key, old in zip(keys, olds, strict=True):
            new = updates[key]
            if new == old:
                continue
            was, now = _count(old), _count(new)
            head, buyer = _parts(key)
            names = orders.get(buyer)
            if names is None:
                names = orders[buyer] = _names(buyer)
            if old is not None and was != now:
                derived[f"{head}{count_order(was)}{names}"] = None
            if new is not None:
                derived[f"{head}{count_order(now)}{names}"] = f"{key}\n{new}"
            if head == TOTAL_RANK_PREFIX and (old is None or new is None):
                added += 1 if old is None else -1
        if added:
            derived[BUYER_COUNT_KEY] = str(int(buyers or 0) + added)
        return derived


def _count(value: str | None) -> int:
    """The count a total's or row's value starts with (`[count, ...`), -1 for none."""
    return -1 if value is None else int(value[1:value.index(",")])


def _parts(key: str) -> tuple[str, str]:
    """A total's or row's key as its index prefix and its buyer's JSON key."""
    if key.startswith(TOTAL_PREFIX):
        return TOTAL_RANK_PREFIX, key[len(TOTAL_PREFIX):]
    # w|<window>|<start>|<buyer json>: the rows of one start rank together
    cut = key.index("|", key.index("|", 2) + 1) + 1
    return RANK_PREFIX + key[:cut], key[cut:]


def _names(buyer: str) -> str:
    """A buyer's JSON key as its `name_order`."""
    first, last = orjson.loads(buyer)
    return name_order((first, last))


def first_ranked(store: ReadStore, prefix: str, limit: int | None) -> list[tuple[str, str]]:
    """The first `limit` (all with None) totals or rows ranked under index `prefix`, as
    `(key, value)`: one scan, so they are as one moment of the store left them."""
    entries = islice(store.scan(prefix), None if limit is None else min(limit, sys.maxsize))
    return [_entry(entry) for _, entry in entries]


def _entry(entry: str) -> tuple[str, str]:
    """An index entry's total or row: its key and value (JSON: no raw newline in either)."""
    key, value = entry.split("\n", 1)
    return key, value


def buyer_count(store: ReadStore) -> int:
    """How many buyers have a total in this store."""
    value = store.get(BUYER_COUNT_KEY)
    return 0 if value is None else int(value)

