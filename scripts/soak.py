"""`make test-soak`: a long run under load, with kill -9 every few minutes.

    .venv/bin/python scripts/soak.py [--minutes 30] [--rate 2000] [--kill-every 300]
                                     [--clients 100] [--qps 10]

A tansu broker of its own (it outlives the worker), one worker, `faust -A app datagen`
at RATE orders/s for MINUTES, CLIENTS live-push clients on /buyers/stream (each
reconnecting with Last-Event-ID), QPS key lookups a second, and the worker killed with
SIGKILL every KILL_EVERY seconds and started again on the same DATA_DIR. At the end it
reads the orders topic itself and checks, against the worker's answers:
- lost and doubled: every buyer's count and total from /buyers equal the test's own
  tally of the distinct orders in the topic;
- `buyer-totals`: the latest value per buyer equals that tally, and no buyer's count
  ever went back along its partition;
- `window-results`: no key has two different values;
- the API: no 5xx other than 503 while the worker restarts, and /health answered.
RSS is sampled every 5 s; its slope (MB per minute, least squares) is reported for each
run of the worker between kills, after its first minute. Results go to bench/results/.
Not part of `make test`: it takes as long as it says.
"""

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from app.embedded import free_port, start_tansu, stop_process  # noqa: E402
from app.settings import Settings  # noqa: E402

FAUST = Path(sys.executable).parent / "faust"
HOST = "127.0.0.1"
RSS_EVERY_S = 5.0
WARM_UP_S = 60.0


def say(message: str) -> None:
    print(f"[soak {time.strftime('%H:%M:%S')}] {message}", flush=True)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        return None
    return None


def slope_mb_per_min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) samples, in MB per minute."""
    if len(samples) < 3:
        return None
    xs, ys = [t for t, _ in samples], [m for _, m in samples]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    cov = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    return 60 * cov / var if var else None


class Worker:
    """The worker process, restarted on the same DATA_DIR after each kill."""

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        self.env, self.workdir = env, workdir
        self.url = f"http://{HOST}:{env['API_PORT']}"
        self.process: subprocess.Popen[bytes] | None = None
        self.runs: list[list[tuple[float, float]]] = []  # RSS samples per run

    def start(self) -> None:
        log = open(self.workdir / f"worker-{len(self.runs)}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [str(FAUST), "-A", "app", "worker", "-l", "warn"], cwd=REPO, env=self.env,
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        self.runs.append([])
        self.started = time.monotonic()

    def wait_ready(self, timeout_s: float = 180) -> float:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, "worker exited"
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return time.monotonic() - self.started
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"worker not ready after {timeout_s:.0f} s")

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def sample(self) -> None:
        if self.process is not None and (mb := rss_mb(self.process.pid)) is not None:
            self.runs[-1].append((time.monotonic() - self.started, mb))


class Load:
    """Key lookups at QPS and CLIENTS live-push readers, each in the background."""

    def __init__(self, url: str, buyers: list[tuple[str, str]], clients: int, qps: float):
        self.url, self.buyers, self.clients, self.qps = url, buyers, clients, qps
        self.statuses: dict[int, int] = defaultdict(int)
        self.events = 0
        self.reconnects = 0
        self.health_failures = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._queries, daemon=True),
                         threading.Thread(target=lambda: asyncio.run(self._streams()),
                                          daemon=True)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _queries(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as client:
            while not self._stop.is_set():
                first, last = random.choice(self.buyers)
                for path in (f"/buyers/{first}/{last}", "/health"):
                    try:
                        status = client.get(path).status_code
                    except httpx.HTTPError:
                        status = 0  # down: the worker was killed
                    if path == "/health":
                        self.health_failures += status != 200 and status != 0
                    else:
                        self.statuses[status] += 1
                time.sleep(1 / self.qps)

    async def _streams(self) -> None:
        await asyncio.gather(*(self._reader() for _ in range(self.clients)))

    async def _reader(self) -> None:
        """One client: read events, reconnect from the last id when the worker goes."""
        last_id: str | None = None
        host, port = HOST, int(self.url.rsplit(":", 1)[1])
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(1)
                continue
            header = f"Last-Event-ID: {last_id}\r\n" if last_id else ""
            writer.write(f"GET /buyers/stream HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode())
            try:
                while not self._stop.is_set():
                    line = await asyncio.wait_for(reader.readline(), 5)
                    if not line:
                        break
                    if line.startswith(b"id: "):
                        last_id = line[4:].strip().decode()
                    elif line.startswith(b"data: "):
                        self.events += 1
            except (OSError, TimeoutError):
                pass
            finally:
                writer.close()
            self.reconnects += 1
            await asyncio.sleep(0.5)


async def read_topic(broker: str, topic: str) -> list[Any]:
    """Every record of a topic, partition by partition in offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                        or ())]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        pending = {tp for tp in tps if ends[tp] > 0}
        while pending:
            fetched = await consumer.getmany(*pending, timeout_ms=1000, max_records=20_000)
            for got in fetched.values():
                records.extend(got)
            for tp in list(pending):
                end = max(ends[tp], consumer.highwater(tp) or 0)
                if await consumer.position(tp) >= end:
                    pending.discard(tp)
        return records
    finally:
        await consumer.stop()


