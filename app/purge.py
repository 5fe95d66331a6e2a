"""Purging repartition records the group has committed past (Apache Kafka only).

The repartition topics keep every record (retention.ms=-1) so none is lost before it is
processed; once the group's committed offset has passed a record, no worker reads it
again, and DeleteRecords removes it, as Kafka Streams does every
`repartition.purge.interval.ms`. tansu keeps topics in memory only and refuses
DeleteRecords (it drops the connection): there nothing is purged.
"""

import logging

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete
from aiokafka.errors import KafkaError

from app.settings import Settings

log = logging.getLogger(__name__)


async def purge_committed(settings: Settings, partitions: list[TopicPartition]) -> dict[
        TopicPartition, int]:
    """Delete the records of `partitions` before the group's committed offset; the new log
    start of each partition purged. A broker error is logged once per call, not raised:
    the next call tries again."""
    if not partitions:
        return {}
    admin = AIOKafkaAdminClient(**settings.kafka_client, request_timeout_ms=10_000)
    try:
        await admin.start()
        committed = await admin.list_consumer_group_offsets(settings.app_id,
                                                            partitions=partitions)
        due = {tp: RecordsToDelete(before_offset=meta.offset)
               for tp, meta in committed.items() if meta.offset > 0}
        return await admin.delete_records(due) if due else {}
    except KafkaError as error:
        log.info("purging committed repartition records: %r (tried again later)", error)
        return {}
    finally:
        await admin.close()
