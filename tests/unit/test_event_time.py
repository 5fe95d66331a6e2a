"""Event time over the whole job (SPEC.md, Event time), the ingest and aggregation steps of
core/ run by a random schedule: which partition is read next, how many records each read
takes, and consumers rewound as after a restart. Whatever the schedule, the late orders and
every window row must be SPEC.md's, computed by brute force in tests.expected."""

import random
from decimal import Decimal

import orjson
import pytest

from core import shuffle
from core.aggregate import read_watermark
from core.aggregation import AggregateConfig, apply_batch
from core.aggregation import Clock as AggregateClock
from core.fixed import FixedWindow
from core.ingest import Clock, IngestConfig, RawMessage, channel_records, ingest_partition
from core.schema import parse_window_key, total_key
from core.sessions import SessionWindow
from core.shuffle import decode_shuffle
from core.watermarks import Emitter
from tests.expected import expected_event_time
from tests.unit.dictstore import DictStore

SOURCES, BUYER_PARTITIONS = 3, 2
LATENESS = 5_000
WINDOWS = (FixedWindow("tumble_10s", "tumbling", 10_000, 10_000),
           FixedWindow("hop_30s_10s", "hopping", 30_000, 10_000))
T0 = 1_795_000_000_000
NOW = T0 + 86_400_000  # the wall clock: every order time is in its past
INGEST = IngestConfig(orders_topic="orders", rekey_topic="rekey", orders_partitions=SOURCES,
                      buyer_partitions=BUYER_PARTITIONS, horizon_ms=7 * 86_400_000,
                      windows=WINDOWS, allowed_lateness_ms=LATENESS)
AGGREGATE = AggregateConfig(WINDOWS, LATENESS, 10**12, carriers=SOURCES)
BUYERS = [("Ana", "Ruiz"), ("Zoë", "Brontë"), ("Li", "Wei"), ("Sam", "Okafor"), ("Ida", "Berg")]


class Pipeline:
    """Topics as lists, one store per partition and stage, and a consumer position each."""

    def __init__(self, inputs: list[list[tuple[bytes, bytes]]], rng: random.Random,
                 max_batch: int, aggregate: AggregateConfig = AGGREGATE) -> None:
        self.rng, self.max_batch, self.config = rng, max_batch, aggregate
        self.topics = {("orders", p): list(records) for p, records in enumerate(inputs)}
        self.topics.update({("rekey", p): [] for p in range(SOURCES)})
        self.topics.update({("buyer", b): [] for b in range(BUYER_PARTITIONS)})
        self.position = dict.fromkeys(self.topics, 0)
        self.dedup = [DictStore() for _ in range(SOURCES)]
        self.aggregates = [DictStore() for _ in range(BUYER_PARTITIONS)]
        self.emitter = Emitter(interval_ms=0)
        self.late: dict[int, list[tuple[str, int]]] = {}
        self.finals: dict[tuple, dict] = {}

    def pending(self) -> list[tuple[str, int]]:
        return [t for t, records in self.topics.items() if self.position[t] < len(records)]

    def take(self, topic: tuple[str, int]) -> list[tuple[int, bytes | None, bytes]]:
        start = self.position[topic]
        count = self.rng.randint(1, self.max_batch)
        self.position[topic] = min(start + count, len(self.topics[topic]))
        return [(start + i, *record) if isinstance(record, tuple) else (start + i, None, record)
                for i, record in enumerate(self.topics[topic][start:self.position[topic]])]

    def ingest(self, partition: int, topic: str | None) -> None:
        """One ingest batch of `topic` (None: the timer, no messages)."""
        taken = self.take((topic, partition)) if topic else []
        messages = [RawMessage(topic or "", partition, offset, key, value)
                    for offset, key, value in taken]
        store, clock = self.dedup[partition], Clock(NOW)
        result = ingest_partition(partition, messages, INGEST, store.read, store.scan, clock)
        assert not result.dead_letters and not result.late
        rekeyed, shuffled = channel_records(partition, result, clock, self.emitter, INGEST)
        for owner, value in rekeyed:
            self.topics["rekey", owner].append(value)
        for target, value in shuffled:
            self.topics["buyer", target].append(value)
        store.apply(result.updates)

    def aggregate(self, partition: int) -> None:
        items = [decode_shuffle(value) for _, _, value in self.take(("buyer", partition))]
        store = self.aggregates[partition]
        result = apply_batch(items, self.config, store.read, AggregateClock(NOW))
        store.apply(result.updates)
        for item in result.late:
            assert item.order.order_number not in self.late
            self.late[item.order.order_number] = sorted((w.name, s) for w, s, _ in item.missed)
        closing = store.close(self.config, limit=self.rng.choice((1, 3, 5_000)))
        for key, value in closing.finals:
            assert tuple(orjson.loads(key)) not in self.finals  # published once
            self.finals[tuple(orjson.loads(key))] = orjson.loads(value)

    def step(self) -> None:
        """Read from a random partition; now and then, rewind one as a restart would."""
        if self.rng.random() < 0.03:
            topic = self.rng.choice(list(self.topics))
            self.position[topic] = self.rng.randint(0, self.position[topic])
        choices = self.pending()
        if not choices or self.rng.random() < 0.1:
            self.ingest(self.rng.randrange(SOURCES), None)
            return
        kind, partition = self.rng.choice(choices)
        if kind == "buyer":
            self.aggregate(partition)
        else:
            self.ingest(partition, kind)

    def run(self) -> None:
        while self.pending():
            self.step()
        for _ in range(3):  # the timers, then whatever they sent
            for partition in range(SOURCES):
                self.ingest(partition, None)
            while self.pending():
                kind, partition = self.pending()[0]
                self.aggregate(partition) if kind == "buyer" else self.ingest(partition, kind)