def expected_totals(records: list[Any]) -> dict[tuple[str, str], tuple[int, Decimal]]:
    """The test's own tally: distinct order numbers per buyer, and their prices."""
    seen: set[int] = set()
    totals: dict[tuple[str, str], tuple[int, Decimal]] = {}
    for record in records:
        order = orjson.loads(record.value)
        if order["order_number"] in seen:
            continue
        seen.add(order["order_number"])
        buyer = (order["buyer"]["first_name"], order["buyer"]["last_name"])
        count, total = totals.get(buyer, (0, Decimal(0)))
        totals[buyer] = (count + 1, total + Decimal(str(order["price"])))
    return totals


def check(worker_url: str, broker: str, names: dict[str, str]) -> dict[str, Any]:
    """Lost, doubled, went back: the worker's answers and output topics against the tally."""
    orders = asyncio.run(read_topic(broker, names["orders"]))
    want = expected_totals(orders)
    got: dict[tuple[str, str], tuple[int, Decimal]] = {}
    while True:  # pages of the route's largest limit
        page = httpx.get(f"{worker_url}/buyers", params={"limit": 10_000, "offset": len(got)},
                         timeout=60).json()
        got.update({(i["buyer"]["first_name"], i["buyer"]["last_name"]):
                    (i["count"], Decimal(i["total_price"])) for i in page["items"]})
        if len(got) >= page["total"] or not page["items"]:
            break
    counted = sum(c for c, _ in got.values())
    expected = sum(c for c, _ in want.values())
    wrong = sorted(b for b in set(want) | set(got) if want.get(b) != got.get(b))
    latest: dict[bytes, dict[str, Any]] = {}
    went_back = 0
    for record in asyncio.run(read_topic(broker, names["buyer_totals"])):
        value = orjson.loads(record.value)
        before = latest.get(record.key)
        went_back += before is not None and value["count"] < before["count"]
        latest[record.key] = value
    topic_wrong = sum(
        1 for key, value in latest.items()
        if want.get(tuple(orjson.loads(key))) != (value["count"], Decimal(value["total_price"])))
    finals: dict[bytes, set[bytes]] = defaultdict(set)
    for record in asyncio.run(read_topic(broker, names["window_results"])):
        finals[record.key].add(record.value)
    return {"orders_in_topic": len(orders), "distinct_orders": expected, "counted": counted,
            "lost": max(expected - counted, 0), "doubled": max(counted - expected, 0),
            "buyers_wrong": len(wrong), "buyer_totals_went_back": went_back,
            "buyer_totals_latest_wrong": topic_wrong,
            "window_keys_with_two_values": sum(len(v) > 1 for v in finals.values()),
            "window_keys": len(finals)}


