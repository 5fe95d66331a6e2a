"""Oversized and hostile messages beside valid orders (SPEC.md, The order message): the
bad ones go to the DLQ as bounded records, every valid order counts, the worker stays up."""

import hashlib
import json
import uuid

import pytest

from app.producer import MAX_REQUEST_BYTES, Producer, SendFailed
from tests.integration.conftest import consume_all, metric, produce, run_sync, wait_for

pytestmark = pytest.mark.integration

T0 = 1_795_514_400_000


def test_oversized_and_long_named_orders_go_to_the_dlq_bounded_and_the_rest_count(
        broker, worker_env, make_worker):
    worker_env.update(PRINT_SINK="0")
    worker = make_worker(worker_env)
    worker.wait_ready()
    valid = [(str(n).encode(), json.dumps({
        "order_number": n, "price": "1.00", "order_time": T0 + n,
        "buyer": {"first_name": f"F{n % 5}", "last_name": "L"}}).encode()) for n in range(300)]
    huge = b"{" + b" " * (2 * 1024 * 1024) + b"}"  # 2 MiB, over MAX_MESSAGE_BYTES
    long_name = json.dumps({"order_number": 10_000, "price": "1.00", "order_time": T0,
                            "buyer": {"first_name": "x" * 500_000, "last_name": "L"}}).encode()
    # a valid order under a 2 MiB key: its records would carry the key as received
    long_key = b"\xff" * (2 * 1024 * 1024)
    keyed = json.dumps({"order_number": 10_001, "price": "1.00", "order_time": T0,
                        "buyer": {"first_name": "K", "last_name": "L"}}).encode()
    records = (valid[:150] + [(b"huge", huge), (b"long", long_name), (long_key, keyed)]
               + valid[150:])
    produce(broker, worker_env["ORDERS_TOPIC"], records, max_request_size=8 * 1024 * 1024)
    wait_for(lambda: metric(worker, "orders_counted_total") == 300, what="every valid order")
    assert metric(worker, "orders_invalid_total") == 3
    dlq = {key: (len(value), json.loads(value))
           for key, value in consume_all(broker, worker_env["ORDERS_TOPIC"] + "-dlq")}
    size, record = dlq[b"huge"]
    assert size < 70_000 and record["error"] == (
        f"value: {len(huge)} bytes, more than MAX_MESSAGE_BYTES (1MiB)")
    assert (record["raw_bytes"], record["raw_sha256"]) == (
        len(huge), hashlib.sha256(huge).hexdigest())
    size, record = dlq[b"long"]
    assert size < 70_000 and record["error"] == (
        "buyer.first_name: 500000 characters, more than 256")
    assert record["raw_bytes"] == len(long_name)
    size, record = dlq[b"\xff" * 4096]
    assert size < 70_000 and record["error"] == f"key: {len(long_key)} bytes, more than 4096"
    assert (record["key_bytes"], record["key_sha256"], record["raw"]) == (
        len(long_key), hashlib.sha256(long_key).hexdigest(), keyed.decode())
    totals = consume_all(broker, worker_env["BUYER_TOTALS_TOPIC"])
    assert max(len(value) for _, value in totals) < 200
    assert worker.get("/buyers/K/L").status_code == 404  # in the DLQ, counted nowhere
    assert worker.get("/health").status_code == 200


def test_a_record_over_the_producers_limit_is_a_send_failure_naming_its_topic_and_size(broker):
    """aiokafka refuses a record over max_request_size as it is handed over, not in its
    future: the batch fails as for a broker's refusal, and the error says which record."""
    topic = f"too-big-{uuid.uuid4().hex[:8]}"  # refused before any topic is needed

    async def send() -> str:
        producer = Producer({"bootstrap_servers": [broker]})
        await producer.start()
        try:
            await producer.send_all([(topic, b"k", b"v" * (MAX_REQUEST_BYTES + 1), 0)])
        except SendFailed as error:
            return str(error)
        finally:
            await producer.stop()
        return "sent"

    assert run_sync(send()).startswith(
        f"the producer refused a {MAX_REQUEST_BYTES + 2}-byte record for topic {topic}: "
        "MessageSizeTooLargeError")
