"""One worker per DATA_DIR: a second live one is refused, a dead one's lock is gone at once."""

import os
import signal
from pathlib import Path

import pytest

from tests.integration.conftest import produce, wait_for
from tests.integration.test_exactly_once import T0, keyed
from tests.procs import is_zombie, wait_until_zombie

pytestmark = pytest.mark.integration

ORDER = keyed(1, "Ana", "Ruiz", "3.10", T0)  # T0 is 2026-11-24T10:00:00.000Z


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
    produce(broker, worker_env["ORDERS_TOPIC"], [ORDER])
    wait_for(lambda: old.get("/buyers/Ana/Ruiz").status_code == 200, what="the order")
    os.killpg(old.process.pid, signal.SIGKILL)
    # never reaped until the end of the test: its pid stays taken, as a zombie's does
    wait_until_zombie(old.process.pid)
    new = make_worker(worker_env, "new")
    new.wait_ready()
    assert is_zombie(old.process.pid)
    assert new.get("/buyers/Ana/Ruiz").json()["count"] == 1
    lock = Path(worker_env["DATA_DIR"]) / worker_env["APP_ID"] / "worker.lock"
    assert lock.read_text() == f"{new.process.pid}\n"