def wait_caught_up(url: str, orders_in_topic: int, timeout_s: float = 600) -> None:
    """Until the worker's consumer lag on the orders topic is 0 and counts stop moving."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        try:
            text = httpx.get(f"{url}/metrics", timeout=5).text
            page = httpx.get(f"{url}/buyers", params={"limit": 1}, timeout=5)
        except httpx.HTTPError:
            time.sleep(1)
            continue
        lag = sum(float(line.split()[-1]) for line in text.splitlines()
                  if line.startswith("orderstream_consumer_lag{"))
        now = (lag, page.status_code, text.count("\n"))
        if lag == 0 and page.status_code == 200 and now == last:
            return
        last = now
        time.sleep(3)
    say(f"not caught up after {timeout_s:.0f} s ({orders_in_topic} orders in the topic)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--rate", type=float, default=2000)
    parser.add_argument("--kill-every", type=float, default=300)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--qps", type=float, default=10)
    parser.add_argument("--buyers", type=int, default=1000)
    args = parser.parse_args()

    workdir = Path(os.environ.get("SOAK_DIR") or f"/tmp/orderstream-soak-{uuid.uuid4().hex[:6]}")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    broker = f"{HOST}:{port}"
    tansu = start_tansu(HOST, port, workdir / "tansu.log")
    suffix = uuid.uuid4().hex[:6]
    ours = {name.upper() for name in Settings.model_fields}
    env = {**{k: v for k, v in os.environ.items() if k not in ours},
           "KAFKA_BROKER": broker, "APP_ID": f"soak-{suffix}", "ORDERS_TOPIC": f"orders-{suffix}",
           "BUYER_TOTALS_TOPIC": f"buyer-totals-{suffix}",
           "WINDOW_RESULTS_TOPIC": f"window-results-{suffix}", "DATA_DIR": str(workdir / "data"),
           "API_HOST": HOST, "API_PORT": str(free_port()), "PRINT_SINK": "0",
           "DATAGEN_RPS": "0", "PYTHONUNBUFFERED": "1"}
    names = {"orders": env["ORDERS_TOPIC"], "buyer_totals": env["BUYER_TOTALS_TOPIC"],
             "window_results": env["WINDOW_RESULTS_TOPIC"]}
    worker = Worker(env, workdir)
    datagen: subprocess.Popen[bytes] | None = None
    try:
        worker.start()
        say(f"worker ready in {worker.wait_ready():.1f} s; broker {broker}, files in {workdir}")
        rows = int(args.rate * args.minutes * 60)
        datagen = subprocess.Popen(
            [str(FAUST), "-A", "app", "datagen", "--rows-per-second", str(args.rate),
             "--number-of-rows", str(rows), "--seed", "7", "--buyers", str(args.buyers)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
            stderr=open(workdir / "datagen.log", "wb"))  # noqa: SIM115
        time.sleep(5)  # some orders, so the buyers below exist
        buyers = [(i["buyer"]["first_name"], i["buyer"]["last_name"]) for i in httpx.get(
            f"{worker.url}/buyers", params={"limit": 1000}, timeout=10).json()["items"]]
        load = Load(worker.url, buyers or [("Ana", "Ruiz")], args.clients, args.qps)
        load.start()
        started, next_kill, next_sample = time.monotonic(), args.kill_every, 0.0
        restarts: list[float] = []
        while datagen.poll() is None:
            elapsed = time.monotonic() - started
            if elapsed >= next_sample:
                worker.sample()
                next_sample += RSS_EVERY_S
            if elapsed >= next_kill:
                worker.kill()
                worker.start()
                restarts.append(round(worker.wait_ready(), 1))
                say(f"kill -9 at {elapsed / 60:.1f} min; ready again in {restarts[-1]} s")
                next_kill += args.kill_every
            time.sleep(0.5)
        say(f"datagen done ({rows:,} rows, exit {datagen.returncode}); waiting to catch up")
        wait_caught_up(worker.url, rows)
        time.sleep(5)
        load.stop()
        result = check(worker.url, broker, names)
        slopes = [slope_mb_per_min([(t, m) for t, m in run if t >= WARM_UP_S])
                  for run in worker.runs]
        result.update({
            "minutes": args.minutes, "rate": args.rate, "kills": len(restarts),
            "ready_after_kill_s": restarts, "sse_clients": args.clients,
            "sse_events": load.events, "sse_reconnects": load.reconnects,
            "lookup_statuses": dict(load.statuses), "health_failures": load.health_failures,
            "rss_mb_per_run": [[round(m) for _, m in run[::12]] for run in worker.runs],
            "rss_slope_mb_per_min": [None if s is None else round(s, 2) for s in slopes],
        })
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        out = REPO / "bench" / "results" / f"soak-{stamp}.json"
        out.write_text(json.dumps(result, indent=2))
        say(json.dumps(result, indent=2))
        bad = (result["lost"] or result["doubled"] or result["buyers_wrong"]
               or result["buyer_totals_went_back"] or result["window_keys_with_two_values"]
               or any(s >= 500 and s != 503 for s in load.statuses))
        say(f"{'FAILED' if bad else 'passed'}; written to {out}")
        sys.exit(1 if bad else 0)
    finally:
        if datagen is not None and datagen.poll() is None:
            datagen.kill()
        if worker.process is not None and worker.process.poll() is None:
            worker.kill()
        stop_process(tansu, timeout_s=5)


if __name__ == "__main__":
    main()
