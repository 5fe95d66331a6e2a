"""The aggregate stage's order of sends (agents.aggregate): buyer-totals go out after the
commit, from the store, so a worker that dies mid-batch and redoes it cut otherwise never
makes a buyer's published count go back. Real RocksDB stores; the producer is a fake
that records what it is asked to send and can die on a changelog record."""

import asyncio
import contextlib
from decimal import Decimal
from types import SimpleNamespace

import orjson

from agents.aggregate import AggregateStage
from agents.sinks import BuyerTotalsSink, WindowResultsSink
from app.guard import BrokerGuard
from app.metrics import Metrics
from app.settings import Settings
from app.topics import topic_names
from core.aggregation import AggregateConfig
from core.models import Order
from core.shuffle import Shuffled
from core.windows import CLOSE_ROWS
from tables.changelog import BrokerLost
from tables.manager import StoreManager
from tables.store import PartitionStore


class Died(Exception):
    """The worker was killed here."""


class Producer:
    transactional = False  # tansu's way: outputs, then the changelog, then buyer-totals

    def __init__(self, changelog: str) -> None:
        self.changelog, self.sent, self.die_on_changelog = changelog, [], False

    async def send_all(self, records):  # noqa: ANN001, ANN201
        records = list(records)
        if self.die_on_changelog and any(topic == self.changelog for topic, *_ in records):
            # the changelog record is lost; what went with it to other partitions lands
            self.die_on_changelog = False
            self.sent.extend(r for r in records if r[0] != self.changelog)
            raise Died
        self.sent.extend(records)
        return [SimpleNamespace(offset=len(self.sent) + i) for i in range(len(records))]

    async def write(self, stage, topic, partition, records, epoch, outputs=(),  # noqa: ANN001, ANN201
                    consumed=None):  # noqa: ANN001
        """A batch (app.producer.Producer.write, without transactions): the outputs, then
        the changelog records; the last one's offset."""
        if outputs:
            await self.send_all(outputs)
        await self.send_all([(topic, key, value, partition) for key, value in records])
        return len(self.sent) - 1


class Stores:
    """The store manager of one partition (tables.manager.StoreManager.write, for real)."""

    write = StoreManager.write
    _write = StoreManager._write

    def __init__(self, store: PartitionStore, changelog: str, writer: Producer) -> None:
        self.store, self.changelog_topic, self._writer = store, changelog, writer
        self.name, self.epochs, self.assigned = "aggregate", {0: 0}, {0}

    @contextlib.asynccontextmanager
    async def holding(self, partition):  # noqa: ANN001, ANN201
        yield self.store


async def settled() -> None:
    """The broker checks out (app.guard.BrokerGuard.settled)."""


def runtime_on(store: PartitionStore) -> SimpleNamespace:
    """The stage on one partition's store, with a fake producer; the namespace is its
    guard (checks that pass), so a test can swap a check."""
    settings = Settings(print_sink=False)
    names = topic_names(settings)
    producer = Producer(names.aggregate_changelog)
    runtime = SimpleNamespace(
        settings=settings, names=names, producer=producer,
        check_read=lambda topic, partition, applied: None, check_backed=lambda: None,
        settled=settled, fail=lambda error: None,
        check_written=lambda topic, partition, offset, reflected: None)
    config = AggregateConfig(settings.windows, settings.allowed_lateness,
                             settings.window_retention, (), carriers=1,
                             idle_timeout_ms=settings.idle_timeout)
    runtime.stage = AggregateStage(
        Stores(store, names.aggregate_changelog, producer), runtime, producer, names,
        Metrics(), lambda: config, [BuyerTotalsSink(names.buyer_totals, lambda p: p)],
        [WindowResultsSink(names.window_results)])
    return runtime


async def apply_partition(runtime: SimpleNamespace, partition: int,
                          items: list[Shuffled]) -> None:
    await runtime.stage.apply(partition, items)


def batch(*offsets: int) -> list[Shuffled]:
    orders = [(o, Order(o, Decimal("1.00"), "Ana", "Ruiz", 1_000 + o),
               None, None) for o in offsets]
    return [Shuffled(0, 1_000 + max(offsets), None, [("orders:0", orders)])]


def published_counts(runtime: SimpleNamespace) -> list[int]:
    return [orjson.loads(value)["count"] for topic, _, value, _ in runtime.producer.sent
            if topic == runtime.names.buyer_totals]


async def redo_after_a_kill(tmp_path) -> SimpleNamespace:  # noqa: ANN001
    store = PartitionStore(tmp_path / "0")
    runtime = runtime_on(store)
    await apply_partition(runtime, 0, batch(0, 1, 2, 3, 4))  # counts 5
    runtime.producer.die_on_changelog = True
    with contextlib.suppress(Died):  # 5, 6 and 7 together: killed before its commit
        await apply_partition(runtime, 0, batch(5, 6))
    restarted = runtime_on(store)  # the same store, a new process
    restarted.producer.sent = runtime.producer.sent
    await apply_partition(restarted, 0, batch(5))  # the redo, cut shorter
    await apply_partition(restarted, 0, batch(6))
    store.close()
    return restarted


