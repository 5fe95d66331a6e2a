"""Live push, on tansu and on Apache Kafka: a client sees every change of a buyer in order,
and after a reconnect with Last-Event-ID misses nothing."""

import json
import threading

import httpx
import pytest

from tests.integration.conftest import metric, produce, wait_for
from tests.integration.test_exactly_once import T0, keyed

pytestmark = pytest.mark.integration


def read_events(url: str, count: int, headers: dict[str, str] | None = None,
                opened: threading.Event | None = None) -> list[tuple[str, dict]]:
    """The first `count` events of a stream, as (id, data)."""
    events: list[tuple[str, dict]] = []
    with httpx.stream("GET", url, headers=headers, timeout=60) as response:
        assert response.status_code == 200
        event_id = None
        for line in response.iter_lines():
            if opened is not None:
                opened.set()
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                events.append((event_id, json.loads(line[6:])))
                if len(events) == count:
                    return events
    return events


def test_a_buyer_stream_in_order_and_resumed_with_last_event_id(on_broker, make_worker):
    broker, worker_env = on_broker
    worker_env.update(PRINT_SINK="0")
    worker = make_worker(worker_env)
    worker.wait_ready()
    topic = worker_env["ORDERS_TOPIC"]
    url = f"{worker.url}/buyers/stream?first_name=Ana&last_name=Ruiz"
    got: list = []
    opened = threading.Event()
    reader = threading.Thread(target=lambda: got.extend(read_events(url, 5, opened=opened)))
    reader.start()
    assert opened.wait(30)
    assert metric(worker, "orderstream_sse_clients") == 1
    for n in range(5):  # one batch each: five changes of Ana's total
        produce(broker, topic, [keyed(n, "Ana", "Ruiz", "1.50", T0 + n),
                                keyed(100 + n, "Zoë", "Brontë", "2.00", T0 + n)])
        wait_for(lambda n=n: metric(worker, "orders_counted_total") == 2 * (n + 1), what="batch")
    reader.join(60)
    assert [data["count"] for _, data in got] == [1, 2, 3, 4, 5]
    assert got[-1][1] == {"buyer": {"first_name": "Ana", "last_name": "Ruiz"}, "count": 5,
                          "total_price": "7.50", "event": "update"}

    # disconnected after the 5th event; two more changes; resume from its id
    for n in range(5, 7):
        produce(broker, topic, [keyed(n, "Ana", "Ruiz", "1.50", T0 + n)])
        wait_for(lambda n=n: metric(worker, "orders_counted_total") == 10 + n - 4, what="more")
    resumed = read_events(url, 2, headers={"Last-Event-ID": got[-1][0]})
    assert [data["count"] for _, data in resumed] == [6, 7]
    # both clients have gone: the stream notices within a poll (1 s) and stops counting them
    wait_for(lambda: metric(worker, "orderstream_sse_clients") == 0, timeout_s=30,
             what="the stream clients no longer counted")


def test_a_window_stream_sends_updates_then_the_final_row(on_broker, make_worker):
    broker, worker_env = on_broker
    worker_env.update(PRINT_SINK="0", IDLE_TIMEOUT="1s", WINDOWS="tumble:10s",
                      ALLOWED_LATENESS="0s")
    worker = make_worker(worker_env)
    worker.wait_ready()
    url = f"{worker.url}/windows/tumble_10s/stream?first_name=Ana"
    got: list = []
    opened = threading.Event()
    reader = threading.Thread(target=lambda: got.extend(read_events(url, 3, opened=opened)))
    reader.start()
    assert opened.wait(30)
    produce(broker, worker_env["ORDERS_TOPIC"], [keyed(1, "Ana", "Ruiz", "1.00", T0)])
    wait_for(lambda: metric(worker, "orders_counted_total") == 1, what="first")
    produce(broker, worker_env["ORDERS_TOPIC"], [keyed(2, "Ana", "Ruiz", "2.00", T0 + 1)])
    reader.join(60)  # after 1 s of silence the idle rule closes the window
    assert [(d["event"], d["count"], d["sum_price"], d["final"]) for _, d in got] == [
        ("update", 1, "1.00", False), ("update", 2, "3.00", False), ("final", 2, "3.00", True)]


def test_a_stream_resumed_from_before_the_shared_consumer_catches_up(on_broker, make_worker):
    broker, worker_env = on_broker
    worker_env.update(PRINT_SINK="0")
    worker = make_worker(worker_env)
    worker.wait_ready()
    topic = worker_env["ORDERS_TOPIC"]
    for n in range(3):  # before any stream: the worker's shared consumer is not running
        produce(broker, topic, [keyed(n, "Ana", "Ruiz", "1.50", T0 + n)])
        wait_for(lambda n=n: metric(worker, "orders_counted_total") == n + 1, what="batch")
    url = f"{worker.url}/buyers/stream?first_name=Ana&last_name=Ruiz"
    # the shared consumer starts at the end with these clients: the one resuming from the
    # start of every partition reads the first three changes through a catch-up consumer
    # of its own, then the next two from the shared one; the other starts at the end
    start = ",".join(f"{p}:0" for p in range(4))
    resumed: list = []
    live: list = []
    opened = [threading.Event(), threading.Event()]
    readers = [
        threading.Thread(target=lambda: resumed.extend(
            read_events(url, 5, headers={"Last-Event-ID": start}, opened=opened[0]))),
        threading.Thread(target=lambda: live.extend(read_events(url, 2, opened=opened[1]))),
    ]
    for reader in readers:
        reader.start()
    assert all(event.wait(30) for event in opened)
    for n in range(3, 5):
        produce(broker, topic, [keyed(n, "Ana", "Ruiz", "1.50", T0 + n)])
        wait_for(lambda n=n: metric(worker, "orders_counted_total") == n + 1, what="more")
    for reader in readers:
        reader.join(60)
    assert [data["count"] for _, data in resumed] == [1, 2, 3, 4, 5]
    assert [data["count"] for _, data in live] == [4, 5]
    assert resumed[-1][0] == live[-1][0]  # both at the same position in every partition
    assert metric(worker, "orderstream_sse_dropped_total") == 0
