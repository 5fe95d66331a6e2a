"""Exactly-once results against the real worker, on tansu and on Apache Kafka: dirty input,
watermarks and final windows, a consumer-group reset to offset 0, and kill -9 in the middle
of ingest."""

import json
import random
import re
import signal
import subprocess
import time
from collections import defaultdict
from decimal import Decimal

import pytest
from aiokafka.partitioner import murmur2

from tests.expected import expected_windows, iso, money
from tests.integration.conftest import (
    FAUST,
    REPO,
    committed_offsets,
    consume_all,
    end_offsets,
    metric,
    produce,
    wait_for,
)

pytestmark = pytest.mark.integration

T0 = 1_795_514_400_000  # 2026-11-24T10:00:00.000Z, a whole minute
DAY = 86_400_000


def order(number, first, last, price, ms):
    return json.dumps({"order_number": number, "price": price, "order_time": ms,
                       "buyer": {"first_name": first, "last_name": last}}).encode()


def keyed(number, first, last, price, ms):
    return str(number).encode(), order(number, first, last, price, ms)


def owner(number: int, partitions: int = 4) -> int:
    return (murmur2(str(number).encode()) & 0x7FFFFFFF) % partitions


def test_dirty_input_lands_where_spec_md_says(on_broker, make_worker):
    broker, worker_env = on_broker
    # idle 3 s: a silent partition holds nobody back; once all have been idle for 3 s more,
    # event time follows the clock (core.watermarks), which would close hop [T0, T0+60s)
    # some 65 s after the last order
    worker_env.update(IDLE_TIMEOUT="3s", WINDOWS="tumble:10s,hop:1m/10s")
    worker = make_worker(worker_env)
    worker.wait_ready()
    topic = worker_env["ORDERS_TOPIC"]
    buyers = [("Ana", "Ruiz"), ("Zoë", "Brontë"), ("Søren", "Kierkegård"), ("王", "伟")]
    counted = []  # (number, price, buyer, ms) of every order that must count
    phase1 = []
    for n in range(1, 121):  # within 4 s of event time: nothing final yet, nothing late
        first, last = buyers[n % 4]
        price, ms = f"{n}.{n % 100:02d}", T0 + (n * 33) % 4_000
        phase1.append(keyed(n, first, last, price, ms))
        counted.append((n, Decimal(price), (first, last), ms))
    dup_same_key = phase1[5]
    dup_other_key = (b"replayed-by-someone-else", phase1[6][1])
    conflict = (b"x", order(8, *buyers[0], "999.99", T0 + 1))
    invalid = [(b"i1", b"not json"), (b"i2", b"{}"), (b"i3", order(9999, "", "X", "1.00", T0))]
    produce(broker, topic, phase1 + [dup_same_key, dup_other_key, conflict] + invalid)
    wait_for(lambda: metric(worker, "orders_counted_total") == 120, what="phase 1 counted")

    # an order at T0+60s, then silence: idle, the other partitions stop holding it back
    produce(broker, topic, [keyed(500, "Ana", "Ruiz", "1.00", T0 + 60_000)])
    counted.append((500, Decimal("1.00"), ("Ana", "Ruiz"), T0 + 60_000))
    wait_for(lambda: worker.get("/windows/tumble_10s/top", at=T0).json()["final"],
             what="tumble [T0, T0+10s) final")

    # late for tumble [T0,T0+10s) and hop starts T0-50s..T0-10s; on time for hop [T0,T0+60s)
    late = keyed(600, "Zoë", "Brontë", "7.00", T0 + 2_000)
    too_old = (b"old", order(601, "Zoë", "Brontë", "7.00", T0 - 8 * DAY))
    produce(broker, topic, [late, too_old])
    wait_for(lambda: metric(worker, "orders_late_total") == 2, what="late orders")
    wait_for(lambda: metric(worker, "orders_counted_total") == 122, what="late order counted")

    assert metric(worker, "orders_duplicate_total") == 2
    assert metric(worker, "orders_conflict_total") == 1
    assert metric(worker, "orders_invalid_total") == 3
    assert metric(worker, "orders_processed_total") == 120 + 3 + 3 + 1 + 2
    lag = [line for line in worker.get("/metrics").text.splitlines()
           if line.startswith(f'orderstream_consumer_lag{{partition="0",topic="{topic}"}}')]
    assert lag == [f'orderstream_consumer_lag{{partition="0",topic="{topic}"}} 0.0']

    dead = [json.loads(v) for _, v in consume_all(broker, f"{topic}-dlq")]
    assert sorted(d["error"] for d in dead) == sorted([
        "conflict: order_number 8 seen with different content", "value: not valid JSON",
        "order_number: missing", "buyer.first_name: empty"])
    lates = {json.loads(v)["order_number"]: json.loads(v)
             for _, v in consume_all(broker, f"{topic}-late")}
    assert set(lates) == {600, 601}
    assert lates[600]["windows"] == [
        f"window tumble_10s [{iso(T0)}, {iso(T0 + 10_000)}) final at {iso(T0 + 15_000)}"] + [
        f"window hop_1m_10s [{iso(s)}, {iso(s + 60_000)}) final at {iso(s + 65_000)}"
        for s in range(T0 - 50_000, T0, 10_000)]
    assert lates[600]["price"] == "7.00" and lates[600]["order_time"] == iso(T0 + 2_000)
    assert len(lates[601]["windows"]) == 7  # it counts nowhere: every window missed

    # totals count the late order; windows count it only where they were not final
    totals = defaultdict(lambda: [0, Decimal(0)])
    for _, price, buyer, _ in counted + [(600, Decimal("7.00"), ("Zoë", "Brontë"), 0)]:
        totals[buyer][0] += 1
        totals[buyer][1] += price
    for (first, last), (count, total) in totals.items():
        assert worker.get("/buyer", first_name=first, last_name=last).json() == {
            "buyer": {"first_name": first, "last_name": last}, "count": count,
            "total_price": money(total)}
    tumble = expected_windows(counted, 10_000, 10_000)
    rows = worker.get("/windows/tumble_10s", limit=10_000).json()["items"]
    assert {(r["window_start"], r["buyer"]["last_name"]): (r["count"], r["sum_price"], r["final"])
            for r in rows} == {
        (iso(s), b[1]): (c, money(total), s + 15_000 <= T0 + 60_000)
        for (s, b), (c, total, _, _) in tumble.items()}
    hop = expected_windows(counted + [(600, Decimal("7.00"), ("Zoë", "Brontë"), T0 + 2_000)],
                           60_000, 10_000)
    zoe_t0 = worker.get("/windows/hop_1m_10s", first_name="Zoë", start=T0, end=T0 + 1).json()
    [open_row] = [r for r in zoe_t0["items"] if r["window_start"] == iso(T0)]
    assert open_row["count"] == hop[(T0, ("Zoë", "Brontë"))][0] and not open_row["final"]

    # window-results: exactly the final rows, once each, with their final values
    results = [(json.loads(k), json.loads(v))
               for k, v in consume_all(broker, worker_env["WINDOW_RESULTS_TOPIC"])]
    keys = [tuple(k) for k, _ in results]
    assert len(keys) == len(set(keys))
    final_tumble = {(s, b): v for (s, b), v in tumble.items() if s + 15_000 <= T0 + 60_000}
    assert {k for k in keys if k[0] == "tumble_10s"} == {
        ("tumble_10s", s, b[0], b[1]) for s, b in final_tumble}
    for key, value in results:
        if key[0] == "tumble_10s":
            count, total, low, high = final_tumble[(key[1], (key[2], key[3]))]
            assert (value["count"], value["sum_price"], value["final"]) == (
                count, money(total), True)


