"""The ingest stage: orders (and copies rekeyed by order number) in; invalid ones and
conflicts to the DLQ, orders too old to check to orders-late, the rest deduplicated in
the partition's RocksDB store and shuffled by buyer, every record carrying the watermark.

Per partition and batch: skip offsets already applied, decide, send everything the batch
produces together with its changelog record, and only once the broker has it all, commit
the store and ack the batch. A timer (`tick`) renews idle leases and sends watermark-only
records to the channels that are due one (core.watermarks).
"""

import contextlib
import time
from collections.abc import Callable

from agents.batches import NOT_OURS, Peek, commit_durably, consumed_offsets
from agents.ports import Guard, Highwater, Sender, StageMetrics, Topics
from core.idleness import SourceIdleness
from core.ingest import (
    Clock,
    IngestConfig,
    IngestResult,
    RawMessage,
    channel_records,
    ingest_partition,
    may_take,
    next_batch,
)
from core.sources import applied_offsets
from core.timefmt import wall_ms
from core.watermarks import Emitter
from tables.changelog import BrokerLost, Fenced, Outgoing
from tables.manager import StoreManager
from tables.store import PartitionStore

TIMER_INTERVAL_S = 0.25
# At most one watermark-only record per channel this often, and a quarter of IDLE_TIMEOUT
# at most, so that a renewed idle lease always reaches the receivers before the last ends.
WATERMARK_INTERVAL_MS = 1000


class IngestStage:
    """The dedup stores of this worker's orders partitions, and what they decide."""

    def __init__(self, stores: StoreManager, guard: Guard, sender: Sender, topics: Topics,
                 metrics: StageMetrics, config: Callable[[], IngestConfig],
                 highwater: Highwater, idle_timeout_ms: int) -> None:
        self.stores, self.guard, self.sender = stores, guard, sender
        self.topics, self.metrics, self.config = topics, metrics, config
        self.highwater = highwater
        # event time (core.watermarks): which orders partitions are idle, what each output
        # channel last carried
        self.sources = SourceIdleness(idle_timeout_ms)
        self.emitter = Emitter(min(WATERMARK_INTERVAL_MS, idle_timeout_ms // 4))
        self._lagging: set[int] = set()  # orders partitions with a lag series

    def assigned(self, partitions: set[int], now_ms: int) -> None:
        """A new assignment: silence counted from now, every channel due anew, and no lag
        shown for an orders partition this worker no longer reads."""
        self.sources.assigned(partitions, now_ms)
        self.emitter.forget()
        for partition in self._lagging - partitions:
            self.metrics.lag.remove(self.topics.orders, str(partition))
        self._lagging &= partitions

    async def tick(self) -> None:
        """Move time on in every partition (no batch: no intent to keep)."""
        # a loss: the runtime stops the worker; fenced: the group assigns the partition anew
        with contextlib.suppress(BrokerLost, Fenced):
            for partition in sorted(self.stores.read_only_view()):
                await self.apply(partition, [])

    async def apply(self, partition: int, messages: list[RawMessage],
                    peek: Peek | None = None) -> bool | str:
        """Apply one partition's messages (none: only move time on) to its dedup store and
        send what they produce; False when another batch must go first (core.ingest,
        `m|next`)."""
        guard, topics = self.guard, self.topics
        await guard.settled()
        async with self.stores.holding(partition) as store:
            if store is None:  # revoked meanwhile: never committed, the owner processes these
                return NOT_OURS
            take = None
            if not messages:
                guard.check_backed()
            else:
                source = f"{messages[0].topic}:{messages[0].partition}"
                guard.check_read(messages[0].topic, messages[0].partition,
                                 applied_offsets([source], store.get_many)[source])
                take = may_take(source, messages[-1].offset, store.get_many)
                if not take.now:
                    return False
            now_ms = wall_ms()
            if messages and messages[0].topic == topics.orders:  # a batch is one partition's
                self.sources.heard(partition, now_ms)
            self._check_backlog(partition, store, messages)
            clock = Clock(now_ms, self.sources.lease(partition, now_ms))
            config = self.config()
            result = ingest_partition(partition, messages, config, store.get_many, store.scan,
                                      clock)
            self._count(result)
            outputs = self._outputs(partition, result, clock, config)
            self.metrics.operators.moved("repartition", _passed(result), sum(
                topic in (topics.rekey, topics.by_buyer) for topic, _, _, _ in outputs))
            # only a batch that decides copies must be named before its outputs leave: the
            # order of the others changes no decision
            if take is not None and take.name_first and result.decided:
                await commit_durably(guard, self.stores, partition, store,
                                     next_batch(source, messages[-1].offset), [])
            following = peek() if take is not None and take.name_next and peek else None
            if following is not None:
                result.updates.update(next_batch(*following))  # spares it a commit of its own
            consumed = consumed_offsets(messages[-1].topic, messages[-1].partition,
                                        messages[-1].offset) if messages else None
            started = time.perf_counter()
            if result.updates or (outputs and self.sender.transactional):
                await commit_durably(guard, self.stores, partition, store, result.updates,
                                     outputs, consumed)
            elif outputs:
                await self.sender.send_all(outputs)
            self.metrics.operators.waited("repartition", "output",
                                          time.perf_counter() - started)
            return True

    def _outputs(self, partition: int, result: IngestResult, clock: Clock,
                 config: IngestConfig) -> list[Outgoing]:
        """Dead letters, late orders, and the records of the channels that have orders or
        are due a watermark."""
        topics = self.topics
        rekeyed, shuffled = channel_records(partition, result, clock, self.emitter, config)
        outputs: list[Outgoing] = [(topics.dlq, k, v, None) for k, v in result.dead_letters]
        outputs += [(topics.late, k, v, None) for k, v in result.late]
        outputs += [(topics.rekey, None, v, owner) for owner, v in rekeyed]
        outputs += [(topics.by_buyer, None, v, target) for target, v in shuffled]
        return outputs

    def _check_backlog(self, partition: int, store: PartitionStore,
                       messages: list[RawMessage]) -> None:
        """Whether the orders partition has records left to read, after these messages; as
        a gauge and for the idle rule."""
        orders = self.topics.orders
        highwater = self.highwater(orders, partition)
        if highwater is None:
            self.sources.backlog(partition, True)
            return
        if messages and messages[-1].topic == orders:
            last = messages[-1].offset
        else:
            source = f"{orders}:{partition}"
            last = applied_offsets([source], store.get_many)[source]
        lag = max(highwater - last - 1, 0)
        self.metrics.lag.labels(orders, str(partition)).set(lag)
        self._lagging.add(partition)
        self.sources.backlog(partition, lag > 0)

    def _count(self, result: IngestResult) -> None:
        metrics = self.metrics
        operators = metrics.operators
        operators.moved("source", result.read, result.read)
        operators.moved("parse", result.parsed, result.parsed - result.invalid)
        operators.moved("dedup", result.decided, _passed(result))
        metrics.processed.inc(result.read)
        metrics.invalid.inc(result.invalid)
        metrics.duplicate.inc(result.duplicates)
        metrics.conflict.inc(result.conflicts)
        metrics.late.inc(result.too_old)


def _passed(result: IngestResult) -> int:
    """Orders the dedup step passed on: first copies."""
    return result.decided - result.duplicates - result.conflicts - result.too_old
