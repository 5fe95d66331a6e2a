"""The job's own Kafka producer: sinks, repartition and changelog records, awaited per batch."""

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import RecordMetadata

from core.partitioning import default_partitioner
from tables.changelog import MAX_RECORD_BYTES

Outgoing = tuple[str, bytes | None, bytes, int | None]  # topic, key, value, partition


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
            max_request_size=MAX_RECORD_BYTES,
            max_batch_size=1024 * 1024,
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


def _failed(who: str, topic: str, key: bytes | None, value: bytes,
            error: BaseException) -> "SendFailed":
    size = len(value) + len(key or b"")
    return SendFailed(f"{who} a {size}-byte record for topic {topic}: {error!r}")


class SendFailed(RuntimeError):
    """A record of a batch was not acknowledged: the batch is redone after a restart."""
