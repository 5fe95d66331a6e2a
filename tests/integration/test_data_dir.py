"""One worker per DATA_DIR: a second live one is refused, a dead one's lock is gone at once."""

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.integration.conftest import produce, wait_for

pytestmark = pytest.mark.integration

ORDER = {"order_number": 1, "price": "3.10", "buyer": {"first_name": "Ana", "last_name": "Ruiz"},
         "order_time": "2026-11-24T10:00:00.000Z"}


def is_zombie(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rindex(")") + 2] == "Z"


def test_a_second_live_worker_on_one_data_dir_is_refused_in_one_line(worker_env, make_worker):
    first = make_worker(worker_env, "first")
    first.wait_ready()
    second = make_worker({**worker_env, "API_PORT": str(int(worker_env["API_PORT"]) + 1)},
                         "second")
    assert second.process.wait(timeout=60) == 1
    errors = [line for line in second.log().splitlines() if "ERROR" in line]
    assert len(errors) == 1, second.log()
    assert errors[0].rstrip().endswith(
        f"orderstream: DATA_DIR {worker_env['DATA_DIR']} is in use by another worker (pid "
        f"{first.process.pid}): give each worker its own DATA_DIR")
    assert "Traceback" not in second.log()
    assert first.get("/ready").status_code == 200


def test_a_worker_starts_at_once_after_its_predecessor_was_killed(broker, worker_env,
                                                                   make_worker):
    old = make_worker(worker_env, "old")
    old.wait_ready()
    produce(broker, worker_env["ORDERS_TOPIC"], [(b"1", json.dumps(ORDER).encode())])
    wait_for(lambda: old.get("/buyers/Ana/Ruiz").status_code == 200, what="the order")
    os.killpg(old.process.pid, signal.SIGKILL)
    # never reaped until the end of the test: its pid stays taken, as a zombie's does
    deadline = time.monotonic() + 10
    while not is_zombie(old.process.pid):
        assert time.monotonic() < deadline, "the killed worker did not become a zombie"
        time.sleep(0.01)
    new = make_worker(worker_env, "new")
    new.wait_ready()
    assert is_zombie(old.process.pid)
    assert new.get("/buyers/Ana/Ruiz").json()["count"] == 1
    lock = Path(worker_env["DATA_DIR"]) / worker_env["APP_ID"] / "worker.lock"
    assert lock.read_text() == f"{new.process.pid}\n"
