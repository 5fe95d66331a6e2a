"""Kafka security settings (KAFKA_SECURITY_PROTOCOL and the rest) against a real Apache
Kafka with a SASL/PLAIN listener: every client of the service authenticates with them,
and wrong credentials stop the worker with one line."""

import subprocess
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from app.embedded import free_port
from tests import kafka
from tests.expected import money
from tests.integration.conftest import (
    FAUST,
    KAFKA_TEST_TIMEOUTS,
    consume_all,
    kafka_runtime,
    wait_for,
)
from tests.integration.fresh import REPO

pytestmark = [pytest.mark.integration, pytest.mark.kafka]

USER, PASSWORD = "orderstream", "s3cret-Pässword"
# The SASL listener beside the node's PLAINTEXT one (which brokers use between them, and
# the test to read what the worker wrote); PLAIN, one user, no authorizer.
SASL = """
listener.name.sasl_plaintext.sasl.enabled.mechanisms=PLAIN
listener.name.sasl_plaintext.plain.sasl.jaas.config=\
org.apache.kafka.common.security.plain.PlainLoginModule required \
user_{user}="{password}";
sasl.enabled.mechanisms=PLAIN
"""


class SaslNode(kafka.KafkaNode):
    """A one-node Kafka with a SASL_PLAINTEXT listener on `sasl_port` too."""

    def __init__(self, java: str, jars: Path, workdir: Path) -> None:
        super().__init__(java, jars, workdir)
        self.sasl_port = free_port()

    def configure(self) -> Path:
        properties = super().configure()
        plain = f"PLAINTEXT://127.0.0.1:{self.port}"
        sasl = f"SASL_PLAINTEXT://127.0.0.1:{self.sasl_port}"
        lines = []
        for line in properties.read_text().splitlines():
            if line.startswith(("listeners=", "advertised.listeners=")):
                line = line.replace(plain, f"{plain},{sasl}")
            elif line.startswith("listener.security.protocol.map="):
                line += ",SASL_PLAINTEXT:SASL_PLAINTEXT"
            lines.append(line)
        text = "\n".join(lines) + "\n"
        # a properties file is Latin-1: the password's other characters as \\uXXXX
        escaped = PASSWORD.encode("ascii", "backslashreplace").decode().replace("\\x", "\\u00")
        properties.write_text(text + SASL.format(user=USER, password=escaped))
        return properties


@pytest.fixture(scope="module")
def sasl_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslNode]:
    java, jars = kafka_runtime()
    node = SaslNode(java, jars, tmp_path_factory.mktemp("kafka-sasl"))
    node.start()
    try:
        yield node
    finally:
        node.stop()


def sasl_env(node: SaslNode, worker_env: dict[str, str], password: str) -> dict[str, str]:
    env = {k: v for k, v in worker_env.items() if k != "EMBEDDED_BROKER"}
    return {**env, **KAFKA_TEST_TIMEOUTS, "KAFKA_BROKER": f"127.0.0.1:{node.sasl_port}",
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN",
            "KAFKA_SASL_USERNAME": USER, "KAFKA_SASL_PASSWORD": password, "PRINT_SINK": "0"}


def test_every_client_authenticates_with_sasl_plain(sasl_node, worker_env, make_worker):
    env = sasl_env(sasl_node, worker_env, PASSWORD)
    worker = make_worker(env)
    worker.wait_ready()
    # datagen over SASL too; its orders are read back over PLAINTEXT for the expectation
    subprocess.run([str(FAUST), "-A", "app", "datagen", "--rows-per-second", "500",
                    "--number-of-rows", "300", "--seed", "4"], cwd=REPO, env=env,
                   check=True, capture_output=True, timeout=120)
    orders = [orjson.loads(value) for _, value in consume_all(sasl_node.bootstrap,
                                                              env["ORDERS_TOPIC"])]
    assert len(orders) == 300
    totals: dict[tuple[str, str], list] = defaultdict(lambda: [0, Decimal(0)])
    for order in orders:
        buyer = order["buyer"]
        totals[(buyer["first_name"], buyer["last_name"])][0] += 1
        totals[(buyer["first_name"], buyer["last_name"])][1] += Decimal(str(order["price"]))
    want = {b: (c, money(s)) for b, (c, s) in totals.items()}

    def got() -> dict:
        items = worker.get("/buyers", limit=1000).json()["items"]
        return {(i["buyer"]["first_name"], i["buyer"]["last_name"]): (
            i["count"], i["total_price"]) for i in items}

    wait_for(lambda: got() == want, timeout_s=120, what="the orders counted over SASL")


def test_a_wrong_password_stops_the_worker_with_one_line(sasl_node, worker_env, make_worker):
    worker = make_worker(sasl_env(sasl_node, worker_env, "not-the-password"))
    wait_for(lambda: worker.process.poll() is not None, timeout_s=60, what="the refusal")
    assert worker.process.returncode == 1
    errors = [line for line in worker.log().splitlines() if "ERROR" in line]
    assert len(errors) == 1, worker.log()[-3000:]
    assert ("orderstream: the broker" in errors[0] and "did not let the worker in" in errors[0]
            and "Authentication failed: Invalid username or password" in errors[0]), errors
    assert "Traceback" not in worker.log()
