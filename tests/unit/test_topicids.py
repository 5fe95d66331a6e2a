"""The Metadata v10 request and response of app.topicids, byte for byte against the
Kafka protocol's layout (KIP-482 compact types), written out by hand here."""

import asyncio
import struct
from io import BytesIO
from types import SimpleNamespace

from app.topicids import MetadataResponse_v10, TopicIdsRequest, topic_ids

ID = bytes(range(1, 17))


def i16(value: int) -> bytes:
    return struct.pack(">h", value)


def i32(value: int) -> bytes:
    return struct.pack(">i", value)


def compact(text: str) -> bytes:  # length + 1 as one varint byte, then the UTF-8 bytes
    return bytes([len(text) + 1]) + text.encode()


# brokers: [1 at h:9092, no rack]; cluster c; controller 1; topics "ab" (one partition,
# the id above) and "zz" (error 3, UNKNOWN_TOPIC_OR_PARTITION, the zero id)
RESPONSE = b"".join([
    i32(0),
    b"\x02", i32(1), compact("h"), i32(9092), b"\x00", b"\x00",
    compact("c"), i32(1),
    b"\x03",
    i16(0), compact("ab"), ID, b"\x00",
    b"\x02", i16(0), i32(0), i32(1), i32(5), b"\x02" + i32(1), b"\x02" + i32(1), b"\x01", b"\x00",
    i32(-2**31), b"\x00",
    i16(3), compact("zz"), bytes(16), b"\x00", b"\x01", i32(-2**31), b"\x00",
    i32(-2**31), b"\x00",
])


def test_the_request_asks_by_name_with_the_zero_id_and_creates_nothing():
    request = TopicIdsRequest(["ab"]).prepare({3: (0, 12)})
    assert request.API_VERSION == 10 and request.FLEXIBLE_VERSION
    assert request.encode() == (b"\x02" + bytes(16) + compact("ab") + b"\x00"
                                + b"\x00\x00\x00" + b"\x00")


def test_the_response_gives_the_id_of_each_topic_the_broker_has():
    decoded = MetadataResponse_v10.decode(BytesIO(RESPONSE))
    assert [(t[0], t[1], t[2]) for t in decoded.topics] == [(0, "ab", ID), (3, "zz", bytes(16))]
    assert decoded.topics[0][4][0][:4] == (0, 0, 1, 5)

    class Client:  # the one edge faked: the connection to a broker
        cluster = SimpleNamespace(brokers=lambda: [SimpleNamespace(nodeId=1)])
        asked: list = []

        async def send(self, node, request):
            self.asked.append((node, request.prepare({3: (0, 12)}).encode()))
            return MetadataResponse_v10.decode(BytesIO(RESPONSE))

    client = Client()
    assert asyncio.run(topic_ids(client, ["ab", "zz"])) == {"ab": ID}
    assert [node for node, _ in client.asked] == [1]
    assert asyncio.run(topic_ids(client, [])) == {}  # nothing to ask: no request
    assert len(client.asked) == 1


def test_a_broker_without_metadata_v10_gives_no_ids():
    class OldBroker:
        cluster = SimpleNamespace(brokers=lambda: [SimpleNamespace(nodeId=1)])

        async def send(self, node, request):
            return request.prepare({3: (0, 9)})  # aiokafka raises: no version in range

    assert asyncio.run(topic_ids(OldBroker(), ["ab"])) == {}
