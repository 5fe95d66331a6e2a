"""The index by count (core.ranking) in a real RocksDB store, against rankings computed
here from the totals and rows the store holds."""

import asyncio
import random

import orjson
import pytest

from core.fixed import parse_window_spec
from core.ranking import RankIndex, buyer_count, first_ranked
from core.schema import rank_order, row_rank_prefix
from core.sessions import SESSION_KIND
from core.windows import parse_windows
from tables.manager import StoreManager
from tables.store import PartitionStore

# names whose order is easy to get wrong: one a prefix of another, NUL, non-ASCII, "|"
NAMES = ["", "A", "Ab", "A\0", "A\0b", "B", "a", "é", "Ω", "|", "A|b", "\0", "Zoë"]
START_MS = 1_700_000_000_000


def expected_order(count, first, last):
    return (-count, last, first)


def test_rank_order_sorts_as_count_descending_then_last_then_first_name():
    rng = random.Random(3)
    items = [(rng.randint(0, 5), rng.choice(NAMES), rng.choice(NAMES)) for _ in range(2_000)]
    by_text = sorted(set(items), key=lambda i: rank_order(i[0], (i[1], i[2])))
    assert by_text == sorted(set(items), key=lambda i: expected_order(*i))


def total_key(first, last):
    return "t|" + orjson.dumps([first, last]).decode()


def row_key(window, start_ms, first, last):
    return f"w|{window}|{start_ms + 100_000_000_000_000:016d}|" + orjson.dumps(
        [first, last]).decode()


def ranked_here(store, prefix):
    """What the store holds under `prefix`, ranked from its values."""
    found = []
    for key, value in store.scan(prefix):
        first, last = orjson.loads(key[key.index("["):])
        found.append((expected_order(orjson.loads(value)[0], first, last), key, value))
    return [(key, value) for _, key, value in sorted(found)]


def random_batch(rng, store, windows):
    """Updates as the aggregation writes them: totals and rows set, some deleted."""
    updates = {}
    for _ in range(rng.randint(1, 30)):
        first, last = rng.choice(NAMES), rng.choice(NAMES)
        if rng.random() < 0.5:
            key = total_key(first, last)
        else:
            key = row_key(rng.choice(windows), START_MS + 10_000 * rng.randint(0, 2), first,
                          last)
        if rng.random() < 0.1:
            updates[key] = None
        else:
            updates[key] = orjson.dumps([rng.randint(1, 9), "1.00", "1.00", "1.00"]).decode()
    return updates


def assert_index_right(store, windows):
    totals = ranked_here(store, "t|")
    assert first_ranked(store, "k|t|", None) == totals
    assert first_ranked(store, "k|t|", 3) == totals[:3]
    assert buyer_count(store) == len(totals)
    for window in windows:
        for step in range(3):
            start_ms = START_MS + 10_000 * step
            rows = ranked_here(store, row_key(window, start_ms, "", "")[:-len('["",""]')])
            assert first_ranked(store, row_rank_prefix(window, start_ms), None) == rows
            assert first_ranked(store, row_rank_prefix(window, start_ms), 2) == rows[:2]


def test_the_index_follows_every_batch_of_totals_and_rows(tmp_path):
    windows = ["tumble_10s", "hop_1m_10s"]
    store = PartitionStore(tmp_path / "0", RankIndex(windows))
    rng = random.Random(7)
    for offset in range(200):
        store.commit(random_batch(rng, store, windows), offset)
        if offset % 20 == 0:
            assert_index_right(store, windows)
    assert_index_right(store, windows)
    assert buyer_count(store) > 20  # the batches made many buyers, and deleted some


def test_a_store_written_without_the_index_or_for_other_windows_derives_it_anew(tmp_path):
    rng = random.Random(11)
    plain = PartitionStore(tmp_path / "0")
    for offset in range(50):
        plain.commit(random_batch(rng, plain, ["tumble_10s", "hop_1m_10s"]), offset)
    plain.close()
    one = PartitionStore(tmp_path / "0", RankIndex(["tumble_10s"]))
    assert_index_right(one, ["tumble_10s"])
    assert first_ranked(one, row_rank_prefix("hop_1m_10s", START_MS), None) == []
    one.close()
    both = PartitionStore(tmp_path / "0", RankIndex(["tumble_10s", "hop_1m_10s"]))
    assert_index_right(both, ["tumble_10s", "hop_1m_10s"])
    both.close()
    again = PartitionStore(tmp_path / "0", RankIndex(["hop_1m_10s"]))
    assert first_ranked(again, row_rank_prefix("tumble_10s", START_MS), None) == []
    assert_index_right(again, ["hop_1m_10s"])


