"""Event time with real workers (SPEC.md, Event time): whether an order is late, and every
window result, depend only on each orders partition's records in offset order: not on the
number of workers, a catch-up after a stop, or the batch size. The expected late orders
and windows are SPEC.md's rule by brute force (tests.expected)."""

import json
import random
import time
from decimal import Decimal

import pytest
from aiokafka.partitioner import murmur2

from app.embedded import free_port
from tests.expected import expected_event_time, iso
from tests.integration.conftest import consume_all, metric, produce, wait_for
from tests.integration.test_scale_out import _settled

pytestmark = pytest.mark.integration

T0 = 1_795_514_400_000  # 2026-11-24T10:00:00.000Z
LATENESS = 5_000
WINDOWS = [("tumble_10s", 10_000, 10_000), ("hop_20s_10s", 20_000, 10_000)]
BUYERS = [("Ana", "Ruiz"), ("Zoë", "Brontë"), ("Søren", "Kierkegård"), ("王", "伟"),
          ("Li", "Wei"), ("Ida", "Berg"), ("Sam", "Okafor")]
PARTITIONS = 4
HOUR = 3_600_000


def partition_of(key: bytes) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % PARTITIONS


class Input:
    """Orders to produce, and what each orders partition holds, in offset order."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self.meaning: list[list[tuple]] = [[] for _ in range(PARTITIONS)]
        self.number = 0

    def add(self, ms: int, rng: random.Random, key: bytes | None = None) -> None:
        self.number += 1
        buyer = rng.choice(BUYERS)
        price = Decimal(rng.randrange(1, 100_000)) / 100
        key = key or str(self.number).encode()
        self.records.append((key, json.dumps({
            "order_number": self.number, "price": str(price), "order_time": ms,
            "buyer": {"first_name": buyer[0], "last_name": buyer[1]}}).encode()))
        self.meaning[partition_of(key)].append((self.number, price, buyer, ms))

    def in_order(self, count: int, rng: random.Random, start: int, hop_keys: bool = False,
                 disorder: bool = False) -> int:
        """`count` orders 100 ms apart from `start`; keyed by number, or (hop_keys) by
        something else so that 3 in 4 take the dedup hop; with `disorder`, some behind
        within and beyond the lateness and some an hour behind. Returns the next time."""
        for i in range(count):
            ms = start + i * 100
            if disorder:
                ms -= rng.choice([0] * 8 + [rng.randrange(LATENESS), rng.randrange(60_000), HOUR])
            self.add(ms, rng, f"k{rng.random()}".encode() if hop_keys else None)
        return start + count * 100

    def end_markers(self, ms: int, rng: random.Random) -> None:
        """One order far ahead on every partition: every window before it becomes final."""
        for partition in range(PARTITIONS):
            key = next(f"end{i}".encode() for i in range(10**6)
                       if partition_of(f"end{i}".encode()) == partition)
            self.add(ms, rng, key)

    def expected(self) -> tuple[dict[tuple, int], dict[int, list[str]]]:
        """Final window rows (window, start, first, last) -> count, and the late orders with
        the windows they missed, as orders-late names them."""
        late, rows, final = expected_event_time(self.meaning, WINDOWS, LATENESS)
        sizes = {name: size for name, size, _ in WINDOWS}
        finals = {(name, start, *buyer): row[0] for (name, start, buyer), row in rows.items()
                  if start + sizes[name] + LATENESS <= final}
        described = {n: sorted(f"window {name} [{iso(s)}, {iso(s + sizes[name])}) final at "
                               f"{iso(s + sizes[name] + LATENESS)}" for name, s in missed)
                     for n, missed in late.items()}
        return finals, described


def published(broker: str, env: dict[str, str]) -> tuple[dict[tuple, int], dict[int, list]]:
    """window-results (latest value per key) and orders-late (by order number)."""
    finals = {tuple(json.loads(k)): json.loads(v)["count"]
              for k, v in consume_all(broker, env["WINDOW_RESULTS_TOPIC"])}
    late = {}
    for _, value in consume_all(broker, env["ORDERS_TOPIC"] + "-late"):
        record = json.loads(value)
        assert record["order_number"] not in late  # once per order
        late[record["order_number"]] = sorted(record["windows"])
    return finals, late


def start_workers(env: dict[str, str], make_worker, tmp_path, count: int, tag: str = "w"):  # noqa: ANN001
    workers = [make_worker({**env, "DATA_DIR": str(tmp_path / f"{tag}{i}"),
                            "API_PORT": str(free_port())}, f"{tag}{i}") for i in range(count)]
    for worker in workers:
        wait_for(lambda w=worker: _settled(w, count), timeout_s=120, what="workers settled")
    return workers


def wait_for_finals(broker: str, env: dict[str, str], expected: dict) -> None:
    wait_for(lambda: len(published(broker, env)[0]) >= len(expected), timeout_s=120,
             what=f"{len(expected)} final window rows")
    time.sleep(1)  # anything more would be a wrong extra row


@pytest.fixture
def env(worker_env: dict[str, str]) -> dict[str, str]:
    worker_env.update(PRINT_SINK="0", WINDOWS="tumble:10s,hop:20s/10s", ALLOWED_LATENESS="5s",
                      IDLE_TIMEOUT="1h", WINDOW_RETENTION="2h")
    return worker_env


@pytest.mark.parametrize("count", [2, 3])
def test_in_order_input_with_several_workers_nothing_late_every_window_exact(
        count, broker, env, make_worker, tmp_path):
    rng = random.Random(count)
    data = Input()
    end = data.in_order(2_000, rng, T0)
    data.end_markers(end + HOUR, rng)
    finals, late = data.expected()
    assert late == {} and len(finals) > 100
    workers = start_workers(env, make_worker, tmp_path, count)
    produce(broker, env["ORDERS_TOPIC"], data.records)
    wait_for_finals(broker, env, finals)
    assert published(broker, env) == (finals, {})
    assert sum(metric(w, "orders_late_total") for w in workers) == 0


def test_a_catch_up_by_two_workers_after_a_stop_with_hopping_orders_nothing_late(
        broker, env, make_worker, tmp_path):
    """3,000 orders, one worker, stopped; 6,000 more, keyed so that 3 in 4 take the dedup
    hop, read by two workers started together from the backlog."""
    rng = random.Random(7)
    data = Input()
    resume = data.in_order(3_000, rng, T0, hop_keys=True)
    first = start_workers(env, make_worker, tmp_path, 1, "first")[0]
    produce(broker, env["ORDERS_TOPIC"], data.records)
    wait_for(lambda: metric(first, "orders_counted_total") == 3_000, what="3,000 counted")
    first.stop()
    produced = len(data.records)
    end = data.in_order(6_000, rng, resume, hop_keys=True)
    data.end_markers(end + HOUR, rng)
    finals, late = data.expected()
    assert late == {}
    produce(broker, env["ORDERS_TOPIC"], data.records[produced:])
    start_workers(env, make_worker, tmp_path, 2, "second")
    wait_for_finals(broker, env, finals)
    assert published(broker, env) == (finals, {})


@pytest.mark.parametrize(("workers", "batch"), [(1, 7), (3, 1000)])
def test_a_dirty_stream_gives_specs_late_orders_and_windows_at_any_batch_size(
        workers, batch, broker, env, make_worker, tmp_path):
    """Orders behind within and beyond the lateness, an hour behind, keyed either way,
    and orders from the far future, which go to the DLQ and move no watermark."""
    rng = random.Random(11)
    data = Input()
    end = data.in_order(1_500, rng, T0, disorder=True)
    future = [(f"f{i}".encode(), json.dumps({
        "order_number": 10**9 + i, "price": "1.00", "order_time": ms,
        "buyer": {"first_name": "Ana", "last_name": "Ruiz"}}).encode())
        for i, ms in enumerate([int(time.time() * 1000) + 2 * HOUR, 1_795_514_400_000_000])]
    data.end_markers(end + HOUR, rng)
    finals, late = data.expected()
    assert len(late) > 100  # the rule is exercised
    env["BATCH_MAX_ORDERS"] = str(batch)
    start_workers(env, make_worker, tmp_path, workers)
    records = data.records[:700] + future + data.records[700:]
    produce(broker, env["ORDERS_TOPIC"], records)
    wait_for_finals(broker, env, finals)
    wait_for(lambda: len(published(broker, env)[1]) >= len(late), what="every late order")
    assert published(broker, env) == (finals, late)
    skewed, micros = sorted(json.loads(v)["error"]
                            for _, v in consume_all(broker, env["ORDERS_TOPIC"] + "-dlq"))
    assert micros == "order_time: out of range"  # epoch microseconds: past year 9999
    assert skewed.startswith("order_time: ") and skewed.endswith(
        "is more than MAX_FUTURE_SKEW (1h) ahead of the worker's clock")
