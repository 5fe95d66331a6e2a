"""`faust -A app datagen` as a real process against the real broker."""

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from core.datagen import OrderGenerator, encode
from core.timefmt import parse_time_ms

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
START = "2026-11-24T10:00:00Z"


def run_datagen(broker: str, topic: str, tmp_path: Path, *options: str,
                **env: str) -> subprocess.CompletedProcess[str]:
    """Run the datagen command from the repository root, as a user would."""
    environment = {**os.environ, "KAFKA_BROKER": broker, "ORDERS_TOPIC": topic,
                   "DATA_DIR": str(tmp_path / "data"), **env}
    return subprocess.run([sys.executable, "-m", "faust", "-A", "app", "datagen", *options],
                          cwd=REPO, env=environment, capture_output=True, text=True, timeout=120)


async def read_topic(broker: str, topic: str) -> tuple[int, list[tuple[bytes, bytes]]]:
    """Partition count and every (key, value) of a topic, up to its end offsets."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False,
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[tuple[bytes, bytes]] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batches = await consumer.getmany(timeout_ms=1_000)
            records += [(m.key, m.value) for batch in batches.values() for m in batch]
        return len(partitions), records
    finally:
        await consumer.stop()


def expected_orders(count: int) -> dict[bytes, dict[str, Any]]:
    """What the generator yields for seed 7 from START at 1000 rows/s, by Kafka key."""
    generator = OrderGenerator(seed=7, start_time_ms=parse_time_ms(START), rows_per_second=1000)
    orders = [generator.next_order(0) for _ in range(count)]
    return {encode(order)[0]: order for order in orders}


def test_seeded_run_sends_exactly_the_generated_orders(broker: str, tmp_path: Path) -> None:
    topic = f"orders-{uuid.uuid4().hex[:12]}"
    result = run_datagen(broker, topic, tmp_path, "--number-of-rows", "50",
                         "--rows-per-second", "1000", "--seed", "7", "--start-time", START,
                         TOPIC_PARTITIONS="3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"datagen: sent 50 orders to {topic} in ")
    assert "Traceback" not in result.stderr

    partitions, records = asyncio.run(read_topic(broker, topic))
    assert partitions == 3  # the command created the topic with TOPIC_PARTITIONS
    assert len(records) == 50
    received = {key: orjson.loads(value) for key, value in records}
    assert received == expected_orders(50)
    # Independent of the generator: seed 7 numbers from 8e9, one order per ms of event time.
    for i in range(50):
        order = received[str(8_000_000_000 + i).encode()]
        assert order["order_number"] == 8_000_000_000 + i
        assert order["order_time"] == f"2026-11-24T10:00:00.{i:03d}Z"


@pytest.mark.parametrize(("option", "value"), [
    ("--buyers", "0"),
    ("--number-of-rows", "-1"),
    ("--rows-per-second", "0"),
    ("--max-out-of-order", "5 parsecs"),
    ("--start-time", "yesterday"),
])
def test_bad_option_is_one_line_naming_it(broker: str, tmp_path: Path, option: str,
                                          value: str) -> None:
    topic = f"orders-{uuid.uuid4().hex[:12]}"
    result = run_datagen(broker, topic, tmp_path, option, value)
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: Invalid value for '{option}': ")
