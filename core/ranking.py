"""An index by count: buyer totals, and each window start's rows, in ranking order.

`/buyers` and `/windows/{name}/top` read the first k keys of the index instead of ranking
every total or row on each call. It is derived from the totals and rows in each
aggregation store and written in the same batch as they are (tables.store.Derived), never
to the changelog: a restore derives it again as it applies each batch. Rows are ranked
per window start for the windows whose `/top` ranks one start (fixed windows); a session
window's `/top` ranks sessions of many starts, and reads its rows.
"""

import sys
from collections.abc import Iterable, Mapping
from functools import lru_cache
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
        for key, old in zip(keys, olds, strict=True):
            new = updates[key]
            was, now = _count(old), _count(new)
            if was == now:
                continue
            head, names = _parts(key)
            if was is not None:
                derived[f"{head}{count_order(was)}{names}"] = None
            if now is not None:
                derived[f"{head}{count_order(now)}{names}"] = key
            if head == TOTAL_RANK_PREFIX and (was is None or now is None):
                added += 1 if was is None else -1
        if added:
            derived[BUYER_COUNT_KEY] = str(int(buyers or 0) + added)
        return derived


def _count(value: str | None) -> int | None:
    """The count a total's or row's value starts with (`[count, ...`)."""
    return None if value is None else int(value[1:value.index(",")])


def _parts(key: str) -> tuple[str, str]:
    """A total's or row's key as its index prefix and its buyer's `name_order`."""
    if key.startswith(TOTAL_PREFIX):
        return TOTAL_RANK_PREFIX, _names(key[len(TOTAL_PREFIX):])
    # w|<window>|<start>|<buyer json>: the rows of one start rank together
    cut = key.index("|", key.index("|", 2) + 1) + 1
    return RANK_PREFIX + key[:cut], _names(key[cut:])


@lru_cache(maxsize=4_096)
def _names(buyer: str) -> str:
    first, last = orjson.loads(buyer)
    return name_order((first, last))


def first_ranked(store: ReadStore, prefix: str, limit: int | None) -> list[tuple[str, str]]:
    """The first `limit` (all with None) keys ranked under index `prefix`, with their
    values: the keys the index names, read after it (a batch between may have moved them:
    callers sort what they get by its own values)."""
    keys = [key for _, key in islice(store.scan(prefix),
                                     None if limit is None else min(limit, sys.maxsize))]
    return [(key, value) for key, value in zip(keys, store.get_many(keys), strict=True)
            if value is not None]


def buyer_count(store: ReadStore) -> int:
    """How many buyers have a total in this store."""
    value = store.get(BUYER_COUNT_KEY)
    return 0 if value is None else int(value)

