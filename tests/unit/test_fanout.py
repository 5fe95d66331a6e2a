"""The live-push hub (api.fanout) on an in-memory log: one consumer for every client, the
ring, resuming from it or through a catch-up consumer, dropping, lingering, new
partitions; and the stream routes' cap and event ids."""

import asyncio
import logging

import httpx
import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from pydantic import ValidationError

from api import fanout
from api.fanout import HubFull, HubStopped, HubUnavailable, StreamEnded, StreamHub
from api.fanout_ring import Entry, Ring
from api.main import create_api
from api.routes import streams
from app.metrics import Metrics
from app.settings import Settings, describe_error
from tests.unit.fakes import FakeRuntime

T = "totals"


class FakeLog:
    """Topics in memory, offsets from 0; every consumer the hub made, by reset policy."""

    def __init__(self, partitions: dict[str, int]) -> None:
        self.records = {TopicPartition(t, p): [] for t, n in partitions.items() for p in range(n)}
        self.sources: list[FakeSource] = []

    def append(self, partition: int, count: int = 1, topic: str = T) -> None:
        tp = TopicPartition(topic, partition)
        for _ in range(count):
            n = len(self.records[tp])
            self.records[tp].append((f"k{n}".encode(), f"{topic}/{partition}/{n}".encode()))

    def source(self, reset: str) -> "FakeSource":
        source = FakeSource(self, reset)
        self.sources.append(source)
        return source

    def made(self, reset: str) -> list["FakeSource"]:
        return [s for s in self.sources if s.reset == reset]


class FakeSource:
    """api.fanout_ring.Source over a FakeLog."""

    def __init__(self, log: FakeLog, reset: str) -> None:
        self.log, self.reset = log, reset
        self.positions: dict[TopicPartition, int] = {}
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    async def partitions(self, topics):
        return {tp for tp in self.log.records if tp.topic in topics}

    async def end_offsets(self, tps):
        return {tp: len(self.log.records[tp]) for tp in tps}

    def assign(self, positions):
        self.positions = dict(positions)

    async def getmany(self, timeout_ms, max_records):
        batch = {}
        for tp, offset in self.positions.items():
            records = self.log.records[tp][offset:offset + max_records]
            if records:
                batch[tp] = [Entry(tp.topic, tp.partition, offset + i, k, v)
                             for i, (k, v) in enumerate(records)]
                self.positions[tp] = offset + len(records)
        if not batch:
            await asyncio.sleep(min(timeout_ms / 1000, 0.005))
        return batch

    async def position(self, tp):
        return self.positions[tp]

    def highwater(self, tp):
        return len(self.log.records[tp])


def make_hub(log: FakeLog, max_clients: int = 10, **kwargs) -> StreamHub:
    return StreamHub([], Metrics(), max_clients, source=log.source, **kwargs)


def gauge(hub: StreamHub) -> float:
    return hub.metrics.registry.get_sample_value("orderstream_sse_clients")


async def read_values(lease, count: int, timeout_s: float = 5) -> list[str]:
    """The next `count` values a client reads, its positions moved past each."""
    got: list[str] = []
    async with asyncio.timeout(timeout_s):
        while len(got) < count:
            for entry in await lease.read(0.05):
                got.append(entry.value.decode())
                lease.positions[(lease.tags[entry.topic], entry.partition)] = entry.offset + 1
    return got


def test_clients_share_one_consumer_and_start_at_the_end():
    async def run():
        log = FakeLog({T: 2})
        log.append(0, 3)
        hub = make_hub(log)
        leases = [hub.admit({"": T}) for _ in range(5)]
        for lease in leases:
            await lease.start({})
        assert leases[0].positions == {("", 0): 3, ("", 1): 0}
        log.append(1)
        log.append(0)
        for lease in leases:
            assert sorted(await read_values(lease, 2)) == ["totals/0/3", "totals/1/0"]
            assert lease.positions == {("", 0): 4, ("", 1): 1}
            lease.close()
        assert [s.reset for s in log.sources] == ["latest"]
        await hub.stop()
    asyncio.run(run())


def test_the_cap_refuses_and_the_gauge_counts_exactly():
    async def run():
        hub = make_hub(FakeLog({T: 1}), max_clients=2)
        first, second = hub.admit({"": T}), hub.admit({"": T})
        with pytest.raises(HubFull, match="2 stream clients are connected"):
            hub.admit({"": T})
        assert gauge(hub) == 2
        first.close()
        first.close()  # once only, however a stream ends
        assert gauge(hub) == 1 and hub.clients == 1
        hub.admit({"": T})
        assert gauge(hub) == 2
        second.close()
    asyncio.run(run())


