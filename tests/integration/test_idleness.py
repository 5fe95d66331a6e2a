"""Idleness as a lease (SPEC.md, Event time), with real workers: a silent orders partition
stops holding the others back while its owner renews its lease; an order it then gets for
a window already final is late; and when its owner is killed, the partition holds the
watermark again until its new owner declares it idle. No final window ever changes."""

import json
import signal
import time

import pytest

from tests.integration.conftest import consume_all, metric, produce, wait_for
from tests.integration.test_event_time import partition_of, start_workers

pytestmark = pytest.mark.integration

T0 = 1_795_514_400_000  # 2026-11-24T10:00:00.000Z
SECOND = 1_000


def number_on(partition: int, start: int) -> int:
    """The first order number from `start` whose decimal key lands on `partition`."""
    number = start
    while partition_of(str(number).encode()) != partition:
        number += 1
    return number


class Orders:
    def __init__(self) -> None:
        self.next_number = 1

    def on(self, partition: int, ms: int, first: str = "Ana") -> tuple[bytes, bytes]:
        number = number_on(partition, self.next_number)
        self.next_number = number + 1
        return str(number).encode(), json.dumps({
            "order_number": number, "price": "1.00", "order_time": ms,
            "buyer": {"first_name": first, "last_name": "Ruiz"}}).encode()


def finals(broker: str, env: dict[str, str]) -> dict[tuple, list[dict]]:
    """Every window-results value, by key, in log order."""
    found: dict[tuple, list[dict]] = {}
    for key, value in consume_all(broker, env["WINDOW_RESULTS_TOPIC"]):
        found.setdefault(tuple(json.loads(key)), []).append(json.loads(value))
    return found


def final_starts(broker: str, env: dict[str, str]) -> set[int]:
    return {key[1] for key in finals(broker, env)}


def keep_busy(broker: str, env: dict[str, str], orders: Orders, start_ms: int,
              seconds: int) -> int:
    """Partitions 0-2 get an order per partition a second of wall time, 2 s of event time
    apart; partition 3 none. Returns the next event time."""
    ms = start_ms
    for _ in range(seconds):
        produce(broker, env["ORDERS_TOPIC"], [orders.on(p, ms, "Busy") for p in range(3)])
        ms += 2 * SECOND
        time.sleep(1)
    return ms


@pytest.fixture
def env(worker_env: dict[str, str]) -> dict[str, str]:
    worker_env.update(PRINT_SINK="0", WINDOWS="tumble:10s", ALLOWED_LATENESS="0s",
                      IDLE_TIMEOUT="2s", WINDOW_RETENTION="2h")
    return worker_env


def test_a_silent_partition_stops_holding_the_others_and_its_next_order_is_late_if_final(
        broker, env, make_worker, tmp_path):
    [worker] = start_workers(env, make_worker, tmp_path, 1)
    orders = Orders()
    produce(broker, env["ORDERS_TOPIC"], [orders.on(p, T0 + p) for p in range(4)])
    # partition 3 is silent from here on; the others move on to T0 + 40 s
    keep_busy(broker, env, orders, T0 + 2 * SECOND, 20)
    wait_for(lambda: {T0, T0 + 10 * SECOND} <= final_starts(broker, env), timeout_s=60,
             what="windows final although partition 3 is behind")
    assert metric(worker, "orders_late_total") == 0
    gauges = worker.get("/metrics").text
    # partition 3's one order was at T0 + 3 ms (1.795514400003e+12 in Prometheus' text)
    assert 'orderstream_source_watermark_ms{partition="3"} 1.795514400003e+12' in gauges
    assert 'orderstream_source_idle{partition="3"} 1.0' in gauges
    # partition 3 delivers again, for the window [T0, T0+10s) already final: late
    produce(broker, env["ORDERS_TOPIC"], [orders.on(3, T0 + 5 * SECOND)])
    wait_for(lambda: metric(worker, "orders_late_total") == 1, what="the late order")
    [(_, late)] = consume_all(broker, env["ORDERS_TOPIC"] + "-late")
    assert json.loads(late)["windows"] == [
        "window tumble_10s [2026-11-24T10:00:00.000Z, 2026-11-24T10:00:10.000Z) final at "
        "2026-11-24T10:00:10.000Z"]
    published = finals(broker, env)
    assert all(len(values) == 1 for values in published.values())  # none changed
    assert published[("tumble_10s", T0, "Ana", "Ruiz")][0]["count"] == 4


def test_a_killed_owner_of_an_idle_partition_holds_the_watermark_until_its_next_owner(
        broker, env, make_worker, tmp_path):
    env.update(ALLOWED_LATENESS="0s")
    workers = start_workers(env, make_worker, tmp_path, 2)
    orders = Orders()
    produce(broker, env["ORDERS_TOPIC"], [orders.on(p, T0 + p) for p in range(4)])
    ms = keep_busy(broker, env, orders, T0 + 2 * SECOND, 8)
    wait_for(lambda: T0 in final_starts(broker, env), what="partition 3 idle")
    owner = next(w for w in workers
                 if 3 in next(i for i in w.get("/instances").json() if i["this_worker"])
                 ["partitions"])
    survivor = next(w for w in workers if w is not owner)
    owner.stop(signal.SIGKILL)
    # its lease (2 x IDLE_TIMEOUT) runs out: partition 3 holds at T0 + 3 ms again,
    # whatever the others read, until the survivor owns it and finds it idle
    ms = keep_busy(broker, env, orders, ms, 25)
    wait_for(lambda: any(start > T0 + 20 * SECOND for start in final_starts(broker, env)),
             timeout_s=90, what="the survivor declaring partition 3 idle")
    published = finals(broker, env)
    assert all(len(values) == 1 for values in published.values())  # none changed
    assert metric(survivor, "orders_late_total") == 0  # nobody's orders were late
