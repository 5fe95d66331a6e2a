"""Queries read the stores from the API's thread while the worker's loop rebalances them
(tables.manager.StoreManager.reading): a store a query holds is closed only once the query
is done, and no query takes a store being closed. Real RocksDB stores."""

import asyncio
import threading

from tables.manager import StoreManager


class Writer:
    """The changelog writer (app.producer.Producer), of which a close uses only release."""

    def __init__(self) -> None:
        self.released: list[tuple[str, int]] = []

    async def write(self, *args: object, **kwargs: object) -> int:  # never called here
        raise AssertionError("no write expected")

    async def release(self, stage: str, partition: int) -> None:
        self.released.append((stage, partition))


def restored_manager(tmp_path, partitions: set[int]) -> StoreManager:  # noqa: ANN001
    """Stores for `partitions`, as after a restore (each holding `t|a` = its partition)."""
    manager = StoreManager("aggregate", tmp_path, "changelog", {}, on_crash=print,
                           writer=Writer())
    for partition in partitions:
        manager._open(partition)  # noqa: SLF001 - what on_assigned does before a restore
        manager.stores[partition].commit({"t|a": str(partition)}, changelog_offset=0)
        manager._ready[partition].set()  # noqa: SLF001 - what a finished restore does
    manager.assigned = set(partitions)
    return manager


def test_a_rebalance_closes_a_store_only_once_the_query_holding_it_is_done(tmp_path):

    async def run() -> tuple[list[str | None], bool, dict, list]:
        manager = restored_manager(tmp_path, {0, 1})
        holding, finish = threading.Event(), threading.Event()
        read: list[str | None] = []

        def query() -> None:  # the API's thread
            with manager.reading() as stores:
                holding.set()
                finish.wait(5)
                read.extend(stores[p].get("t|a") for p in sorted(stores))

        thread = threading.Thread(target=query)
        thread.start()
        await asyncio.to_thread(holding.wait, 5)
        await manager.on_revoked()
        closing = asyncio.create_task(manager.on_assigned({1}))  # partition 0 moves away
        await asyncio.sleep(0.2)
        waited = not closing.done()  # the close waits for the query
        with manager.reading() as meanwhile:  # a new query does not get partition 0
            taken = dict(meanwhile)
        finish.set()
        await closing
        await asyncio.to_thread(thread.join, 5)
        with manager.reading() as after:
            kept = sorted(after)
        await manager.close_all()
        return read, waited, taken, kept

    read, waited, taken, kept = asyncio.run(run())
    assert read == ["0", "1"]  # the query read both stores, open, after the close began
    assert waited
    assert taken == {}  # between the revocation and the assignment: nothing is ours
    assert kept == [1]


def test_a_query_without_stores_delays_no_close(tmp_path):

    async def run() -> list[tuple[str, int]]:
        manager = restored_manager(tmp_path, {0})
        with manager.reading() as stores:
            assert sorted(stores) == [0]
        await manager.on_revoked()
        await asyncio.wait_for(manager.on_assigned(set()), timeout=1)
        released = manager._writer.released  # noqa: SLF001
        await manager.close_all()
        return released

    assert asyncio.run(run()) == [("aggregate", 0)]