def test_a_client_resuming_within_the_ring_reads_from_it_exactly_there():
    async def run():
        log = FakeLog({T: 2})
        hub = make_hub(log)
        live = hub.admit({"": T})
        await live.start({})
        log.append(0, 5)
        log.append(1, 2)
        await read_values(live, 7)
        resumed = hub.admit({"": T})
        await resumed.start({("", 0): 3, ("", 1): 1})
        assert sorted(await read_values(resumed, 3)) == ["totals/0/3", "totals/0/4", "totals/1/1"]
        assert log.made("earliest") == []
        await hub.stop()
    asyncio.run(run())


def test_a_client_behind_the_ring_catches_up_then_reads_from_the_ring():
    async def run():
        log = FakeLog({T: 2})
        log.append(0, 4)
        log.append(1, 1)
        hub = make_hub(log)
        resumed = hub.admit({"": T})
        await resumed.start({("", 0): 1, ("", 1): 0})  # older than the hub, which starts now
        assert sorted(await read_values(resumed, 4)) == [
            "totals/0/1", "totals/0/2", "totals/0/3", "totals/1/0"]
        log.append(0)  # read once caught up: from the ring
        assert await read_values(resumed, 1) == ["totals/0/4"]
        [catchup] = log.made("earliest")
        await asyncio.sleep(0.01)
        assert catchup.stopped and hub.catchups._value == fanout.CATCHUP_SLOTS
        resumed.close()
        await hub.stop()
    asyncio.run(run())


def test_a_client_overrun_by_the_ring_loses_nothing():
    async def run():
        log = FakeLog({T: 1})
        hub = make_hub(log, ring=Ring(records=5))
        slow = hub.admit({"": T})
        await slow.start({})
        log.append(0, 20)
        await asyncio.sleep(0.05)  # the hub reads all 20 while the client reads none
        assert hub.ring.base == 15
        assert await read_values(slow, 20) == [f"totals/0/{n}" for n in range(20)]
        assert len(log.made("earliest")) == 1
        slow.close()
        await hub.stop()
    asyncio.run(run())


def test_a_client_further_than_max_behind_is_dropped(monkeypatch):
    monkeypatch.setattr(fanout, "MAX_BEHIND", 10)

    async def run():
        log = FakeLog({T: 1})
        log.append(0, 30)
        hub = make_hub(log)
        lease = hub.admit({"": T})
        await lease.start({("", 0): 5})
        with pytest.raises(StreamEnded, match="25 records behind in totals") as ended:
            await read_values(lease, 1)
        hub.ended(ended.value)
        assert hub.metrics.registry.get_sample_value("orderstream_sse_dropped_total") == 1
        lease.close()
        await hub.stop()
    asyncio.run(run())


def test_many_drops_log_one_line(caplog):
    hub = make_hub(FakeLog({T: 1}))
    with caplog.at_level(logging.WARNING, logger="api.fanout"):
        for n in range(50):
            hub.ended(StreamEnded(f"{n} behind"))
    assert len(caplog.records) == 1
    assert hub.metrics.registry.get_sample_value("orderstream_sse_dropped_total") == 50


def test_the_consumer_stops_after_the_last_client_and_starts_again():
    async def run():
        log = FakeLog({T: 1})
        hub = make_hub(log, linger_s=0.05)
        lease = hub.admit({"": T})
        await lease.start({})
        lease.close()
        await asyncio.sleep(0.2)
        [first] = log.sources
        assert first.stopped and not hub.running and hub.ring.head == 0
        again = hub.admit({"": T})
        await again.start({})
        assert hub.running and len(log.made("latest")) == 2
        again.close()
        await hub.stop()
    asyncio.run(run())


def test_streams_end_at_once_when_the_worker_stops():
    async def run():
        stopping = []
        hub = StreamHub([], Metrics(), 10, source=FakeLog({T: 1}).source,
                        stopping=lambda: bool(stopping))
        lease = hub.admit({"": T})
        await lease.start({})
        stopping.append(True)
        with pytest.raises(HubStopped):
            await lease.read(1)
        lease.close()
        with pytest.raises(HubUnavailable, match="the worker is stopping"):
            hub.admit({"": T})
        assert gauge(hub) == 0
    asyncio.run(run())


