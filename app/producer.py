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
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, cast

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    InvalidTopicError,
    KafkaError,
    MessageSizeTooLargeError,
    ProducerFenced,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedVersionError,
)
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
# A transactional batch that failed for a passing reason is sent again after this long,
# doubling up to RETRY_MOST_S; one WARNING per RETRY_LOG_S says so.
RETRY_FIRST_S, RETRY_MOST_S, RETRY_LOG_S = 0.5, 5.0, 30.0
# What the broker will refuse again, whatever the wait: the worker stops (issue 13).
NOT_RETRIED = (MessageSizeTooLargeError, RecordTooLargeError, InvalidTopicError,
               TopicAuthorizationFailedError, ClusterAuthorizationFailedError,
               TransactionalIdAuthorizationFailed, GroupAuthorizationFailedError,
               UnsupportedVersionError)


class NoTransactions(RuntimeError):
    """The broker refused a transactional producer."""


async def probe_transactions(client: Mapping[str, Any], app_id: str) -> None:
    """NoTransactions unless the broker starts a transactional producer (InitProducerId):
    tansu advertises the API but answers UnknownError. The probe's own id fences nothing."""
    producer = _new_producer(client, f"{app_id}-transactions-probe")
    try:
        await producer.start()
    except KafkaError as error:
        raise NoTransactions(f"{type(error).__name__}: {error}") from None
    finally:
        with contextlib.suppress(KafkaError):
            await producer.stop()


def _worth_retrying(error: BaseException) -> bool:
    """Whether a transactional batch that failed so is sent again (the broker restarting,
    leaders moving, a connection lost, aiokafka's sender giving up on one), rather than
    stopping the worker: never for a record the broker will refuse again, or a right it
    lacks."""
    cause = error.__cause__ if isinstance(error, SendFailed) else error
    if isinstance(cause, AssertionError):  # aiokafka: a state change from FATAL_ERROR
        return True
    return isinstance(cause, KafkaError) and not isinstance(cause, NOT_RETRIED)


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

    def __init__(self, client: Mapping[str, Any]) -> None:
        """`client`: how to connect (Settings.kafka_client). Plain sends until
        `use_transactions` names the APP_ID whose stages write transactionally."""
        self._client = client
        self._producer: AIOKafkaProducer | None = None
        self._app_id: str | None = None
        self._transactional: dict[tuple[str, int], AIOKafkaProducer] = {}
        self._last_retry_log = -RETRY_LOG_S
        self.on_retry: Callable[[], None] | None = None  # a batch is being sent again

    @property
    def transactional(self) -> bool:
        """Whether each stage's partition writes in transactions."""
        return self._app_id is not None

    def use_transactions(self, app_id: str | None) -> None:
        """Write each stage's partition in transactions for `app_id` (None: plain sends);
        before the first batch."""
        self._app_id = app_id

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
        delay_s = RETRY_FIRST_S
        while True:
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
                return offset
            except ProducerFenced:
                await self.release(stage, partition)
                raise Fenced(f"{topic}[{partition}]: another worker took this partition over "
                             f"(transactional producer fenced)") from None
            except (SendFailed, KafkaError, AssertionError) as error:
                # its transaction is in an unknown state (aiokafka can leave it FATAL):
                # the next producer of this id aborts it, and nobody reads it
                await self.release(stage, partition)
                if not _worth_retrying(error):
                    raise
                self._retrying(topic, partition, error, delay_s)
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, RETRY_MOST_S)

    def _retrying(self, topic: str, partition: int, error: BaseException,
                  delay_s: float) -> None:
        """Say so (at most one WARNING per RETRY_LOG_S), and tell the worker."""
        now = time.monotonic()
        if now - self._last_retry_log >= RETRY_LOG_S:
            self._last_retry_log = now
            log.warning("a batch of %s[%d] was not committed (%r): its transaction is "
                        "aborted and the batch sent again in %.1f s", topic, partition,
                        error, delay_s)
        if self.on_retry is not None:
            self.on_retry()

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
    sent: list[RecordMetadata] = []
    for (topic, key, value, _), result in zip(records, results, strict=True):
        if isinstance(result, ProducerFenced):
            raise result
        if isinstance(result, BaseException):
            raise _failed("the broker refused", topic, key, value, result) from result
        sent.append(result)
    return sent


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
    last: int = batch.record_count() - 1
    futures.append(await producer.send_batch(batch, topic, partition=partition))
    results = await asyncio.gather(*futures, return_exceptions=True)
    for result in results:
        if isinstance(result, ProducerFenced):
            raise result
        if isinstance(result, BaseException):
            raise SendFailed(f"the broker refused changelog records for {topic}"
                             f"[{partition}]: {result!r}") from result
    written = cast(RecordMetadata, results[-1])  # not an exception: the loop above raised it
    return int(written.offset) + last


def _failed(who: str, topic: str, key: bytes | None, value: bytes,
            error: BaseException | str) -> "SendFailed":
    size = len(value) + len(key or b"")
    return SendFailed(f"{who} a {size}-byte record for topic {topic}: {error!r}")


class SendFailed(RuntimeError):
    """A record of a batch was not acknowledged: the batch is redone after a restart."""
