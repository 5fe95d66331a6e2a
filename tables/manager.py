"""Opening, restoring and closing one stage's partition stores as partitions move, and
writing their changelogs.

Restores run in the background after an assignment so faust's rebalance callback
never waits on a changelog read; processing of a partition waits for its store. A
partition new to this worker is fenced first (tables.changelog), so a previous owner that
still writes is dropped from every later restore.

Queries read the stores from the API's own thread (`reading`): each store they hold is
counted, and a rebalance closes a store only once its readers are done, so no query reads
a closed store, and none waits on a batch.
"""

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from tables.changelog import (
    FENCE_KEY,
    ChangelogWriter,
    Fenced,
    Outgoing,
    Restoring,
    batch_records,
    restore,
)
from tables.store import Derived, PartitionStore, Updates

log = logging.getLogger(__name__)
READERS_POLL_S = 0.001  # a close waiting for a query to finish with its store looks this often


class StoreManager:
    """The stores of one stage: one RocksDB per assigned partition."""

    def __init__(
        self, name: str, root: Path, changelog_topic: str, client: Mapping[str, Any],
        on_crash: Callable[[BaseException], None], writer: ChangelogWriter,
        derived: Derived | None = None,
    ) -> None:
        """`derived`: keys each store derives from the rest (tables.store.Derived)."""
        self.name = name
        self._derived = derived
        self.root = root
        self.changelog_topic = changelog_topic
        self._client = client  # how the restore connects
        self._on_crash = on_crash
        self._writer = writer
        self.epochs: dict[int, int] = {}  # this owner's fence per restored partition
        self.stores: dict[int, PartitionStore] = {}
        self._ready: dict[int, asyncio.Event] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self._restore_task: asyncio.Task[None] | None = None
        self.assigned: set[int] = set()
        # queries from other threads: how many hold each store, and the stores being closed
        self._view_lock = threading.Lock()
        self._readers: dict[int, int] = {}
        self._closing: set[int] = set()

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

    async def on_assigned(self, partitions: set[int], rebuild: bool = False) -> None:
        """Close stores no longer ours, open the new ones and restore them in the background.

        `rebuild`: this worker may have been out of the group meanwhile (expelled) and gone
        on writing: what its stores hold past the new owner's fence is not the changelog's,
        so each is restored again from an empty database."""
        if self._restore_task is not None:
            self._restore_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._restore_task
        for partition in set(self.stores) - partitions if not rebuild else set(self.stores):
            await self._close(partition, destroy=rebuild)
        for partition in partitions - set(self.stores):
            self._open(partition)
        unready = {p: self.stores[p] for p in partitions if not self._ready[p].is_set()}
        self.assigned = set(partitions)
        if unready:
            log.info("%s: restoring partitions %s from %s", self.name, sorted(unready),
                     self.changelog_topic)
            self._restore_task = asyncio.create_task(self._restore(unready))

    def _open(self, partition: int) -> None:
        self.stores[partition] = PartitionStore(self.path(partition), self._derived,
                                                derive_now=False)
        self._ready[partition] = asyncio.Event()
        self._locks[partition] = asyncio.Lock()

    async def _close(self, partition: int, destroy: bool = False) -> None:
        with self._view_lock:
            self._closing.add(partition)  # no query takes it from here on
        while True:  # queries take milliseconds: wait for those that hold it
            with self._view_lock:
                if not self._readers.get(partition):
                    break
            await asyncio.sleep(READERS_POLL_S)
        async with self._locks[partition]:
            self.stores.pop(partition).close()
            if destroy:
                PartitionStore.destroy(self.path(partition))
        with self._view_lock:
            self._closing.discard(partition)
        self._ready.pop(partition).set()  # wakes batches waiting for it: they see it is gone
        self.epochs.pop(partition, None)
        del self._locks[partition]
        await self._writer.release(self.name, partition)

    async def _restore(self, stores: dict[int, PartitionStore]) -> None:
        try:
            for partition, store in stores.items():
                await self._derive(partition, store)
            fences = await asyncio.gather(*(self._write(p, [(FENCE_KEY, b"")], -1)
                                            for p in stores))
            restoring = {p: Restoring(store, fence)
                         for (p, store), fence in zip(stores.items(), fences, strict=True)}
            await restore(self._client, self.changelog_topic, restoring)
            for partition, restored in restoring.items():
                try:
                    await self._settle(partition, restored)
                except Fenced as fenced:  # expelled meanwhile: the group assigns it anew
                    log.warning("%s: %s", self.name, fenced)
                    self.assigned.discard(partition)
        except asyncio.CancelledError:
            raise
        except BaseException as error:  # noqa: BLE001 - the worker must stop, not limp on
            self._on_crash(error)
            return
        for partition in stores:
            self._ready[partition].set()
        log.info("%s: partitions %s ready", self.name, sorted(stores))

    async def _derive(self, partition: int, store: PartitionStore) -> None:
        """Derive a stale store's derived keys anew (an index, after an upgrade or another
        configuration) before its restore, a chunk per turn of the event loop."""
        if not store.stale:
            return
        log.info("%s: partition %d: deriving its derived keys anew", self.name, partition)
        steps = store.derivation()
        try:
            for _ in steps:
                await asyncio.sleep(0)
        finally:
            steps.close()  # cancelled: its RocksDB iterator goes before the store closes

    async def _settle(self, partition: int, restored: Restoring) -> None:
        """Take the partition as its owner: refuse it if another owner fenced it since, and
        rewrite the keys a dead writer left without a commit marker."""
        if restored.replay.epoch > restored.fence:
            raise Fenced(f"{self.changelog_topic}[{partition}] was fenced at offset "
                         f"{restored.replay.epoch} by another owner while this worker, "
                         f"fenced at {restored.fence}, restored it")
        self.epochs[partition] = restored.fence
        orphans = restored.replay.take()
        if orphans:
            store = restored.store
            log.info("%s: %s[%d] had %d records of an unfinished batch: rewriting their "
                     "keys' committed values", self.name, self.changelog_topic, partition,
                     len(orphans))
            await self.write(partition, store, {key: store.get(key) for key in orphans})

    async def _write(self, partition: int, records: list[tuple[bytes, bytes | None]],
                     epoch: int, outputs: list[Outgoing] | None = None,
                     consumed: dict[TopicPartition, int] | None = None) -> int:
        return await self._writer.write(self.name, self.changelog_topic, partition, records,
                                        epoch, outputs or [], consumed)

    async def write(self, partition: int, store: PartitionStore, updates: Updates,
                    check: Callable[[int], None] | None = None,
                    outputs: list[Outgoing] | None = None,
                    consumed: dict[TopicPartition, int] | None = None) -> None:
        """One batch: its `outputs`, then its updates to the changelog (a record per key,
        then a commit marker), atomically with the `consumed` input offsets where the
        broker has transactions; once the broker has them, the updates to the store.
        `check(offset)` vets the marker's offset before the store commits. Fenced (and
        nothing more of this partition is handed out) when another owner took it over."""
        epoch = self.epochs[partition]
        try:
            offset = await self._write(partition, batch_records(updates), epoch, outputs,
                                       consumed)
        except Fenced:
            self.assigned.discard(partition)  # until the group assigns it again
            raise
        if check is not None:
            check(offset)
        store.commit(updates, offset, epoch)

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
        """Restored stores, for the worker's own loop (a rebalance closes them only between
        its steps); other threads read them through `reading`."""
        return {p: s for p, s in list(self.stores.items())
                if p in self.assigned and (ready := self._ready.get(p)) is not None
                and ready.is_set()}

    @contextlib.contextmanager
    def reading(self) -> Iterator[dict[int, PartitionStore]]:
        """Restored stores, for queries from any thread: none of them is closed until the
        block ends."""
        with self._view_lock:
            view = {p: s for p, s in self.read_only_view().items() if p not in self._closing}
            for partition in view:
                self._readers[partition] = self._readers.get(partition, 0) + 1
        try:
            yield view
        finally:
            with self._view_lock:
                for partition in view:
                    if self._readers[partition] == 1:
                        del self._readers[partition]
                    else:
                        self._readers[partition] -= 1
