"""A changed partition count of the orders topic against existing state stops the worker."""

import asyncio
import subprocess

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.integration.conftest import FAUST, produce, run_sync, wait_for
from tests.integration.fresh import REPO
from tests.integration.test_exactly_once import T0, keyed

pytestmark = pytest.mark.integration

ORDER = keyed(1, "Ana", "Ruiz", "3.10", T0)


async def _make_orders_topic(broker: str, topic: str, partitions: int,
                             recreate: bool = False) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=broker, request_timeout_ms=10_000)
    await admin.start()
    try:
        if recreate:
            await admin.delete_topics([topic])
            for _ in range(50):  # until the broker no longer lists it
                metadata = await admin._client.fetch_all_metadata()  # noqa: SLF001
                if topic not in metadata.topics():
                    break
                await asyncio.sleep(0.1)
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()


def test_a_changed_orders_partition_count_stops_the_worker_in_one_line(broker, worker_env,
                                                                       make_worker):
    orders = worker_env["ORDERS_TOPIC"]
    run_sync(_make_orders_topic(broker, orders, 2))
    first = make_worker(worker_env, "first")
    first.wait_ready()
    produce(broker, orders, [ORDER])
    wait_for(lambda: first.get("/buyers/Ana/Ruiz").status_code == 200, what="the order")
    assert first.stop() == 0, first.log()[-3000:]
    # tansu has no CreatePartitions (aiokafka: "CreatePartitionsRequest cannot be used if
    # the API version is unknown"): the orders topic is recreated with 4 partitions
    # instead, which a user can do too; the internal topics and DATA_DIR keep 2
    run_sync(_make_orders_topic(broker, orders, 4, recreate=True))
    second = make_worker(worker_env, "second")
    assert second.process.wait(timeout=90) == 1, second.log()[-3000:]
    errors = [line for line in second.log().splitlines() if "ERROR" in line]
    assert len(errors) == 1, second.log()
    app_id = worker_env["APP_ID"]
    assert (f"orderstream: the orders topic {orders} has 4 partitions but the state was "
            f"built for 2 ({app_id}-dedup-changelog and {app_id}-orders-by-number have 2): "
            ) in errors[0]
    assert "run `faust -A app reset` where each worker's DATA_DIR is" in errors[0]
    assert "Traceback" not in second.log()

    # the command named: internal topics recreated with the orders topic's 4 partitions
    reset = subprocess.run([str(FAUST), "-A", "app", "reset"], cwd=REPO, env=worker_env,
                           capture_output=True, text=True, timeout=120)
    assert reset.returncode == 0, reset.stderr
    third = make_worker(worker_env, "third")
    third.wait_ready()
    produce(broker, orders, [ORDER])  # the recreated orders topic is empty
    wait_for(lambda: third.get("/buyers/Ana/Ruiz").status_code == 200
             and third.get("/buyers/Ana/Ruiz").json()["count"] == 1, what="the order again")
