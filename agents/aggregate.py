"""The aggregate stage: orders grouped by buyer in; RocksDB state, buyer-totals, the print
sink, window-results and orders-late out.

Per partition and batch: skip orders already applied (by source offset), fold the rest,
each by its own clock, send the changelog record and the late orders, and once the broker
has them, commit the store; then publish the batch's buyer-totals and print them (a
restart publishes the last batch's again from the store: `o|totals`, the outbox). Then
close the windows the committed watermark passed: publish them to window-results and
commit that too. The batch is acked last. A timer (`tick`) moves the watermark by the
idle rule.
"""

import contextlib
import time
from collections.abc import Callable, Sequence

from agents.batches import NOT_OURS, commit_durably, consumed_offsets
from agents.ports import Guard, Sender, StageMetrics, Topics
from agents.sinks import TotalsSink, WindowSink
from core.aggregate import BatchResult, TotalChange
from core.aggregation import AggregateConfig, Clock, apply_batch, close_windows, outbox
from core.late import late_value
from core.schema import READ_KEY
from core.shuffle import Shuffled
from core.timefmt import wall_ms
from tables.changelog import BrokerLost, Fenced, Outgoing
from tables.manager import StoreManager
from tables.store import PartitionStore

TIMER_INTERVAL_S = 0.5
PUBLISHED = "totals-published"  # local: the outbox number whose buyer-totals went out


class AggregateStage:
    """The aggregation stores of this worker's by-buyer partitions, and their outputs."""

    def __init__(self, stores: StoreManager, guard: Guard, sender: Sender, topics: Topics,
                 metrics: StageMetrics, config: Callable[[], AggregateConfig],
                 totals_sinks: Sequence[TotalsSink], window_sinks: Sequence[WindowSink]) -> None:
        """`totals_sinks` get the buyer totals each batch changes, `window_sinks` the
        window rows each watermark makes final (agents.sinks)."""
        self.stores, self.guard, self.sender = stores, guard, sender
        self.topics, self.metrics, self.config = topics, metrics, config
        self.totals_sinks, self.window_sinks = totals_sinks, window_sinks
        self.all_idle_since: dict[int, int] = {}  # since when every input has been idle
        self.totals_sent: set[int] = set()  # partitions whose outbox was sent

    def assigned(self) -> None:
        """A new assignment: idle clocks and outboxes start anew."""
        self.all_idle_since.clear()
        self.totals_sent.clear()

    async def tick(self) -> None:
        """Move time on in every partition."""
        # a loss: the runtime stops the worker; fenced: the group assigns the partition anew
        with contextlib.suppress(BrokerLost, Fenced):
            for partition in sorted(self.stores.read_only_view()):
                await self.apply(partition, [])

    async def apply(self, partition: int, items: list[Shuffled]) -> str | None:
        """Apply one partition's repartition records (none: only move time on) to its
        store, exactly once per order."""
        guard, config = self.guard, self.config()
        await guard.settled()
        async with self.stores.holding(partition) as store:
            if store is None:  # revoked meanwhile: never committed, the owner applies these
                return NOT_OURS
            if not items:
                guard.check_backed()
            else:
                read = store.get(READ_KEY)
                guard.check_read(self.topics.by_buyer, partition,
                                 -1 if read is None else int(read))
            if partition not in self.totals_sent:
                await self._resend_outbox(partition, store)
            now_ms = wall_ms()
            result = apply_batch(items, config, store.get_many,
                                 Clock(now_ms, self.all_idle_since.get(partition)))
            self._track_idle(partition, result, now_ms)
            if result.changed:
                transactional = self.sender.transactional
                # with transactions buyer-totals commit with the batch; without, they go out
                # once it is committed, from the store (the outbox covers a crash between)
                totals = self._totals(partition, result.total_changes) if transactional else []
                consumed = (consumed_offsets(self.topics.by_buyer, partition, items[-1].offset)
                            if items and items[-1].offset >= 0 else None)
                started = time.perf_counter()
                await commit_durably(guard, self.stores, partition, store, result.updates,
                                     self._late(config, result) + totals, consumed)
                if not transactional:
                    totals = self._totals(partition, result.total_changes)
                    await self.sender.send_all(totals)
                operators = self.metrics.operators
                operators.waited("sinks", "output", time.perf_counter() - started)
                changes = len(result.total_changes)
                operators.moved("aggregate", result.counted, changes)
                operators.moved("sinks", changes, len(totals))
                for sink in self.totals_sinks:
                    sink.committed(result.total_changes)
                if result.outbox_sequence:
                    store.set_local(PUBLISHED, str(result.outbox_sequence))
                self.metrics.counted.inc(result.counted)
                self.metrics.late.inc(len(result.late))
            await self._close(config, partition, store)
        return None

    async def _close(self, config: AggregateConfig, partition: int,
                     store: PartitionStore) -> None:
        """Publish and delete what the watermark passed, in steps of a bounded number of
        rows (core.windows.CLOSE_ROWS), each committed before the next is read."""
        more = True
        while more:
            closing = close_windows(config, store.get_many, store.scan)
            more = closing.more
            if not closing.changed:
                return
            records = [record for sink in self.window_sinks
                       for record in sink.records(closing.finals)]
            started = time.perf_counter()
            await commit_durably(self.guard, self.stores, partition, store, closing.updates,
                                 records)
            operators = self.metrics.operators
            operators.waited("sinks", "output", time.perf_counter() - started)
            operators.moved("aggregate", 0, len(closing.finals))
            operators.moved("sinks", len(closing.finals), len(records))

    async def _resend_outbox(self, partition: int, store: PartitionStore) -> None:
        """After a crash between a commit and its buyer-totals, or a restore elsewhere: the
        last batch's buyers' totals again, from the store (never an older value)."""
        sequence, changes = outbox(store.get_many)
        if (sequence and store.get_local(PUBLISHED) != str(sequence)
                and not self.sender.transactional):  # committed with their batch there
            await self.sender.send_all(self._totals(partition, changes))
            store.set_local(PUBLISHED, str(sequence))
        self.totals_sent.add(partition)

    def _track_idle(self, partition: int, result: BatchResult, now_ms: int) -> None:
        """Since when every channel of the partition has been idle (the idle rule's clock)."""
        if result.all_idle:
            self.all_idle_since.setdefault(partition, now_ms)
        else:
            self.all_idle_since.pop(partition, None)

    def _totals(self, partition: int, changes: Sequence[TotalChange]) -> list[Outgoing]:
        """The totals sinks' records of the changed buyers."""
        return [record for sink in self.totals_sinks
                for record in sink.records(partition, changes)]

    def _late(self, config: AggregateConfig, result: BatchResult) -> list[Outgoing]:
        return [(self.topics.late, item.key, late_value(
            item.order, f"late: {len(item.missed)} of its windows had closed before it "
            "arrived", config.windows, config.allowed_lateness_ms, missed=item.missed), None)
            for item in result.late]
