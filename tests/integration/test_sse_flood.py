"""Live push at scale: 1,000 stream clients on one worker share its one consumer; /health
stays quick, the 1,001st gets 503, an order reaches them all, and leaving gives the file
descriptors and the memory back: twice, so the second wave shows the first left nothing."""

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from tests.integration.conftest import Worker, produce
from tests.integration.test_exactly_once import T0, keyed

pytestmark = pytest.mark.integration
CLIENTS = 1000
WINDOW_CLIENTS = 100  # of them, on /windows/tumble_10s/stream; the rest on /buyers/stream


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@dataclass
class Client:
    """One raw HTTP/1.1 stream: what it has received so far."""

    path: str
    received: bytearray = field(default_factory=bytearray)
    writer: asyncio.StreamWriter | None = None
    task: asyncio.Task | None = None

    async def connect(self, host: str, port: int) -> None:
        reader, self.writer = await asyncio.open_connection(host, port)
        self.writer.write(f"GET {self.path} HTTP/1.1\r\nHost: {host}\r\n"
                          "Accept: text/event-stream\r\n\r\n".encode())
        while b": connected" not in self.received:
            chunk = await reader.read(65536)
            assert chunk, f"closed before `: connected`: {bytes(self.received)!r}"
            self.received += chunk
        assert self.received.startswith(b"HTTP/1.1 200"), bytes(self.received[:200])
        self.task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        while chunk := await reader.read(65536):
            self.received += chunk

    async def close(self) -> None:
        assert self.writer is not None and self.task is not None
        self.task.cancel()
        self.writer.close()
        await asyncio.gather(self.task, self.writer.wait_closed(), return_exceptions=True)


async def wait_until(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def health_ms(http: httpx.AsyncClient) -> tuple[float, float]:
    """Median and largest time of 20 GET /health, each answered 200."""
    latencies = []
    for _ in range(20):
        before = time.perf_counter()
        answer = await http.get("/health")
        latencies.append((time.perf_counter() - before) * 1000)
        assert answer.status_code == 200
        await asyncio.sleep(0.05)
    return sorted(latencies)[len(latencies) // 2], max(latencies)


async def flood(worker: Worker, broker: str, topic: str, number: int = 1) -> dict[str, float]:
    """Open CLIENTS streams, check them, send them Ana's order `number` (2.50, after
    orders 1 to number - 1 of hers), close them."""
    pid = worker.process.pid
    host, port = urlsplit(worker.url).hostname, worker.port
    figures = {"fds_before": open_fds(pid), "rss_before_mib": rss_mib(pid)}
    log_before = worker.log_path.stat().st_size
    http = httpx.AsyncClient(base_url=worker.url, timeout=10)

    async def gauge(name: str) -> float:
        for line in (await http.get("/metrics")).text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in /metrics")

    figures["health_before_median_ms"], _ = await health_ms(http)
    paths = [("/windows/tumble_10s/stream?first_name=Ana" if n < WINDOW_CLIENTS else
              "/buyers/stream" if n % 2 else "/buyers/stream?first_name=Ana&last_name=Ruiz")
             for n in range(CLIENTS)]
    clients = [Client(path) for path in paths]
    started = time.monotonic()
    for at in range(0, CLIENTS, 100):  # 100 connects in flight at a time
        await asyncio.gather(*(c.connect(host, port) for c in clients[at:at + 100]))
    figures["connect_all_s"] = time.monotonic() - started
    try:
        figures["health_median_ms"], figures["health_max_ms"] = await health_ms(http)
        assert figures["health_max_ms"] < 1000
        assert await gauge("orderstream_sse_clients") == CLIENTS

        refused = await http.get("/buyers/stream")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert refused.json() == {
            "detail": f"{CLIENTS} stream clients are connected (SSE_MAX_CLIENTS)"}
        assert await gauge("orderstream_sse_clients") == CLIENTS

        figures["fds_with_clients"] = open_fds(pid)
        figures["rss_with_clients_mib"] = rss_mib(pid)
        sent = time.monotonic()
        await asyncio.to_thread(produce, broker, topic, [keyed(number, "Ana", "Ruiz", "2.50", T0)])

        async def all_updated() -> bool:
            return all(b"event: update" in c.received for c in clients)
        await wait_until(all_updated, 30, "every client to receive Ana's update")
        figures["order_to_all_clients_s"] = time.monotonic() - sent  # through the pipeline
        total = {"buyer": {"first_name": "Ana", "last_name": "Ruiz"}, "count": number,
                 "total_price": f"{number * 5 // 2}.{number * 50 % 100:02d}", "event": "update"}
        for client in clients[WINDOW_CLIENTS:]:
            data = client.received.split(b"data: ", 1)[1].split(b"\n", 1)[0]
            assert orjson.loads(data) == total
        row = orjson.loads(clients[0].received.split(b"data: ", 1)[1].split(b"\n", 1)[0])
        assert (row["count"], row["sum_price"], row["final"]) == (
            number, total["total_price"], False)
        assert await gauge("orderstream_sse_dropped_total") == 0
    finally:
        await asyncio.gather(*(c.close() for c in clients))

    async def gone() -> bool:
        return await gauge("orderstream_sse_clients") == 0
    await wait_until(gone, 30, "the gauge back to 0")

    async def fds_back() -> bool:
        return open_fds(pid) <= figures["fds_before"] + 20
    await wait_until(fds_back, 30, "the worker's file descriptors back")
    figures["fds_after"] = open_fds(pid)
    figures["rss_after_mib"] = rss_mib(pid)
    figures["log_growth_bytes"] = worker.log_path.stat().st_size - log_before
    await http.aclose()
    return figures


def test_a_thousand_stream_clients_share_one_consumer(broker, worker_env, make_worker):
    worker_env.update(PRINT_SINK="0", SSE_MAX_CLIENTS=str(CLIENTS), WINDOWS="tumble:10s",
                      ALLOWED_LATENESS="0s")
    worker = make_worker(worker_env)
    worker.wait_ready()
    first = asyncio.run(flood(worker, broker, worker_env["ORDERS_TOPIC"], 1))
    second = asyncio.run(flood(worker, broker, worker_env["ORDERS_TOPIC"], 2))
    for figures in first, second:
        print("sse flood:", {k: round(v, 1) for k, v in figures.items()})
        # no line per client: connecting and leaving 1,000 of them says nothing
        assert figures["log_growth_bytes"] < 4096, worker.log()[-3000:]
    # what the first 1,000 clients held was given back, and the second 1,000 reused it
    # (the allocator keeps freed memory for reuse: RSS does not fall back, it stops growing)
    assert second["rss_after_mib"] - first["rss_after_mib"] < 10, (first, second)