def test_a_redo_cut_otherwise_never_makes_a_published_total_go_back(tmp_path):

    runtime = asyncio.run(redo_after_a_kill(tmp_path))
    counts = published_counts(runtime)
    assert counts == sorted(counts) and counts[-1] == 7
    assert counts == [5, 6, 7]  # the killed attempt published nothing


def test_after_a_kill_between_the_commit_and_its_totals_the_next_start_sends_them(tmp_path):

    async def run() -> list[int]:
        store = PartitionStore(tmp_path / "0")
        runtime = runtime_on(store)

        async def die(records):  # noqa: ANN001, ANN202
            if any(topic == runtime.names.buyer_totals for topic, *_ in records):
                raise Died
            return await Producer.send_all(runtime.producer, records)

        runtime.producer.send_all = die  # the commit lands, its totals do not
        with contextlib.suppress(Died):
            await apply_partition(runtime, 0, batch(0, 1))
        restarted = runtime_on(store)
        await apply_partition(restarted, 0, [])  # any first call on the partition
        again = runtime_on(store)  # a clean restart after that repeats nothing
        await apply_partition(again, 0, [])
        store.close()
        return published_counts(restarted) + published_counts(again)

    assert asyncio.run(run()) == [2]


def test_a_changelog_that_went_back_stops_the_batch_before_the_store_commits(tmp_path):

    async def run() -> tuple[list, int, int]:
        store = PartitionStore(tmp_path / "0")
        runtime = runtime_on(store)
        await apply_partition(runtime, 0, batch(0, 1))  # changelog offset 1 or more
        reflected = store.changelog_offset
        losses: list = []

        def lost(loss):  # noqa: ANN001, ANN202
            losses.append(loss)
            runtime.check_backed = lambda: (_ for _ in ()).throw(BrokerLost(loss.detail))

        runtime.broker_lost = lost
        runtime.check_written = lambda topic, partition, offset, reflected: (
            BrokerGuard.check_written(runtime, topic, partition, offset, reflected))
        runtime.producer.sent = []  # an emptied broker: offsets start at 0 again
        with contextlib.suppress(BrokerLost):
            await apply_partition(runtime, 0, batch(2))
        offset = store.changelog_offset
        store.close()
        return losses, reflected, offset

    losses, reflected, offset = asyncio.run(run())
    assert offset == reflected  # the store did not take the batch
    [loss] = losses
    assert list(loss.behind) == [topic_names(Settings()).aggregate_changelog]
    assert f"but the state reflects offset {reflected}" in loss.detail


def test_a_watermark_far_ahead_closes_in_bounded_steps_each_committed(tmp_path):
    """More rows than a closing step takes (core.windows.CLOSE_ROWS): every row is
    published once, over several commits, then deleted past retention, and the loop ends."""
    buyers = CLOSE_ROWS + 1  # in each of two tumbling starts: one start is a step alone

    async def run() -> tuple[SimpleNamespace, list[int], list[str]]:
        store = PartitionStore(tmp_path / "0")
        runtime = runtime_on(store)
        orders = [(n, Order(n, Decimal("1.00"), f"B{n % buyers}", "X", 1_000 + 10_000 * (
            n // buyers)), None, None) for n in range(2 * buyers)]
        await apply_partition(runtime, 0, [Shuffled(0, 11_000, None, [("orders:0", orders)])])
        steps: list[int] = []
        write = runtime.producer.write

        async def counted(stage, topic, partition, records, epoch, outputs=(),  # noqa: ANN001, ANN202
                          consumed=None):  # noqa: ANN001
            steps.append(sum(1 for topic, *_ in outputs if topic == runtime.names.window_results))
            return await write(stage, topic, partition, records, epoch, outputs, consumed)

        runtime.producer.write = counted
        ten_hours = 36_000_000  # past every window, its lateness and its retention
        await apply_partition(runtime, 0, [Shuffled(0, ten_hours, None, [])])
        left = [key.decode() for key, _ in store._db.items() if key.startswith(b"w|")]
        store.close()
        return runtime, steps, left

    runtime, steps, left = asyncio.run(run())
    published = [tuple(orjson.loads(key)) for topic, key, _, _ in runtime.producer.sent
                 if topic == runtime.names.window_results]
    [tumble, hop] = [w.name for w in runtime.settings.windows]  # tumble:10s, hop:1m/10s
    # each buyer ordered at 1 s and at 11 s: tumbling starts 0 and 10 s; the hopping windows
    # holding either start at -50 s ... 10 s, seven of them
    expected = {(window, start, f"B{b}", "X") for b in range(buyers)
                for window, starts in ((tumble, (0, 10_000)), (hop, range(-50_000, 20_000, 10_000)))
                for start in starts}
    assert len(expected) == 9 * buyers
    assert len(published) == len(set(published))  # each once
    assert set(published) == expected
    assert len([n for n in steps if n]) >= 2 and max(steps) < len(published)
    assert left == []  # every row past retention deleted