def make_input(rng: random.Random, within_lateness: bool = False,
               ) -> tuple[list[list[tuple[bytes, bytes]]], list[list[tuple]]]:
    """Each partition mostly in event-time order, with orders behind it within and beyond
    the lateness (only within, if asked), far behind, and exact repeats; keyed by order
    number or otherwise."""
    inputs: list[list[tuple[bytes, bytes]]] = [[] for _ in range(SOURCES)]
    meaning: list[list[tuple]] = [[] for _ in range(SOURCES)]
    number = 0
    for partition in range(SOURCES):
        clock = T0 + rng.randrange(0, 20_000)
        for _ in range(rng.randint(5, 40)):
            if meaning[partition] and rng.random() < 0.08:
                repeat = rng.randrange(len(meaning[partition]))
                inputs[partition].append(inputs[partition][repeat])
                meaning[partition].append(meaning[partition][repeat])
                continue
            clock += rng.randrange(0, 3_000)
            behind = rng.choice([0] * 6 + [rng.randrange(0, LATENESS), rng.randrange(0, 40_000),
                                           3_600_000])
            if within_lateness:
                behind = min(behind, LATENESS - 1)
            number += 1
            price = Decimal(rng.randrange(1, 100_000)) / 100
            buyer = rng.choice(BUYERS)
            ms = clock - behind
            value = orjson.dumps({"order_number": number, "price": str(price), "order_time": ms,
                                  "buyer": {"first_name": buyer[0], "last_name": buyer[1]}})
            key = str(number).encode() if rng.random() < 0.4 else f"k{rng.random()}".encode()
            inputs[partition].append((key, value))
            meaning[partition].append((number, price, buyer, ms))
    return inputs, meaning


def window_rows(pipeline: Pipeline) -> dict[tuple, list]:
    rows = {}
    for store in pipeline.aggregates:
        for key, value in store.items():
            if key.startswith("w|"):
                name, start, buyer = parse_window_key(key)
                count, total, low, high = orjson.loads(value)
                rows[name, start, buyer] = [count, Decimal(total), Decimal(low), Decimal(high)]
    return rows


@pytest.mark.parametrize("seed", range(40))
def test_late_orders_and_windows_are_specs_whatever_the_schedule(seed, monkeypatch):
    if seed % 4 == 3:  # records split by size: only the last part moves the watermark
        monkeypatch.setattr(shuffle, "RECORD_LIMIT_BYTES", 700)
    rng = random.Random(seed)
    inputs, meaning = make_input(rng)
    spans = [(w.name, w.size_ms, w.slide_ms) for w in WINDOWS]
    late, rows, final_watermark = expected_event_time(meaning, spans, LATENESS)
    assert late or seed % 5, "the inputs should make late orders"  # most seeds do
    for max_batch in (1, 7, 1000):
        pipeline = Pipeline(inputs, random.Random(seed * 1000 + max_batch), max_batch)
        pipeline.run()
        assert pipeline.late == {n: sorted(w) for n, w in late.items()}
        assert window_rows(pipeline) == rows
        assert {k: v["count"] for k, v in pipeline.finals.items()} == {
            (name, start, *buyer): row[0] for (name, start, buyer), row in rows.items()
            if start + {w.name: w.size_ms for w in WINDOWS}[name] + LATENESS
            <= final_watermark}
        for store in pipeline.aggregates:
            assert read_watermark(store.read) == final_watermark
        counted = sum(orjson.loads(v)[0] for s in pipeline.aggregates
                      for k, v in s.items() if k.startswith(total_key(("", ""))[:2]))
        assert counted == len({row[0] for part in meaning for row in part})


SESSION = SessionWindow("session_2s", 2_000)


@pytest.mark.parametrize("seed", range(20))
def test_sessions_of_orders_within_lateness_whatever_the_schedule(seed):
    """Orders no more than ALLOWED_LATENESS behind their partition are never late for a
    session (one landing exactly on a final session's end aside, which these inputs, with
    order times in whole ms behind by less than the lateness, cannot make), so the
    sessions are those of all the orders, whatever the schedule: the touching
    `[t, t + gap)` of each buyer's distinct orders, merged."""
    inputs, meaning = make_input(random.Random(seed), within_lateness=True)
    config = AggregateConfig((SESSION, *WINDOWS), LATENESS, 10**12, carriers=SOURCES)
    distinct = {row[0]: row for part in meaning for row in part}
    expected = {}
    for buyer in {row[2] for row in distinct.values()}:
        spans: list[list] = []
        for _, price, _, ms in sorted((r for r in distinct.values() if r[2] == buyer),
                                      key=lambda r: r[3]):
            if spans and ms <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], ms + SESSION.gap_ms)
                spans[-1][2].append(price)
            else:
                spans.append([ms, ms + SESSION.gap_ms, [price]])
        expected.update({(buyer, start): (end, len(p), sum(p)) for start, end, p in spans})
    for max_batch in (1, 7, 1000):
        pipeline = Pipeline(inputs, random.Random(seed * 1000 + max_batch), max_batch, config)
        pipeline.run()
        assert pipeline.late == {}
        found = {}
        for store in pipeline.aggregates:
            for key, value in store.scan("w|session_2s|"):
                _, start, buyer = parse_window_key(key)
                count, total, _, _, end = orjson.loads(value)
                found[buyer, start] = (end, count, Decimal(total))
        assert found == expected
        final_watermark = min(max(row[3] for row in part) for part in meaning)
        assert {((k[2], k[3]), k[1]): v["count"] for k, v in pipeline.finals.items()
                if k[0] == "session_2s"} == {
            key: count for key, (end, count, _) in expected.items()
            if end + LATENESS <= final_watermark}
