"""Topic ids (KIP-516), from a Metadata v10 request aiokafka does not make itself.

A topic deleted and created again under its name gets a new id. Offsets tell that only
while the new topic holds fewer records than the state applied; the id tells it at once,
however much the new topic was refilled. aiokafka asks Metadata up to v5, which has no
ids, so this module defines v10 in aiokafka's own protocol types. A broker that does not
serve v10 or later gives no ids, and the offset checks are all there is.
"""

import random
from io import BytesIO
from typing import Any

from aiokafka.client import AIOKafkaClient
from aiokafka.errors import IncompatibleBrokerVersion, KafkaError
from aiokafka.protocol.abstract import AbstractType
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import (
    Boolean,
    CompactArray,
    CompactString,
    Int16,
    Int32,
    Schema,
    TaggedFields,
)

METADATA_V10 = 10
NO_ID = bytes(16)  # the all-zero id: the broker has none for the topic


class Uuid(AbstractType[bytes]):
    """A UUID on the wire: 16 bytes."""

    @classmethod
    def encode(cls, value: bytes) -> bytes:
        return value

    @classmethod
    def decode(cls, data: BytesIO) -> bytes:
        value = data.read(16)
        if len(value) != 16:
            raise ValueError("Buffer underrun decoding a UUID")
        return value


class MetadataResponse_v10(Response):  # noqa: N801 (aiokafka's naming)
    API_KEY = 3
    API_VERSION = METADATA_V10
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("brokers", CompactArray(
            ("node_id", Int32), ("host", CompactString("utf-8")), ("port", Int32),
            ("rack", CompactString("utf-8")), ("tags", TaggedFields))),
        ("cluster_id", CompactString("utf-8")),
        ("controller_id", Int32),
        ("topics", CompactArray(
            ("error_code", Int16),
            ("name", CompactString("utf-8")),
            ("topic_id", Uuid),
            ("is_internal", Boolean),
            ("partitions", CompactArray(
                ("error_code", Int16), ("partition_index", Int32), ("leader_id", Int32),
                ("leader_epoch", Int32), ("replica_nodes", CompactArray(Int32)),
                ("isr_nodes", CompactArray(Int32)),
                ("offline_replicas", CompactArray(Int32)), ("tags", TaggedFields))),
            ("topic_authorized_operations", Int32),
            ("tags", TaggedFields))),
        ("cluster_authorized_operations", Int32),
        ("tags", TaggedFields),
    )


class MetadataRequest_v10(RequestStruct):  # noqa: N801
    FLEXIBLE_VERSION = True
    API_KEY = 3
    API_VERSION = METADATA_V10
    RESPONSE_TYPE = MetadataResponse_v10
    SCHEMA = Schema(
        ("topics", CompactArray(
            ("topic_id", Uuid), ("name", CompactString("utf-8")), ("tags", TaggedFields))),
        ("allow_auto_topic_creation", Boolean),
        ("include_cluster_authorized_operations", Boolean),
        ("include_topic_authorized_operations", Boolean),
        ("tags", TaggedFields),
    )


class TopicIdsRequest(Request[MetadataRequest_v10]):
    """Metadata v10 of the topics named, creating none."""

    API_KEY = 3

    def __init__(self, topics: list[str]) -> None:
        self._topics = topics

    def build(self, request_struct_class: type[MetadataRequest_v10]) -> MetadataRequest_v10:
        return request_struct_class(
            [(NO_ID, name, {}) for name in self._topics], False, False, False, {})


async def topic_ids(client: AIOKafkaClient, topics: list[str]) -> dict[str, bytes]:
    """The id of each topic the broker has, of those named (a started client); none
    from a broker that does not serve Metadata v10. Each broker is asked in turn until
    one answers, as aiokafka's own metadata refresh does; the last error if none does."""
    if not topics:
        return {}
    nodes = [broker.nodeId for broker in client.cluster.brokers()]
    random.shuffle(nodes)
    failure: Exception | None = None
    for node in nodes or [client.get_random_node()]:
        try:
            response: Any = await client.send(node, TopicIdsRequest(topics))
        except (NotImplementedError, IncompatibleBrokerVersion):  # no v10 among its versions
            return {}
        except (KafkaError, OSError) as error:
            failure = error
            continue
        return {name: topic_id for error, name, topic_id, *_ in response.topics
                if error == 0 and topic_id != NO_ID}
    raise failure or KafkaError("no broker to ask for topic ids")


__all__ = ["topic_ids"]
