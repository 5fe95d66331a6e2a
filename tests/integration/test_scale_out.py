"""Two workers of one group, on tansu and on Apache Kafka: each answers every route exactly
as one worker would, and one takes over when the other is killed."""

import signal
import threading
import time

import httpx
import pytest

from app.embedded import free_port
from tests.expected import expected_totals
from tests.integration.conftest import produce, wait_for
from tests.integration.test_pipeline import check_all_answers, make_orders

pytestmark = pytest.mark.integration


def _instances(worker) -> list[dict]:  # noqa: ANN001
    try:
        answer = worker.get("/instances")  # with the token, if any
    except httpx.HTTPError:
        return []
    return answer.json() if answer.status_code == 200 else []


def _settled(worker, count: int) -> bool:  # noqa: ANN001
    """`count` workers, all ready, owning every aggregation partition between them."""
    found = _instances(worker)
    return (len(found) == count and all(i["status"] == "ready" for i in found)
            and sorted(p for i in found for p in i["partitions"]) == [0, 1, 2, 3])


def _always_503_or_exact(worker, expected: dict, seconds: float) -> None:  # noqa: ANN001
    """While partitions move: every answer is 503 with Retry-After, or the exact one."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            answer = worker.get("/buyers", limit=1000)
        except httpx.HTTPError:
            continue
        if answer.status_code == 503:
            assert answer.headers["retry-after"] == "1"
        else:
            assert answer.status_code == 200 and answer.json() == expected
        time.sleep(0.1)


@pytest.mark.parametrize("count", [2, 3])
def test_any_worker_answers_any_query_and_a_survivor_takes_over(count, on_broker, make_worker,
                                                                 tmp_path):
    broker, worker_env = on_broker
    worker_env.update(ALLOWED_LATENESS="1h", WINDOW_RETENTION="2h", PRINT_SINK="0")
    if count == 2:  # with a token: forwarded and gathered calls must carry it too
        worker_env["API_TOKEN"] = "scale-out-token"
    raws, meaning = make_orders(400, seed=3)
    workers = [make_worker(worker_env, "w0")]
    workers[0].wait_ready()
    for index in range(1, count):
        workers.append(make_worker({**worker_env, "DATA_DIR": str(tmp_path / f"data{index}"),
                                    "API_PORT": str(free_port())}, f"w{index}"))
    for worker in workers:
        wait_for(lambda w=worker: _settled(w, count), timeout_s=120, what="workers settled")
    produce(broker, worker_env["ORDERS_TOPIC"],
            [(str(n).encode(), raw) for (n, *_), raw in zip(meaning, raws, strict=True)])
    first = workers[0]
    wait_for(lambda: sum(i["count"] for i in first.get("/buyers", limit=1000).json()["items"])
             == 400, what="all counted")

    auth = {"Authorization": f"Bearer {worker_env['API_TOKEN']}"} if count == 2 else {}
    own = [httpx.get(f"{w.url}/buyers", params={"upto": 1000}, timeout=5,
                     headers={"X-Orderstream-Scope": "local", **auth}).json()["total"]
           for w in workers]
    # the 7 buyers' partitions are 0, 1, 2, 2, 3, 3, 3: no worker can hold them all
    assert sum(own) == 7 and max(own) < 7
    for worker in workers:
        check_all_answers(worker, meaning)
    if count == 2:
        assert httpx.get(f"{first.url}/buyers", timeout=5).status_code == 401
    instances = first.get("/instances").json()
    assert [i["this_worker"] for i in instances].count(True) == 1
    assert all(isinstance(i["lag"], int) and i["status"] == "ready" for i in instances)

    expected = first.get("/buyers", limit=1000).json()
    workers[-1].stop(signal.SIGKILL)
    _always_503_or_exact(first, expected, seconds=5)
    wait_for(lambda: _settled(first, count - 1), timeout_s=90, what="survivors own everything")
    check_all_answers(first, meaning)


def test_a_worker_joining_during_ingest_loses_nothing(on_broker, make_worker, tmp_path):
    """The rebalance a second worker causes in the middle of a backlog: batches the first
    one had fetched for partitions it then keeps are read again, never skipped."""
    broker, worker_env = on_broker
    worker_env.update(ALLOWED_LATENESS="1h", WINDOW_RETENTION="2h", PRINT_SINK="0")
    raws, meaning = make_orders(400, seed=21)
    records = [(str(n).encode(), raw) for (n, *_), raw in zip(meaning, raws, strict=True)]
    many = [(str(n).encode(), raw.replace(f'"order_number": {n},'.encode(),
                                          f'"order_number": {n + 1000 * copy},'.encode()))
            for copy in range(1, 40) for (n, *_), raw in zip(meaning, raws, strict=True)]
    first = make_worker(worker_env, "first")
    first.wait_ready()
    produce(broker, worker_env["ORDERS_TOPIC"], records + many)
    wait_for(lambda: sum(i["count"] for i in first.get("/buyers", limit=1000).json()["items"])
             >= 1_000, what="ingest under way")
    second = make_worker({**worker_env, "DATA_DIR": str(tmp_path / "second"),
                          "API_PORT": str(free_port())}, "second")
    total = len(records) + len(many)

    def counted() -> int:
        try:
            answer = second.get("/buyers", limit=1000)
        except httpx.HTTPError:
            return -1
        return sum(i["count"] for i in answer.json()["items"]) if answer.status_code == 200 else -1

    wait_for(lambda: counted() == total, timeout_s=240, what=f"all {total} orders counted")
    # each copy is the same order under another number: every buyer's count is 40 times
    # what the 400 orders alone give it
    want = {b: c * 40 for b, (c, _) in expected_totals(meaning).items()}
    for worker in (first, second):
        items = worker.get("/buyers", limit=1000).json()["items"]
        assert {(i["buyer"]["first_name"], i["buyer"]["last_name"]): i["count"]
                for i in items} == want


def test_queries_during_rebalances_never_read_a_closed_store(broker, worker_env, make_worker,
                                                             tmp_path):
    """A worker answers queries from its API thread while a second worker joins and leaves
    three times: partitions move away from it and back, their stores closed and reopened.
    Every answer is the exact one or a 503: never an error from a store closed under a
    query."""
    worker_env.update(ALLOWED_LATENESS="1h", WINDOW_RETENTION="2h", PRINT_SINK="0")
    raws, meaning = make_orders(400, seed=5)
    first = make_worker(worker_env, "first")
    first.wait_ready()
    produce(broker, worker_env["ORDERS_TOPIC"],
            [(str(n).encode(), raw) for (n, *_), raw in zip(meaning, raws, strict=True)])
    wait_for(lambda: sum(i["count"] for i in first.get("/buyers", limit=1000).json()["items"])
             == 400, what="all counted")
    expected = first.get("/buyers", limit=1000).json()
    buyer = expected["items"][0]["buyer"]
    first_name, last_name = buyer["first_name"], buyer["last_name"]
    paths = ["/buyers?limit=1000", f"/buyers/{first_name}/{last_name}", "/windows/tumble_10s",
             "/windows/tumble_10s/top", "/metrics"]
    statuses: list[tuple[str, int, str]] = []
    done = threading.Event()

    def ask() -> None:
        with httpx.Client(base_url=first.url, timeout=10) as client:
            while not done.is_set():
                for path in paths:
                    try:
                        answer = client.get(path)
                    except httpx.HTTPError:
                        continue
                    statuses.append((path, answer.status_code, answer.text[:200]))

    asker = threading.Thread(target=ask)
    asker.start()
    try:
        for round_ in range(3):
            second = make_worker({**worker_env, "DATA_DIR": str(tmp_path / f"second{round_}"),
                                  "API_PORT": str(free_port())}, f"second{round_}")
            wait_for(lambda: _settled(first, 2), timeout_s=120, what="two workers settled")
            second.stop()
            wait_for(lambda: _settled(first, 1), timeout_s=120, what="one worker again")
    finally:
        done.set()
        asker.join(15)
    wrong = [s for s in statuses if s[1] not in (200, 503)]
    assert wrong == []
    answered = {path for path, status, _ in statuses if status == 200}
    assert answered == set(paths)  # each route answered between the rebalances
    assert first.get("/buyers", limit=1000).json() == expected
    log = first.log()
    assert "DbClosedError" not in log and "Traceback" not in log