def reset_group(env: dict[str, str]) -> None:
    """`faust -A app reset-offsets`: the worker group back to offset 0, as a user would."""
    result = subprocess.run([str(FAUST), "-A", "app", "reset-offsets"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    topics = {line.split("[")[0] for line in result.stdout.splitlines()}
    app_id = env["APP_ID"]
    assert topics == {env["ORDERS_TOPIC"], f"{app_id}-orders-by-number",
                      f"{app_id}-orders-by-buyer"}


def print_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if re.fullmatch(r"[+-][IU]\[\d+, .+, .+\]", line)]


def test_a_group_reset_to_offset_0_changes_nothing(on_broker, make_worker):
    broker, worker_env = on_broker
    # one window, no lateness: 2 s after the input stops, event time follows the clock and
    # within ~12 s every window is final: nothing is left to change after the reset
    worker_env.update(IDLE_TIMEOUT="1s", WINDOWS="tumble:10s", ALLOWED_LATENESS="0s")
    worker = make_worker(worker_env)
    worker.wait_ready()
    topic = worker_env["ORDERS_TOPIC"]
    rng = random.Random(5)
    records = [keyed(n, *rng.choice([("Ana", "Ruiz"), ("Zoë", "Brontë"), ("Lê", "Văn")]),
                     f"{rng.randrange(100, 9999) / 100:.2f}", T0 + n * 100) for n in range(300)]
    produce(broker, topic, records + [(b"k", b"[1]")])
    wait_for(lambda: metric(worker, "orders_counted_total") == 300, what="all counted")
    wait_for(lambda: all(row["final"] for row in worker.get(
        "/windows/tumble_10s", limit=10_000).json()["items"]), what="every window final")
    time.sleep(1)
    before = {path: worker.get(path, limit=10_000).json()
              for path in ("/buyers", "/windows/tumble_10s")}
    outputs = {t: sorted(consume_all(broker, t)) for t in (
        worker_env["BUYER_TOTALS_TOPIC"], worker_env["WINDOW_RESULTS_TOPIC"], f"{topic}-dlq")}
    assert outputs[worker_env["WINDOW_RESULTS_TOPIC"]]  # something final, to prove no repeat
    worker.stop()
    # what the ingest's dedup hop and the aggregation will read a second time
    app_id = worker_env["APP_ID"]
    internal = [f"{app_id}-orders-by-number", f"{app_id}-orders-by-buyer"]
    replayed = {topic: end_offsets(broker, topic) for topic in internal}
    assert sum(replayed[internal[1]].values()) > 0

    reset_group(worker_env)
    assert set(committed_offsets(broker, app_id, internal[1]).values()) <= {0}
    again = make_worker(worker_env, "after-reset")
    again.wait_ready()
    wait_for(lambda: metric(again, "orders_processed_total") == 301, what="replay read")
    # evidence that both hops read their whole input again: the group committed past it
    for topic, ends in replayed.items():
        wait_for(lambda t=topic, e=ends: all(
            committed_offsets(broker, app_id, t).get(p, 0) >= end
            for p, end in e.items()), what=f"{topic} replayed")
    assert metric(again, "orders_counted_total") == 0
    assert {path: again.get(path, limit=10_000).json() for path in before} == before
    assert {t: sorted(consume_all(broker, t)) for t in outputs} == outputs
    assert print_lines(again.log()) == []


def test_kill_9_during_ingest_then_exact(on_broker, make_worker, request):
    broker, worker_env = on_broker
    worker_env.update(ALLOWED_LATENESS="1h", WINDOW_RETENTION="2h", PRINT_SINK="0")
    rng = random.Random(9)
    buyers = [(f"Käufer{i}", f"Nachname{i % 7}") for i in range(40)]
    meaning, records = [], []
    for n in range(20_000):
        buyer, price, ms = rng.choice(buyers), f"{rng.randrange(1, 100_000) / 100:.2f}", T0 + n
        meaning.append((n, Decimal(price), buyer, ms))
        records.append(keyed(n, *buyer, price, ms))
    worker = make_worker(worker_env, "first")
    worker.wait_ready()
    produce(broker, worker_env["ORDERS_TOPIC"], records)
    for kill in range(3):
        target = rng.randrange(1_000, 4_000)
        wait_for(lambda w=worker, t=target: metric(w, "orders_processed_total") >= t,
                 what="progress")
        worker.stop(signal.SIGKILL)
        worker = make_worker(worker_env, f"after-kill-{kill}")
        worker.wait_ready()
    wait_for(lambda: sum(i["count"] for i in worker.get("/buyers", limit=100).json()["items"])
             >= 20_000, timeout_s=180, what="all 20,000 counted")
    time.sleep(1)
    totals = defaultdict(lambda: [0, Decimal(0)])
    for _, price, buyer, _ in meaning:
        totals[buyer][0] += 1
        totals[buyer][1] += price
    page = worker.get("/buyers", limit=100).json()
    assert {(i["buyer"]["first_name"], i["buyer"]["last_name"]): (i["count"], i["total_price"])
            for i in page["items"]} == {b: (c, money(s)) for b, (c, s) in totals.items()}
    tumble = expected_windows(meaning, 10_000, 10_000)
    rows = worker.get("/windows/tumble_10s", limit=10_000).json()["items"]
    assert {(r["window_start"], r["buyer"]["first_name"]): (r["count"], r["sum_price"])
            for r in rows} == {(iso(s), b[0]): (c, money(t)) for (s, b), (c, t, _, _)
                               in tumble.items()}

    # buyer-totals as a consumer keeping the latest value per key reads it: the exact totals
    # in the end, and never a count going back. Without transactions (tansu) a kill -9 may
    # repeat a record, never with another value (SPEC.md, Topics); so may the aborted
    # transactions of Apache Kafka, for a reader of uncommitted records, as here.
    exact = {b: (c, money(s)) for b, (c, s) in totals.items()}
    wait_for(lambda: {b: values[-1] for b, values in _totals_sent(broker, worker_env).items()}
             == exact, timeout_s=30, what="the last buyer-totals exact")
    for buyer, values in _totals_sent(broker, worker_env).items():
        counts = [count for count, _ in values]
        assert counts == sorted(counts), buyer  # never back to an older value
        assert len(set(values)) == len(set(counts)), buyer  # one value per count
    if request.node.callspec.params["on_broker"] == "kafka":
        # with transactions, a committed reader sees each record once, the last one exact
        committed = _totals_sent(broker, worker_env, "read_committed")
        assert {b: values[-1] for b, values in committed.items()} == exact
        for buyer, values in committed.items():
            counts = [count for count, _ in values]
            assert counts == sorted(set(counts)), (buyer, values)


def _totals_sent(broker: str, env: dict[str, str], isolation: str = "read_uncommitted",
                 ) -> dict[tuple, list[tuple[int, str]]]:
    """Every (count, total_price) of each buyer in buyer-totals, in offset order."""
    sent: dict[tuple, list[tuple[int, str]]] = defaultdict(list)
    for key, value in consume_all(broker, env["BUYER_TOTALS_TOPIC"], isolation=isolation):
        body = json.loads(value)
        sent[tuple(json.loads(key))].append((body["count"], body["total_price"]))
    return sent
