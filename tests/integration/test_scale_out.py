"""Two workers of one group: each answers every route exactly as one worker would, and one
takes over when the other is killed."""

import signal
import time

import httpx
import pytest

from app.embedded import free_port
from tests.integration.conftest import produce, wait_for
from tests.integration.test_pipeline import check_all_answers, make_orders

pytestmark = pytest.mark.integration


def _instances(worker) -> list[dict]:  # noqa: ANN001
    try:
        answer = worker.get("/instances")
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


def test_any_worker_answers_any_query_and_a_survivor_takes_over(broker, worker_env,
                                                                 make_worker, tmp_path):
    worker_env.update(ALLOWED_LATENESS="1h", WINDOW_RETENTION="2h", PRINT_SINK="0")
    raws, meaning = make_orders(400, seed=3)
    first = make_worker(worker_env, "first")
    first.wait_ready()
    second_env = {**worker_env, "DATA_DIR": str(tmp_path / "data2"), "API_PORT": str(free_port())}
    second = make_worker(second_env, "second")
    for worker in (first, second):
        wait_for(lambda w=worker: _settled(w, 2), timeout_s=90, what="two workers settled")
    produce(broker, worker_env["ORDERS_TOPIC"],
            [(str(n).encode(), raw) for (n, *_), raw in zip(meaning, raws, strict=True)])
    wait_for(lambda: sum(i["count"] for i in first.get("/buyers", limit=1000).json()["items"])
             == 400, what="all counted")

    own = [httpx.get(f"{w.url}/buyers", params={"upto": 1000}, timeout=5,
                     headers={"X-Orderstream-Scope": "local"}).json()["total"]
           for w in (first, second)]
    assert all(0 < n < 7 for n in own) and sum(own) == 7  # the 7 buyers are split
    for worker in (first, second):
        check_all_answers(worker, meaning)

    expected = first.get("/buyers", limit=1000).json()
    second.stop(signal.SIGKILL)
    _always_503_or_exact(first, expected, seconds=5)
    wait_for(lambda: _settled(first, 1), timeout_s=90, what="the survivor owns everything")
    check_all_answers(first, meaning)
