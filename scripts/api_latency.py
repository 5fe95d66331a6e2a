"""Query latency with several workers under ingest, and takeover time after kill -9.

    .venv/bin/python scripts/api_latency.py [--workers 3] [--requests 300] [--rate 2000]

Starts its own broker, WORKERS workers of one group and the datagen at RATE orders/s, then
times, on a worker: a buyer it owns (local key), a buyer another worker owns (forwarded
key) and /buyers?limit=100 (gathered from every worker). Then kills one worker with
SIGKILL and times until another answers /buyers again with every buyer. Prints p50/p99 ms.
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from app.embedded import free_port, start_tansu, stop_process  # noqa: E402
from core.shuffle import buyer_partition  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FAUST = Path(sys.executable).parent / "faust"


def start_worker(env: dict[str, str], workdir: Path, index: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(workdir / f"worker{index}.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [str(FAUST), "-A", "app", "worker", "-l", "warn"], cwd=REPO, stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True,
        env={**env, "API_PORT": str(port), "DATA_DIR": str(workdir / f"data{index}")})
    return process, f"http://127.0.0.1:{port}"


def settled(url: str, count: int) -> bool:
    try:
        found = httpx.get(f"{url}/instances", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return False
    return (isinstance(found, list) and len(found) == count
            and all(i["status"] == "ready" for i in found))


def wait(check, timeout_s: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.2)


def timed(client: httpx.Client, url: str, params: dict, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        answer = client.get(url, params=params)
        samples.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200, answer.text
    return samples


def report(name: str, samples: list[float]) -> None:
    q = statistics.quantiles(samples, n=100)
    print(f"{name:<34} p50 {q[49]:7.2f} ms   p99 {q[98]:7.2f} ms   ({len(samples)} requests)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rate", type=float, default=2000)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="latency-"))
    port = free_port()
    broker = start_tansu("127.0.0.1", port, workdir / "tansu.log")
    env = {**os.environ, "KAFKA_BROKER": f"127.0.0.1:{port}", "EMBEDDED_BROKER": "1",
           "PRINT_SINK": "0", "DATAGEN_RPS": "0"}
    workers, datagen = [], None
    try:
        for index in range(args.workers):
            workers.append(start_worker(env, workdir, index))
            time.sleep(2)
        wait(lambda: settled(workers[0][1], args.workers), 120, "workers settled")
        datagen = subprocess.Popen(
            [str(FAUST), "-A", "app", "datagen", "--rows-per-second", str(args.rate),
             "--number-of-rows", "0", "--seed", "1"], cwd=REPO, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        url = workers[0][1]
        wait(lambda: httpx.get(f"{url}/buyers", timeout=5).json()["total"] >= 20, 120, "data")
        measure(url, args.requests)
        takeover(workers, url, args.workers)
    finally:
        if datagen is not None:
            stop_process(datagen, 5)
        for process, _ in workers:
            stop_process(process, 10)
        stop_process(broker, 5)


def measure(url: str, n: int) -> None:
    buyers = [(i["buyer"]["first_name"], i["buyer"]["last_name"])
              for i in httpx.get(f"{url}/buyers", params={"limit": 100}, timeout=5).json()["items"]]
    mine = {i["url"]: set(i["partitions"]) for i in httpx.get(f"{url}/instances").json()}[url]
    local = next(b for b in buyers if buyer_partition(*b, 4) in mine)
    remote = next(b for b in buyers if buyer_partition(*b, 4) not in mine)
    with httpx.Client(base_url=url, timeout=10) as client:
        def key(b: tuple[str, str]) -> dict:
            return {"first_name": b[0], "last_name": b[1]}
        report("local key  /buyer", timed(client, "/buyer", key(local), n))
        report("forwarded key  /buyer", timed(client, "/buyer", key(remote), n))
        report("scatter-gather  /buyers?limit=100", timed(client, "/buyers", {"limit": 100}, n))


def takeover(workers: list, url: str, count: int) -> None:  # noqa: ANN001
    victim = workers[-1][0]
    started = time.monotonic()
    os.killpg(victim.pid, signal.SIGKILL)
    statuses: dict[int, int] = {}

    def answered() -> bool:
        try:
            code = httpx.get(f"{url}/buyers", params={"limit": 1}, timeout=5).status_code
        except httpx.HTTPError:
            code = 0
        statuses[code] = statuses.get(code, 0) + 1
        return code == 200 and settled(url, count - 1)
    wait(answered, 120, "takeover")
    print(f"takeover after kill -9: {time.monotonic() - started:.1f} s "
          f"(answers meanwhile: {dict(sorted(statuses.items()))})")


if __name__ == "__main__":
    main()
