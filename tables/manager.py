"""Opening, restoring and closing one stage's partition stores as partitions move.

Restores run in the background after an assignment so faust's rebalance callback
never waits on a changelog read; processing of a partition waits for its store.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from tables.changelog import restore
from tables.store import PartitionStore

log = logging.getLogger(__name__)


class StoreManager:
    """The stores of one stage: one RocksDB per assigned partition."""

    def __init__(
        self, name: str, root: Path, changelog_topic: str, bootstrap: list[str],
        on_crash: Callable[[BaseException], None],
    ) -> None:
        self.name = name
        self.root = root
        self.changelog_topic = changelog_topic
        self._bootstrap = bootstrap
        self._on_crash = on_crash
        self.stores: dict[int, PartitionStore] = {}
        self._ready: dict[int, asyncio.Event] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._restore_task: asyncio.Task[None] | None = None
        self.assigned: set[int] = set()

    def path(self, partition: int) -> Path:
        """Directory of one partition's store."""
        return self.root / self.name / str(partition)

    @property
    def restoring(self) -> bool:
        """True while an assigned store is not yet restored."""
        return any(not self._ready[p].is_set() for p in self.assigned if p in self._ready)

    async def on_revoked(self) -> None:
        """Stop handing out stores and wait for batches in flight (eager rebalance)."""
        self.assigned = set()
        for lock in list(self._locks.values()):
            async with lock:
                pass

    async def on_assigned(self, partitions: set[int]) -> None:
        """Close stores no longer ours, open the new ones and restore them in the background."""
        if self._restore_task is not None:
            self._restore_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restore_task
        for partition in set(self.stores) - partitions:
            await self._close(partition)
        for partition in partitions - set(self.stores):
            self._open(partition)
        unready = {p: self.stores[p] for p in partitions if not self._ready[p].is_set()}
        self.assigned = set(partitions)
        if unready:
            log.info("%s: restoring partitions %s from %s", self.name, sorted(unready),
                     self.changelog_topic)
            self._restore_task = asyncio.create_task(self._restore(unready))

    def _open(self, partition: int) -> None:
        self.stores[partition] = PartitionStore(self.path(partition))
        self._ready[partition] = asyncio.Event()
        self._locks[partition] = asyncio.Lock()

    async def _close(self, partition: int) -> None:
        async with self._locks[partition]:
            self.stores.pop(partition).close()
        self._ready.pop(partition).set()  # wakes batches waiting for it: they see it is gone
        del self._locks[partition]

    async def _restore(self, stores: dict[int, PartitionStore]) -> None:
        try:
            await restore(self._bootstrap, self.changelog_topic, stores)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # noqa: BLE001 - the worker must stop, not limp on
            self._on_crash(error)
            return
        for partition in stores:
            self._ready[partition].set()
        log.info("%s: partitions %s ready", self.name, sorted(stores))

    @contextlib.asynccontextmanager
    async def holding(self, partition: int) -> AsyncIterator[PartitionStore | None]:
        """The partition's store, restored and locked for one batch; None if not ours."""
        while partition in self.assigned:
            ready = self._ready[partition]
            if not ready.is_set():
                await ready.wait()
                continue
            async with self._locks[partition]:
                if partition in self.assigned:
                    yield self.stores[partition]
                    return
        yield None

    async def close_all(self) -> None:
        """Close every store (worker shutdown)."""
        if self._restore_task is not None:
            self._restore_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restore_task
        self.assigned = set()
        for partition in list(self.stores):
            await self._close(partition)

    def read_only_view(self) -> dict[int, PartitionStore]:
        """Restored stores, for queries."""
        return {p: s for p, s in self.stores.items()
                if p in self.assigned and self._ready[p].is_set()}