def test_writes_by_code_without_the_index_are_indexed_on_the_next_open(tmp_path, monkeypatch):
    monkeypatch.setattr("tables.store.REDERIVE_CHUNK", 3)  # many chunks: the count adds up
    windows = ["tumble_10s"]
    rng = random.Random(5)
    store = PartitionStore(tmp_path / "0", RankIndex(windows))
    for offset in range(20):
        store.commit(random_batch(rng, store, windows), offset)
    store.close()
    older = PartitionStore(tmp_path / "0")  # an older orderstream: rows without the index
    for offset in range(20, 40):
        older.commit(random_batch(rng, older, windows), offset)
    older.close()
    again = PartitionStore(tmp_path / "0", RankIndex(windows))
    assert_index_right(again, windows)


def test_only_windows_ranked_by_start_are_indexed():
    tumble, hop = parse_window_spec("tumble:10s"), parse_window_spec("hop:1m/10s")
    [session] = parse_windows("session:30s", SESSION_KIND)
    assert RankIndex.of([tumble, session, hop]).ranked == ("hop_1m_10s", "tumble_10s")


@pytest.mark.parametrize("limit", [0, 1, 10**30])
def test_any_limit_reads_at_most_what_there_is(tmp_path, limit):
    store = PartitionStore(tmp_path / "0", RankIndex([]))
    store.commit({total_key("A", "B"): "[2,\"3.00\"]", total_key("C", "D"): "[5,\"1.00\"]"}, 0)
    expected = [(total_key("C", "D"), "[5,\"1.00\"]"), (total_key("A", "B"), "[2,\"3.00\"]")]
    assert first_ranked(store, "k|t|", limit) == expected[:limit]


def test_a_worker_derives_a_stale_store_in_steps_that_leave_its_event_loop_free(
        tmp_path, monkeypatch):
    monkeypatch.setattr("tables.store.REDERIVE_CHUNK", 3)
    windows = ["tumble_10s"]
    rng = random.Random(13)
    plain = PartitionStore(tmp_path / "aggregate" / "0")  # written by code without the index
    for offset in range(30):
        plain.commit(random_batch(rng, plain, windows), offset)
    plain.close()
    manager = StoreManager("aggregate", tmp_path, "changelog", {}, on_crash=print,
                           writer=None, derived=RankIndex(windows))

    async def run() -> int:
        manager._open(0)  # noqa: SLF001 - what on_assigned does before a restore
        store = manager.stores[0]
        assert store.stale
        turns = 0

        async def meanwhile() -> None:
            nonlocal turns
            while True:
                turns += 1
                await asyncio.sleep(0)

        other = asyncio.create_task(meanwhile())
        await manager._derive(0, store)  # noqa: SLF001 - the first step of a restore
        other.cancel()
        assert not store.stale
        assert_index_right(store, windows)
        store.close()
        return turns

    assert asyncio.run(run()) > 10  # the loop ran between the chunks of 3 keys


def test_a_derivation_cut_short_starts_over_on_the_next_open(tmp_path, monkeypatch):
    monkeypatch.setattr("tables.store.REDERIVE_CHUNK", 3)
    windows = ["tumble_10s", "hop_1m_10s"]
    rng = random.Random(17)
    plain = PartitionStore(tmp_path / "0")
    for offset in range(30):
        plain.commit(random_batch(rng, plain, windows), offset)
    plain.close()
    cut = PartitionStore(tmp_path / "0", RankIndex(windows), derive_now=False)
    steps = cut.derivation()
    for _ in range(4):  # a few chunks, then the worker stops
        next(steps)
    steps.close()
    cut.close()
    again = PartitionStore(tmp_path / "0", RankIndex(windows))
    assert not again.stale
    assert_index_right(again, windows)
