"""The seed's job end to end: known orders in, every total and window checked over HTTP,
then the same answers after a restart (RocksDB) and after DATA_DIR is lost (changelogs)."""

import json
import random
import re
import shutil
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from tests.expected import (
    expected_buyer_items,
    expected_totals,
    expected_window_items,
    expected_windows,
    iso,
    money,
)
from tests.integration.conftest import consume_all, metric, produce, wait_for

pytestmark = pytest.mark.integration

BUYERS = [("Ana", "Ruiz"), ("José", "Núñez"), ("Zoë", "Brontë"), ("Søren", "Kierkegård"),
          ("王", "伟"), ("Ana", "Álvarez"), ("Émile", "Ruiz")]
BASE = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
WINDOWS = {"tumble_10s": (10_000, 10_000), "hop_1m_10s": (60_000, 10_000)}


def _time_forms(moment: datetime, rng: random.Random) -> tuple[object, int]:
    """The same instant in one of the accepted forms, and its epoch ms."""
    ms = int(moment.timestamp() * 1000)
    form = rng.randrange(4)
    if form == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z", ms
    if form == 1:
        shifted = moment.astimezone(timezone(timedelta(hours=5, minutes=30)))
        return shifted.isoformat(timespec="milliseconds"), ms
    if form == 2:
        return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{ms % 1000:03d}", ms
    return ms, ms


def make_orders(count: int, seed: int = 11) -> tuple[list[bytes], list[tuple]]:
    """Raw messages and what each means (number, price, buyer, ms), built by hand."""
    rng = random.Random(seed)
    raws, meaning = [], []
    for number in range(1, count + 1):
        buyer = rng.choice(BUYERS)
        if number % 50 == 0:
            price_text = "12345678901234567890.12"  # beyond float precision
        else:
            price_text = f"{rng.randrange(1, 100_000) / 100:.2f}"
        moment = BASE + timedelta(milliseconds=rng.randrange(0, 180_000))
        time_value, ms = _time_forms(moment, rng)
        as_number = number % 3 == 0
        body = {"order_number": number, "price": "PRICE",
                "buyer": {"first_name": buyer[0], "last_name": buyer[1]},
                "order_time": time_value, "channel": "web"}
        text = json.dumps(body, ensure_ascii=False)
        text = text.replace('"PRICE"', price_text if as_number else f'"{price_text}"')
        raws.append(text.encode())
        meaning.append((number, Decimal(price_text), buyer, ms))
    return raws, meaning


INVALID = [
    b"\xff\xfe not utf-8",
    b"[1, 2, 3]",
    b"{}",
    b'{"order_number": "7", "price": "1.00", "buyer": {"first_name": "A", "last_name": "B"},'
    b' "order_time": 0}',
    b'{"order_number": 8, "price": "-1.00", "buyer": {"first_name": "A", "last_name": "B"},'
    b' "order_time": 0}',
    b'{"order_number": 9, "price": "1.00", "buyer": {"first_name": "", "last_name": "B"},'
    b' "order_time": 0}',
    b'{"order_number": 10, "price": "1.00", "buyer": {"first_name": "A", "last_name": "B"},'
    b' "order_time": "yesterday"}',
    b'{"order_number": 11, "price": "1.005", "buyer": {"first_name": "A", "last_name": "B"},'
    b' "order_time": 0}',
]
INVALID_FIELDS = ["value", "value", "order_number", "order_number", "price", "buyer.first_name",
                  "order_time", "price"]


def check_all_answers(worker, meaning: list[tuple]) -> None:  # noqa: ANN001
    totals = expected_totals(meaning)
    page = worker.get("/buyers", limit=1000).json()
    assert page["total"] == len(totals)
    assert page["items"] == expected_buyer_items(meaning)
    assert worker.get("/buyers", limit=2, offset=1).json()["items"] == page["items"][1:3]
    for (first, last), (count, total) in totals.items():
        one = worker.get(f"/buyers/{first}/{last}").json()
        assert one == {"buyer": {"first_name": first, "last_name": last}, "count": count,
                       "total_price": money(total)}
        assert worker.get("/buyer", first_name=first, last_name=last).json() == one
    assert worker.get("/buyers/Nobody/Atall").status_code == 404
    for name, (size, slide) in WINDOWS.items():
        want = [{**item, "final": False}
                for item in expected_window_items(meaning, size, slide)]
        assert worker.get(f"/windows/{name}", limit=10_000).json()["items"] == want
        # the latest window with data, ranked by count then last, first name
        last_start = max(start for start, _ in expected_windows(meaning, size, slide))
        top = [r for r in want if r["window_start"] == iso(last_start)]
        top.sort(key=lambda r: (-r["count"], r["buyer"]["last_name"], r["buyer"]["first_name"]))
        answer = worker.get(f"/windows/{name}/top", k=3).json()
        assert answer["window_start"] == iso(last_start) and answer["items"] == top[:3]


def test_known_orders_end_to_end_and_after_restarts(on_broker, make_worker):
    broker, worker_env = on_broker
    raws, meaning = make_orders(400)
    # Times spread over 3 minutes arrive shuffled: a lateness beyond that keeps every order
    # on time and every window open (final: false), so the answers are order-independent.
    worker_env.update(ALLOWED_LATENESS="1h", WINDOW_RETENTION="2h")
    worker = make_worker(worker_env)
    worker.wait_ready()
    topic = worker_env["ORDERS_TOPIC"]
    records = [(str(n).encode(), raw) for (n, *_), raw in zip(meaning, raws, strict=True)]
    produce(broker, topic, records[:200] + [(b"bad", raw) for raw in INVALID] + records[200:])
    total_in = len(records) + len(INVALID)
    wait_for(lambda: metric(worker, "orders_counted_total") == len(meaning), what="all counted")
    assert metric(worker, "orders_processed_total") == total_in
    assert metric(worker, "orders_invalid_total") == len(INVALID)
    check_all_answers(worker, meaning)

    dead = [json.loads(value) for _, value in consume_all(broker, f"{topic}-dlq")]
    assert sorted(d["error"].split(":")[0] for d in dead) == sorted(INVALID_FIELDS)
    assert {d["raw_encoding"] for d in dead if "raw_encoding" in d} == {"base64"}

    totals = expected_totals(meaning)
    latest = {tuple(json.loads(k)): json.loads(v)
              for k, v in consume_all(broker, worker_env["BUYER_TOTALS_TOPIC"])}
    assert latest == {b: {"buyer": {"first_name": b[0], "last_name": b[1]}, "count": c,
                          "total_price": money(s)} for b, (c, s) in totals.items()}
    printed = {}
    for line in worker.log().splitlines():
        match = re.fullmatch(r"([+-][IU])\[(\d+), (.+), (.+)\]", line)
        if match and match.group(1) in ("+I", "+U"):
            printed[(match.group(3), match.group(4))] = int(match.group(2))
    assert printed == {b: c for b, (c, _) in totals.items()}

    worker.stop()
    restarted = make_worker(worker_env, "restarted")
    restarted.wait_ready()
    check_all_answers(restarted, meaning)  # from RocksDB on disk
    restarted.stop()

    shutil.rmtree(Path(worker_env["DATA_DIR"]))
    rebuilt = make_worker(worker_env, "rebuilt")
    rebuilt.wait_ready()
    check_all_answers(rebuilt, meaning)  # from the changelogs only
    assert "Traceback" not in rebuilt.log()
