"""The broker comes back empty while DATA_DIR still holds state."""

import json
from collections.abc import Iterator

import pytest

from app.embedded import free_port, start_tansu, stop_process
from tests.integration.conftest import metric, produce, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def own_broker(tmp_path) -> Iterator[dict]:
    """A broker of this test's own, that the test can restart empty."""
    state = {"port": free_port()}
    state["process"] = start_tansu("127.0.0.1", state["port"], tmp_path / "tansu.log")
    yield state
    stop_process(state["process"], timeout_s=5)


def _restart_empty(own_broker: dict, tmp_path) -> None:
    stop_process(own_broker["process"], timeout_s=5)
    own_broker["process"] = start_tansu("127.0.0.1", own_broker["port"], tmp_path / "tansu.log")


def _order(number: int) -> tuple[bytes, bytes]:
    body = {"order_number": number, "price": "2.50", "order_time": 1_795_514_400_000,
            "buyer": {"first_name": "Ana", "last_name": "Ruiz"}}
    return str(number).encode(), json.dumps(body).encode()


def _run_some_orders(make_worker, env: dict, broker: str, count: int) -> None:
    worker = make_worker(env)
    worker.wait_ready()
    produce(broker, env["ORDERS_TOPIC"], [_order(n) for n in range(count)])
    wait_for(lambda: metric(worker, "orders_counted_total") == count, what="orders counted")
    worker.stop()


def test_embedded_broker_restarted_empty_starts_clean_with_one_warning(
        own_broker, worker_env, make_worker, tmp_path):
    broker = f"127.0.0.1:{own_broker['port']}"
    env = {**worker_env, "KAFKA_BROKER": broker, "EMBEDDED_BROKER": "1"}
    _run_some_orders(make_worker, env, broker, 5)
    _restart_empty(own_broker, tmp_path)

    worker = make_worker(env, "after-restart")
    worker.wait_ready()
    produce(broker, env["ORDERS_TOPIC"], [_order(n) for n in range(100, 103)])
    wait_for(lambda: metric(worker, "orders_counted_total") == 3, what="new orders counted")
    assert worker.get("/buyers/Ana/Ruiz").json()["count"] == 3  # the old 5 are gone with the broker
    log = worker.log()
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, warnings
    assert "has lost changelog" in warnings[0] and "starting clean" in warnings[0]
    assert "ConsistencyError" not in log and "Traceback" not in log


def test_external_broker_missing_changelog_stops_and_names_it(
        own_broker, worker_env, make_worker, tmp_path):
    broker = f"127.0.0.1:{own_broker['port']}"
    env = {**worker_env, "KAFKA_BROKER": broker}
    env.pop("EMBEDDED_BROKER")
    _run_some_orders(make_worker, env, broker, 2)
    _restart_empty(own_broker, tmp_path)

    worker = make_worker(env, "refused")
    assert worker.process.wait(timeout=60) == 1
    errors = [line for line in worker.log().splitlines() if "ERROR" in line]
    assert len(errors) == 1
    app_id = env["APP_ID"]
    assert (f"changelog topics {app_id}-dedup-changelog, {app_id}-aggregate-changelog on "
            f"{broker} lack records") in errors[0]
    assert "rm -rf" in errors[0] and "faust -A app reset-offsets" in errors[0]
    assert "Traceback" not in worker.log()


def test_an_unusable_data_dir_is_one_clear_line_at_start(worker_env, make_worker, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where DATA_DIR should be")
    worker = make_worker({**worker_env, "DATA_DIR": str(blocker)}, "unusable")
    assert worker.process.wait(timeout=60) == 1
    log = worker.log()
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"DATA_DIR {blocker} is not writable" in errors[0]
    assert "Traceback" not in log


def test_state_built_on_the_embedded_broker_is_discarded_on_another_broker(
        own_broker, worker_env, make_worker, tmp_path):
    broker = f"127.0.0.1:{own_broker['port']}"
    env = {**worker_env, "KAFKA_BROKER": broker, "EMBEDDED_BROKER": "1"}
    _run_some_orders(make_worker, env, broker, 2)
    _restart_empty(own_broker, tmp_path)  # as if KAFKA_BROKER now named another broker
    external = {k: v for k, v in env.items() if k != "EMBEDDED_BROKER"}
    worker = make_worker(external, "external")
    worker.wait_ready()
    warnings = [line for line in worker.log().splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "built on the embedded broker" in warnings[0]