def test_without_a_broker_a_stream_is_unavailable_and_one_line_says_so(monkeypatch, caplog):
    monkeypatch.setattr(fanout, "READY_S", 0.1)

    class Down(FakeSource):
        async def start(self):
            raise KafkaConnectionError("no broker")

    async def run():
        log = FakeLog({T: 1})
        hub = StreamHub([], Metrics(), 10, source=lambda reset: Down(log, reset))
        for _ in range(3):
            lease = hub.admit({"": T})
            with pytest.raises(HubUnavailable, match="the broker did not answer"):
                await lease.start({})
            lease.close()
        await hub.stop()
    with caplog.at_level(logging.WARNING, logger="api.fanout"):
        asyncio.run(run())
    assert [r.getMessage() for r in caplog.records] == [
        "stream consumer: KafkaConnectionError('no broker'); retrying every second"]


def test_a_position_past_the_end_reads_the_partition_as_it_is_now():
    async def run():
        log = FakeLog({T: 1})
        log.append(0, 2)
        hub = make_hub(log)
        lease = hub.admit({"": T})
        await lease.start({("", 0): 40})  # a topic made anew since that id was sent
        assert lease.positions == {("", 0): 2}
        log.append(0)
        assert await read_values(lease, 1) == ["totals/0/2"]
        lease.close()
        await hub.stop()
    asyncio.run(run())


def test_partitions_that_appear_are_read_from_their_start(monkeypatch):
    monkeypatch.setattr(fanout, "DISCOVER_S", 0.01)

    async def run():
        log = FakeLog({T: 1})
        hub = make_hub(log)
        lease = hub.admit({"": T, "x": "later"})
        await lease.start({})
        log.records[TopicPartition("later", 0)] = []
        log.append(0, 2, topic="later")
        assert await read_values(lease, 2) == ["later/0/0", "later/0/1"]
        assert lease.positions == {("x", 0): 2, ("", 0): 0}
        lease.close()
        await hub.stop()
    asyncio.run(run())


def test_the_ring_keeps_its_bounds_and_raises_the_floor():
    ring = Ring(records=3, size=25)
    for n in range(4):
        ring.append(Entry(T, 0, n, b"k", b"v" * 9))  # 10 bytes each
    assert (ring.base, ring.head) == (2, 4)  # 3 records would be 30 bytes
    assert ring.floor == {TopicPartition(T, 0): 2}
    assert [e.offset for e in ring.entries(2, 4)] == [2, 3]


def test_event_ids_name_the_record_itself_but_after_its_last_event():
    async def run():
        log = FakeLog({T: 2})
        log.append(1, 9)
        hub = make_hub(log)
        lease = hub.admit({"u": T})
        await lease.start({("u", 1): 7})
        assert lease.positions == {("u", 0): 0, ("u", 1): 7}
        entry = Entry(T, 0, 12, None, b"")
        both = {"u": lambda e: [(b"update", b"{}"), (b"update", b"{}")]}
        text = streams._render(lease, [entry], both).decode()
        assert [line for line in text.splitlines() if line.startswith("id: ")] == [
            "id: u0:12,u1:7", "id: u0:13,u1:7"]
        lease.close()
        await hub.stop()
    asyncio.run(run())


def test_the_stream_routes_answer_503_with_retry_after_when_full():
    async def run():
        api = create_api(FakeRuntime(sse_max_clients=1))
        hub = make_hub(FakeLog({}), max_clients=1)
        api.dependency_overrides[streams.get_hub] = lambda: hub
        hub.admit({"": T})
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            answer = await client.get("/windows/tumble_10s/stream")
        assert (answer.status_code, answer.headers["retry-after"]) == (503, "5")
        assert answer.json() == {"detail": "1 stream clients are connected (SSE_MAX_CLIENTS)"}
    asyncio.run(run())


def test_sse_max_clients_is_a_validated_setting(monkeypatch):
    monkeypatch.delenv("SSE_MAX_CLIENTS", raising=False)
    assert Settings(_env_file=None).sse_max_clients == 1000
    monkeypatch.setenv("SSE_MAX_CLIENTS", "250")
    assert Settings(_env_file=None).sse_max_clients == 250
    for bad, says in (("0", "greater than or equal to 1"), ("lots", "valid integer")):
        monkeypatch.setenv("SSE_MAX_CLIENTS", bad)
        with pytest.raises(ValidationError) as error:
            Settings(_env_file=None)
        assert describe_error(error.value).startswith("invalid setting SSE_MAX_CLIENTS: ")
        assert says in describe_error(error.value)


def test_a_record_is_decoded_once_for_every_client():
    entry = Entry(T, 0, 0, orjson.dumps(["Ana", "Ruiz"]), b"{}")
    calls = []
    for _ in range(3):
        entry.memoized("buyer", lambda: calls.append(1) or ("Ana", "Ruiz"))
    assert calls == [1]
