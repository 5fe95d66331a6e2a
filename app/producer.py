"""The job's own Kafka producer: sinks, repartition and changelog records, awaited per batch."""

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata

from core.partitioning import default_partitioner
from tables.changelog import EPOCH_HEADER, Record

Outgoing = tuple[str, bytes | None, bytes, int | None]  # topic, key, value, partition
# The largest record: a copy of an order of MAX_MESSAGE_BYTES (32 MiB at most) and its key.
MAX_REQUEST_BYTES = 33 * 1024 * 1024
# Records are sent in batches of at most this size (one record larger than it goes alone):
# under Kafka's default max.message.bytes (1 MiB) with room for the batch's overhead.
MAX_BATCH_BYTES = 512 * 1024


class Producer:
    """Sends a batch's records and waits until the broker has them all."""

    def __init__(self, bootstrap: list[str]) -> None:
        self._bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        """Connect (aiokafka needs the running loop, so not in __init__)."""
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            acks="all",
            linger_ms=0,  # every batch awaits its sends at once: nothing to wait for
            max_request_size=MAX_REQUEST_BYTES,
            max_batch_size=MAX_BATCH_BYTES,
            partitioner=default_partitioner,
        )
        await self._producer.start()

    async def stop(self) -> None:
        """Flush what is pending and disconnect."""
        if self._producer is not None:
            await self._producer.stop()

    async def send_all(self, records: Iterable[Outgoing]) -> list[RecordMetadata]:
        """Send every record, in order per partition; return their metadata once
        acknowledged. SendFailed names the first record the broker refused."""
        assert self._producer is not None, "Producer.start() first"
        records = list(records)
        futures = []
        for topic, key, value, partition in records:
            try:  # aiokafka refuses a record over max_request_size here, not in the future
                futures.append(await self._producer.send(topic, value=value, key=key,
                                                         partition=partition))
            except MessageSizeTooLargeError as error:
                await asyncio.gather(*futures, return_exceptions=True)
                raise _failed("the producer refused", topic, key, value, error) from error
        results = await asyncio.gather(*futures, return_exceptions=True)
        for (topic, key, value, _), result in zip(records, results, strict=True):
            if isinstance(result, BaseException):
                raise _failed("the broker refused", topic, key, value, result) from result
        return list(results)  # type: ignore[arg-type]


    async def write(self, topic: str, partition: int, records: list[Record],
                    epoch: int) -> int:
        """A changelog partition's records in order, each with the epoch header, sent as
        whole record batches (far cheaper than a send per record); the last one's offset."""
        assert self._producer is not None, "Producer.start() first"
        producer, headers = self._producer, [(EPOCH_HEADER, str(epoch).encode())]
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
