"""The job's own Kafka producers: sinks, repartition and changelog records, awaited per batch.

On a broker with transactions (Apache Kafka), each stage's partition writes through a
transactional producer of its own (`transactional.id` `<APP_ID>-<stage>-<partition>`, as
Kafka Streams' EOS-v1 does per task): a batch's outputs, its changelog records and its
input offsets commit together or not at all, and a new owner of the partition fences the
old one (its next send or commit fails with ProducerFenced). Without transactions (tansu)
they are plain sends, in the order the agents rely on (tables.changelog).
"""

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, MessageSizeTooLargeError, ProducerFenced
from aiokafka.structs import OffsetAndMetadata, RecordMetadata

from core.partitioning import default_partitioner
from tables.changelog import EPOCH_HEADER, Fenced, Outgoing, Record

log = logging.getLogger(__name__)
# The largest record: a copy of an order of MAX_MESSAGE_BYTES (32 MiB at most) and its key.
MAX_REQUEST_BYTES = 33 * 1024 * 1024
# Records are sent in batches of at most this size (one record larger than it goes alone):
# under Kafka's default max.message.bytes (1 MiB) with room for the batch's overhead.
MAX_BATCH_BYTES = 512 * 1024
# A transaction open longer than this (a worker paused, or cut off) is aborted by Kafka.
TRANSACTION_TIMEOUT_MS = 60_000


def _new_producer(client: Mapping[str, Any],
                  transactional_id: str | None = None) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **client,
        acks="all",
        linger_ms=0,  # every batch awaits its sends at once: nothing to wait for
        max_request_size=MAX_REQUEST_BYTES,
        max_batch_size=MAX_BATCH_BYTES,
        partitioner=default_partitioner,
        transactional_id=transactional_id,
        transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
    )


class Producer:
    """Sends a batch's records and waits until the broker has them all."""

    def __init__(self, client: Mapping[str, Any], transactions_for: str | None = None) -> None:
        """`client`: how to connect (Settings.kafka_client); `transactions_for`: the
        APP_ID whose stages write transactionally (and whose consumer group takes their
        input offsets); None on a broker without them."""
        self._client = client
        self._producer: AIOKafkaProducer | None = None
        self._app_id = transactions_for
        self._transactional: dict[tuple[str, int], AIOKafkaProducer] = {}

    @property
    def transactional(self) -> bool:
        """Whether each stage's partition writes in transactions."""
        return self._app_id is not None

    async def start(self) -> None:
        """Connect (aiokafka needs the running loop, so not in __init__)."""
        self._producer = _new_producer(self._client)
        await self._producer.start()

    async def stop(self) -> None:
        """Flush what is pending and disconnect."""
        for key in list(self._transactional):
            await self.release(*key)
        if self._producer is not None:
            await self._producer.stop()

    async def send_all(self, records: Iterable[Outgoing]) -> list[RecordMetadata]:
        """Send every record, in order per partition; return their metadata once
        acknowledged. SendFailed names the first record the broker refused."""
        assert self._producer is not None, "Producer.start() first"
        return await _send_all(self._producer, list(records))

    async def write(self, stage: str, topic: str, partition: int, records: list[Record],
                    epoch: int, outputs: Sequence[Outgoing] = (),
                    consumed: dict[TopicPartition, int] | None = None) -> int:
        """One batch of a stage's partition: `outputs`, then its changelog `records` (each
        with the epoch header), and with transactions the `consumed` input offsets (next
        to read), all in one transaction; the last changelog record's offset.

        Without transactions the outputs are acknowledged before the changelog records
        are sent: a commit marker the broker has means outputs it has too."""
        if not self.transactional:
            assert self._producer is not None, "Producer.start() first"
            if outputs:
                await _send_all(self._producer, list(outputs))
            return await _write(self._producer, topic, partition, records, epoch)
        producer = await self._transactional_producer(stage, partition)
        try:
            async with producer.transaction():
                if outputs:
                    await _send_all(producer, list(outputs))
                offset = await _write(producer, topic, partition, records, epoch)
                if consumed:
                    assert self._app_id is not None
                    await producer.send_offsets_to_transaction(
                        {tp: OffsetAndMetadata(next_offset, "")
                         for tp, next_offset in consumed.items()}, self._app_id)
        except ProducerFenced:
            await self.release(stage, partition)
            raise Fenced(f"{topic}[{partition}]: another worker took this partition over "
                         f"(transactional producer fenced)") from None
        except SendFailed:
            await self.release(stage, partition)  # its transaction is in an unknown state
            raise
        return offset

    async def _transactional_producer(self, stage: str, partition: int) -> AIOKafkaProducer:
        """The partition's transactional producer; its start fences any earlier one of the
        same id (InitProducerId), whose open transaction Kafka then aborts."""
        key = (stage, partition)
        producer = self._transactional.get(key)
        if producer is None:
            assert self._app_id is not None
            producer = _new_producer(self._client, f"{self._app_id}-{stage}-{partition}")
            await producer.start()
            self._transactional[key] = producer
        return producer

    async def release(self, stage: str, partition: int) -> None:
        """Close the partition's transactional producer (the partition is no longer ours)."""
        producer = self._transactional.pop((stage, partition), None)
        if producer is not None:
            with contextlib.suppress(KafkaError):
                await producer.stop()


async def _send_all(producer: AIOKafkaProducer, records: list[Outgoing]) -> list[RecordMetadata]:
    futures = []
    for topic, key, value, partition in records:
        try:  # aiokafka refuses a record over max_request_size here, not in the future
            futures.append(await producer.send(topic, value=value, key=key,
                                               partition=partition))
        except MessageSizeTooLargeError as error:
            await asyncio.gather(*futures, return_exceptions=True)
            raise _failed("the producer refused", topic, key, value, error) from error
    results = await asyncio.gather(*futures, return_exceptions=True)
    for (topic, key, value, _), result in zip(records, results, strict=True):
        if isinstance(result, ProducerFenced):
            raise result
        if isinstance(result, BaseException):
            raise _failed("the broker refused", topic, key, value, result) from result
    return list(results)  # type: ignore[arg-type]


async def _write(producer: AIOKafkaProducer, topic: str, partition: int, records: list[Record],
                 epoch: int) -> int:
    """A changelog partition's records in order, each with the epoch header, sent as whole
    record batches (far cheaper than a send per record); the last one's offset."""
    headers = [(EPOCH_HEADER, str(epoch).encode())]
    futures, batch = [], producer.create_batch()
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()
            if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                raise _failed("the producer refused", topic, key, value or b"",
                              "larger than a record batch may be")
    last = batch.record_count() - 1
    futures.append(await producer.send_batch(batch, topic, partition=partition))
    results = await asyncio.gather(*futures, return_exceptions=True)
    for result in results:
        if isinstance(result, ProducerFenced):
            raise result
        if isinstance(result, BaseException):
            raise SendFailed(f"the broker refused changelog records for {topic}"
                             f"[{partition}]: {result!r}") from result
    return int(results[-1].offset) + last  # type: ignore[union-attr]


def _failed(who: str, topic: str, key: bytes | None, value: bytes,
            error: BaseException | str) -> "SendFailed":
    size = len(value) + len(key or b"")
    return SendFailed(f"{who} a {size}-byte record for topic {topic}: {error!r}")


class SendFailed(RuntimeError):
    """A record of a batch was not acknowledged: the batch is redone after a restart."""
