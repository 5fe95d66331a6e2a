"""Session windows end to end, on tansu and on Apache Kafka: two sessions of one buyer, an
order that bridges them, the merged row over HTTP and in the window stream (a delete and
an update), the final row, a late order, and the same rows rebuilt from the changelogs."""

import shutil
import threading
from pathlib import Path

import httpx
import pytest

from tests.expected import iso
from tests.integration.conftest import metric, produce, wait_for
from tests.integration.test_exactly_once import T0, keyed
from tests.integration.test_streams import read_events

pytestmark = pytest.mark.integration

ANA = {"first_name": "Ana", "last_name": "Ruiz"}


def session_row(start_ms, end_ms, count, total, low, high, average, final):
    return {"window_start": iso(start_ms), "window_end": iso(end_ms), "buyer": ANA,
            "count": count, "sum_price": total, "min_price": low, "max_price": high,
            "avg_price": average, "final": final}


def rows(worker) -> list[dict]:
    answer = httpx.get(f"{worker.url}/windows/session_5s", params={"first_name": "Ana"},
                       timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()["items"]


def test_a_bridging_order_merges_two_sessions(on_broker, make_worker):
    broker, worker_env = on_broker
    # lateness 5 s: an orders partition that went idle may already have moved event time to
    # the second order's time, which the bridging order then stays within
    worker_env.update(PRINT_SINK="0", IDLE_TIMEOUT="2s", WINDOWS="session:5s",
                      ALLOWED_LATENESS="5s", WINDOW_RETENTION="1h")
    worker = make_worker(worker_env)
    worker.wait_ready()
    topic = worker_env["ORDERS_TOPIC"]
    assert httpx.get(f"{worker.url}/windows", timeout=10).json() == [{
        "name": "session_5s", "kind": "session", "gap_ms": 5_000, "size_ms": None,
        "slide_ms": None, "allowed_lateness_ms": 5_000, "retention_ms": 3_600_000}]

    got: list = []
    opened = threading.Event()
    url = f"{worker.url}/windows/session_5s/stream?first_name=Ana"
    reader = threading.Thread(target=lambda: got.extend(read_events(url, 5, opened=opened)))
    reader.start()
    assert opened.wait(30)

    # [T0, T0+5s) and [T0+8s, T0+13s): 3 s apart, two sessions
    produce(broker, topic, [keyed(1, "Ana", "Ruiz", "1.00", T0)])
    wait_for(lambda: metric(worker, "orders_counted_total") == 1, what="the first order")
    produce(broker, topic, [keyed(2, "Ana", "Ruiz", "2.00", T0 + 8_000)])
    wait_for(lambda: metric(worker, "orders_counted_total") == 2, what="the second order")
    assert rows(worker) == [
        session_row(T0, T0 + 5_000, 1, "1.00", "1.00", "1.00", "1.00", False),
        session_row(T0 + 8_000, T0 + 13_000, 1, "2.00", "2.00", "2.00", "2.00", False)]

    # T0+4s: [T0+4s, T0+9s) touches both, and they become one session
    produce(broker, topic, [keyed(3, "Ana", "Ruiz", "4.50", T0 + 4_000)])
    wait_for(lambda: metric(worker, "orders_counted_total") == 3, what="the bridging order")
    merged = session_row(T0, T0 + 13_000, 3, "7.50", "1.00", "4.50", "2.50", False)
    assert rows(worker) == [merged]
    top = httpx.get(f"{worker.url}/windows/session_5s/top", params={"at": T0 + 12_000},
                    timeout=10).json()
    assert top == {"window_start": iso(T0), "window_end": iso(T0 + 13_000), "final": False,
                   "items": [merged]}

    # no more orders: the idle rule moves event time on until the session is final
    reader.join(120)
    assert [(event["event"], event["window_start"], event.get("count")) for _, event in got] == [
        ("update", iso(T0), 1), ("update", iso(T0 + 8_000), 1),
        ("delete", iso(T0 + 8_000), None), ("update", iso(T0), 3), ("final", iso(T0), 3)]
    assert got[-1][1] == {**merged, "final": True, "event": "final"}
    final = {**merged, "final": True}
    wait_for(lambda: rows(worker) == [final], what="the row final over HTTP")

    # an order that would extend the final session is late for it, and counts in none
    produce(broker, topic, [keyed(4, "Ana", "Ruiz", "9.00", T0 + 12_000)])
    wait_for(lambda: metric(worker, "orders_late_total") == 1, what="the late order")
    assert rows(worker) == [final]
    top = httpx.get(f"{worker.url}/windows/session_5s/top", timeout=10).json()
    assert top == {"window_start": iso(T0), "window_end": iso(T0 + 13_000), "final": True,
                   "items": [final]}

    worker.stop()
    shutil.rmtree(Path(worker_env["DATA_DIR"]))
    rebuilt = make_worker(worker_env, "rebuilt")
    rebuilt.wait_ready()
    assert rows(rebuilt) == [final]  # from the changelogs only
    assert "Traceback" not in rebuilt.log()
