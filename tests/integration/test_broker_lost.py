"""The broker comes back empty while DATA_DIR still holds state: tansu restarted, or every
topic of the worker deleted on Apache Kafka (which stays up and keeps nothing of them)."""

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import UnknownError

from app.embedded import free_port, start_tansu, stop_process
from app.settings import TANSU_GROUP_TIMEOUTS_MS, Settings
from app.topics import ensure_topics, existing_topics, topic_names
from core.durations import format_duration_ms
from tests.integration.conftest import FAUST, metric, produce, run_sync, wait_for
from tests.integration.fresh import REPO

pytestmark = pytest.mark.integration


@pytest.fixture
def own_broker(tmp_path) -> Iterator[dict]:
    """A broker of this test's own, that the test can restart empty."""
    state = {"port": free_port()}
    state["process"] = start_tansu("127.0.0.1", state["port"], tmp_path / "tansu.log")
    yield state
    stop_process(state["process"], timeout_s=5)


def _restart_empty(own_broker: dict, tmp_path, down_s: float = 0) -> None:
    stop_process(own_broker["process"], timeout_s=5)
    time.sleep(down_s)
    own_broker["process"] = start_tansu("127.0.0.1", own_broker["port"], tmp_path / "tansu.log")


# tansu taken for an external broker is still tansu: the short group timeouts that suit it
# (EMBEDDED_BROKER's defaults), or a worker that died in the group holds it for Kafka's 45 s
# session and 60 s rebalance, and `faust -A app reset` waits that out to join it
TANSU_TIMEOUTS = dict(zip(
    ("KAFKA_SESSION_TIMEOUT", "KAFKA_HEARTBEAT_INTERVAL", "KAFKA_REBALANCE_TIMEOUT"),
    map(format_duration_ms, TANSU_GROUP_TIMEOUTS_MS), strict=True))


def _reset(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`faust -A app reset`, which must succeed; if it hangs, what it had done, and its
    log."""
    try:
        reset = subprocess.run([str(FAUST), "-A", "app", "reset"], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as hung:
        pytest.fail(f"reset hung after: {hung.stdout!r}\n{hung.stderr!r}")
    assert reset.returncode == 0, reset.stderr
    return reset


def external_tansu(env: dict[str, str]) -> dict[str, str]:
    """`env` for a worker that takes this test's tansu for an external broker."""
    return {**{k: v for k, v in env.items() if k != "EMBEDDED_BROKER"}, **TANSU_TIMEOUTS}


@dataclass(frozen=True)
class External:
    """A broker the worker takes for an external one (no EMBEDDED_BROKER), that the test
    can make lose every topic of the worker while it stays up or comes back at once."""

    kind: str  # "tansu" or "kafka"
    bootstrap: str
    env: dict[str, str]
    lose: Callable[..., None]  # `down_s`: how long tansu is down (Kafka never is)


@pytest.fixture
def external(on_broker, request, tmp_path) -> External:  # noqa: ANN001
    """On tansu, a broker of this test's own, restarted empty (it keeps nothing across a
    restart; a topic it deletes keeps its records, so deleting is no loss there). On
    Apache Kafka, the session's broker, which outlives the test: every topic of the
    worker deleted (Kafka keeps nothing of a deleted topic)."""
    kind = request.node.callspec.params["on_broker"]
    broker, env = on_broker
    env = {k: v for k, v in env.items() if k != "EMBEDDED_BROKER"}
    if kind == "kafka":
        return External(kind, broker, env, lambda down_s=0: _delete_topics(
            broker, _worker_topics(broker, env)))
    own_broker = request.getfixturevalue("own_broker")
    broker = f"127.0.0.1:{own_broker['port']}"
    return External(kind, broker, {**external_tansu(env), "KAFKA_BROKER": broker},
                    lambda down_s=0: _restart_empty(own_broker, tmp_path, down_s))


def _worker_topics(broker: str, env: dict[str, str]) -> list[str]:
    """Every topic of the worker of `env` the broker has: its named ones and any other
    under its APP_ID."""
    settings = Settings(_env_file=None, kafka_broker=broker, app_id=env["APP_ID"],
                        orders_topic=env["ORDERS_TOPIC"],
                        buyer_totals_topic=env["BUYER_TOTALS_TOPIC"],
                        window_results_topic=env["WINDOW_RESULTS_TOPIC"])
    named = set(vars(topic_names(settings)).values())
    return sorted(t for t in run_sync(existing_topics(settings))
                  if t in named or t.startswith(f"{env['APP_ID']}-"))


def _delete_topics(broker: str, topics: list[str]) -> None:
    """Delete `topics` and wait until the broker no longer lists them."""
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker, request_timeout_ms=10_000)
        await admin.start()
        try:
            await admin.delete_topics(topics)
            deadline = time.monotonic() + 30
            while set(topics) & set(await admin.list_topics()):  # Kafka deletes in the background
                assert time.monotonic() < deadline, f"{topics} still listed after 30 s"
                await asyncio.sleep(0.2)
        finally:
            await admin.close()
    run_sync(run())


def _order(number: int) -> tuple[bytes, bytes]:
    body = {"order_number": number, "price": "2.50", "order_time": 1_795_514_400_000,
            "buyer": {"first_name": "Ana", "last_name": "Ruiz"}}
    return str(number).encode(), json.dumps(body).encode()


def _run_some_orders(make_worker, env: dict, broker: str, count: int) -> None:
    worker = make_worker(env)
    worker.wait_ready()
    produce(broker, env["ORDERS_TOPIC"], [_order(n) for n in range(count)])
    wait_for(lambda: metric(worker, "orders_counted_total") == count, what="orders counted")
    worker.stop()


def test_embedded_broker_restarted_empty_starts_clean_with_one_warning(
        own_broker, worker_env, make_worker, tmp_path):
    broker = f"127.0.0.1:{own_broker['port']}"
    env = {**worker_env, "KAFKA_BROKER": broker, "EMBEDDED_BROKER": "1"}
    _run_some_orders(make_worker, env, broker, 5)
    _restart_empty(own_broker, tmp_path)

    worker = make_worker(env, "after-restart")
    worker.wait_ready()
    produce(broker, env["ORDERS_TOPIC"], [_order(n) for n in range(100, 103)])
    wait_for(lambda: metric(worker, "orders_counted_total") == 3, what="new orders counted")
    assert worker.get("/buyers/Ana/Ruiz").json()["count"] == 3  # the old 5 are gone with the broker
    log = worker.log()
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, warnings
    assert "has lost" in warnings[0] and "starting clean" in warnings[0]
    assert "ConsistencyError" not in log and "Traceback" not in log


def test_external_broker_missing_changelog_stops_and_names_it(external, make_worker):
    broker, env = external.bootstrap, external.env
    _run_some_orders(make_worker, env, broker, 2)
    external.lose()

    worker = make_worker(env, "refused")
    assert worker.process.wait(timeout=60) == 1
    errors = [line for line in worker.log().splitlines() if "ERROR" in line]
    assert len(errors) == 1
    app_id, orders = env["APP_ID"], env["ORDERS_TOPIC"]
    assert f"the broker at {broker} lacks records the state in" in errors[0]
    # every topic the state held a position in; 2 orders reach 1 or 2 of the 4 partitions
    for topic in (f"{app_id}-aggregate-changelog[", f"{app_id}-dedup-changelog[",
                  f"{app_id}-orders-by-buyer[", f"{orders}["):
        assert topic in errors[0], topic
    assert "refusing to start" in errors[0] and "`faust -A app reset`" in errors[0]
    assert "Traceback" not in worker.log()


def test_an_unusable_data_dir_is_one_clear_line_at_start(worker_env, make_worker, tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where DATA_DIR should be")
    worker = make_worker({**worker_env, "DATA_DIR": str(blocker)}, "unusable")
    assert worker.process.wait(timeout=60) == 1
    log = worker.log()
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and f"DATA_DIR {blocker} is not writable" in errors[0]
    assert "Traceback" not in log


def test_state_built_on_the_embedded_broker_is_discarded_on_another_broker(
        own_broker, worker_env, make_worker, tmp_path):
    broker = f"127.0.0.1:{own_broker['port']}"
    env = {**worker_env, "KAFKA_BROKER": broker, "EMBEDDED_BROKER": "1"}
    _run_some_orders(make_worker, env, broker, 2)
    _restart_empty(own_broker, tmp_path)  # as if KAFKA_BROKER now named another broker
    worker = make_worker(external_tansu(env), "external")
    worker.wait_ready()
    warnings = [line for line in worker.log().splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "built on the embedded broker" in warnings[0]


class ReadyWatch:
    """Polls /ready (and a data route) every 50 ms in a thread, keeping what it saw."""

    def __init__(self, worker) -> None:  # noqa: ANN001
        self.worker, self.seen, self._stop = worker, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ready = httpx.get(f"{self.worker.url}/ready", timeout=1)
                data = httpx.get(f"{self.worker.url}/buyers", timeout=1)
                self.seen.append((ready.status_code, ready.json(), data.status_code))
            except httpx.HTTPError as error:
                self.seen.append(type(error).__name__)
            time.sleep(0.05)

    def stop(self) -> list:
        self._stop.set()
        self._thread.join(5)
        return self.seen


def _create_orders_topic(broker: str, topic: str) -> None:
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=broker, request_timeout_ms=10_000)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 4, 1)])
        finally:
            await admin.close()
    run_sync(run())


def _refill_orders(broker: str, env: dict) -> None:
    """The orders topic created again and 100 new orders sent to it at once."""
    _create_orders_topic(broker, env["ORDERS_TOPIC"])
    produce(broker, env["ORDERS_TOPIC"], [_order(n) for n in range(1000, 1100)])


def _restart_empty_with_orders(own_broker: dict, tmp_path, env: dict, down_s: float) -> None:
    """The broker killed, down for `down_s`, back empty; 100 new orders sent at once."""
    _restart_empty(own_broker, tmp_path, down_s)
    _refill_orders(f"127.0.0.1:{own_broker['port']}", env)


def test_an_external_broker_back_empty_at_run_time_stops_the_worker_and_reset_recovers(
        external, make_worker):
    broker, env = external.bootstrap, {**external.env, "PRINT_SINK": "0"}
    worker = make_worker(env)
    worker.wait_ready()
    produce(broker, env["ORDERS_TOPIC"], [_order(n) for n in range(50)])
    wait_for(lambda: metric(worker, "orders_counted_total") == 50, what="orders counted")
    watch = ReadyWatch(worker)
    external.lose(down_s=8)  # tansu down for 8 s, back empty; Apache Kafka stays up
    _refill_orders(broker, env)

    assert worker.process.wait(timeout=60) == 1, worker.log()[-3000:]
    seen = [s for s in watch.stop() if isinstance(s, tuple)]  # not the refused connections
    before = next((i for i, s in enumerate(seen) if s[0] == 503), None)  # outage noticed
    assert before is not None, watch.seen
    assert all(s[0] == 200 for s in seen[:before])
    after = seen[before:]
    # once the outage is noticed, never ready again and no data route answers from stale
    # state: silent broker (tansu only), then a rebalance, then what it lost
    assert [s for s in after if s[0] != 503 or s[2] != 503] == []
    assert {s[1]["status"] for s in after} <= {"broker-lost", "rebalancing", "restoring"}
    if external.kind == "tansu":
        # first "checking" (a sign of trouble) or at once "has not answered" (silent 6 s)
        assert ("has not answered" in after[0][1]["reason"]
                or "checking" in after[0][1]["reason"])
        assert any("has not answered" in s[1]["reason"] for s in after)
    else:
        # Apache Kafka never stops answering: first a sign of trouble (the client finds
        # the topics gone), a rebalance (the group's topics changed) or the loss itself
        first = after[0][1]
        assert (first["status"] == "rebalancing" or "checking" in first.get("reason", "")
                or "lost:" in first.get("reason", "")), first
    assert after[-1][1]["status"] == "broker-lost" and "lost:" in after[-1][1]["reason"]
    log = worker.log()
    errors = [line for line in log.splitlines() if "ERROR" in line]
    assert len(errors) == 1, errors
    app_id = env["APP_ID"]
    assert f"the broker at {broker} lacks records the state in" in errors[0]
    assert "stopping" in errors[0] and "`faust -A app reset`" in errors[0]
    # the full check after the first sign names every internal topic (on tansu the orders
    # topic, refilled past the old offsets by the 100 new orders, passes an offset check;
    # on Apache Kafka its new topic id tells it was lost)
    for topic in (f"{app_id}-dedup-changelog[", f"{app_id}-aggregate-changelog[",
                  f"{app_id}-orders-by-buyer[", f"{app_id}-orders-by-number["):
        assert topic in errors[0], topic
    if external.kind == "kafka":
        assert f"{env['ORDERS_TOPIC']}[" in errors[0]
    assert "Traceback" not in log

    # the refusal at the next start names the same command, and the command works; the
    # 100 orders sent to the empty broker count, each once; the old 50 are gone with it
    _refused_then_reset(make_worker, env, f"{app_id}-dedup-changelog[", 100)


def _refused_then_reset(make_worker, env: dict, named: str, orders: int) -> None:
    """The next start is refused in one ERROR line naming `named` and the reset command;
    after `faust -A app reset` a worker counts the broker's `orders` (Ana Ruiz's, 2.50
    each), each once."""
    refused = make_worker(env, "refused")
    assert refused.process.wait(timeout=60) == 1
    [line] = [li for li in refused.log().splitlines() if "ERROR" in li]
    assert named in line and "`faust -A app reset`" in line, line
    _reset(env)
    again = make_worker(env, "again")
    again.wait_ready()
    wait_for(lambda: metric(again, "orders_counted_total") == orders, what="the new orders")
    assert again.get("/buyers/Ana/Ruiz").json() == {
        "buyer": {"first_name": "Ana", "last_name": "Ruiz"}, "count": orders,
        "total_price": f"{Decimal('2.50') * orders:.2f}"}


def test_the_embedded_broker_back_empty_at_run_time_restarts_the_worker_clean(
        own_broker, worker_env, make_worker, tmp_path):
    broker = f"127.0.0.1:{own_broker['port']}"
    env = {**worker_env, "KAFKA_BROKER": broker, "EMBEDDED_BROKER": "1", "PRINT_SINK": "0"}
    worker = make_worker(env)
    worker.wait_ready()
    produce(broker, env["ORDERS_TOPIC"], [_order(n) for n in range(50)])
    wait_for(lambda: metric(worker, "orders_counted_total") == 50, what="orders counted")
    _restart_empty_with_orders(own_broker, tmp_path, env, down_s=1)

    # the same process (exec), clean: the 100 new orders count, each once
    wait_for(lambda: "starting clean" in worker.log(), what="the restart")
    worker.wait_ready()
    wait_for(lambda: metric(worker, "orders_counted_total") == 100, what="new orders counted")
    # nothing of the old state leaked into the clean start: the old numbers count anew
    produce(broker, env["ORDERS_TOPIC"], [_order(n) for n in range(50)])
    wait_for(lambda: metric(worker, "orders_counted_total") == 150, what="old numbers again")
    assert worker.get("/buyers/Ana/Ruiz").json() == {
        "buyer": {"first_name": "Ana", "last_name": "Ruiz"}, "count": 150,
        "total_price": "375.00"}
    assert metric(worker, "orders_duplicate_total") == 0
    assert worker.process.poll() is None
    log = worker.log()
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "restarted empty" in warnings[0], warnings
    assert "ERROR" not in log and "Traceback" not in log


def test_sigterm_while_the_broker_is_down_stops_the_worker_within_10_s(
        own_broker, worker_env, make_worker):
    """tansu only: the test stops the broker, and the Apache Kafka node is the session's,
    shared by every test."""
    broker = f"127.0.0.1:{own_broker['port']}"
    env = {**external_tansu(worker_env), "KAFKA_BROKER": broker}
    worker = make_worker(env)
    worker.wait_ready()
    produce(broker, env["ORDERS_TOPIC"], [_order(n) for n in range(20)])
    wait_for(lambda: metric(worker, "orders_counted_total") == 20, what="orders counted")
    stop_process(own_broker["process"], timeout_s=5)
    wait_for(lambda: worker.get("/ready").status_code == 503, what="the outage noticed")
    assert worker.get("/ready").json()["status"] == "broker-lost"
    wait_for(lambda: "has not answered" in worker.get("/ready").json()["reason"],
             what="the outage named")

    os.killpg(worker.process.pid, signal.SIGTERM)
    started = time.monotonic()
    worker.process.wait(timeout=30)
    assert time.monotonic() - started < 10
    # at most the stop limit's one WARNING: faust's consumer thread, cancelled while
    # stopping, is one INFO line, not a traceback written to stderr (a WARNING a line)
    log = worker.log()
    warnings = [line for line in log.splitlines() if "WARNING" in line]
    assert len(warnings) <= 1 and all("stopping took over 6 s" in w for w in warnings), warnings
    assert "Traceback" not in log


def _state_in_changelog(broker: str, topic: str) -> dict[int, dict[str, str]]:
    """What a restore from an empty store would hold, per partition: the changelog's
    records folded in order (a record per store key, a null value deletes it), each batch
    once its commit marker is read; keys starting with `~` (marker, fence) are no state."""
    async def run() -> dict[int, dict[str, str]]:
        reader = AIOKafkaConsumer(bootstrap_servers=broker, group_id=None,
                                  enable_auto_commit=False, auto_offset_reset="earliest")
        await reader.start()
        try:
            tps = [TopicPartition(topic, p) for p in sorted(await _partitions(reader, topic))]
            reader.assign(tps)
            await reader.seek_to_beginning(*tps)
            state: dict[int, dict[str, str]] = {tp.partition: {} for tp in tps}
            pending: dict[int, dict[str, str | None]] = {tp.partition: {} for tp in tps}
            quiet = 0
            while quiet < 3:  # three empty fetches in a row: the end (tansu's ListOffsets lags)
                fetched = await reader.getmany(timeout_ms=300)
                quiet = 0 if fetched else quiet + 1
                for tp, records in fetched.items():
                    for record in records:
                        if record.key == b"~commit":
                            for key, value in pending[tp.partition].items():
                                if value is None:
                                    state[tp.partition].pop(key, None)
                                else:
                                    state[tp.partition][key] = value
                            pending[tp.partition].clear()
                        elif not record.key.startswith(b"~"):
                            pending[tp.partition][record.key.decode()] = (
                                None if record.value is None else record.value.decode())
            return state
        finally:
            await reader.stop()
    return run_sync(run())


async def _partitions(reader: AIOKafkaConsumer, topic: str) -> set[int]:
    await reader._client.force_metadata_update()  # noqa: SLF001
    return reader.partitions_for_topic(topic) or set()


def _reset_with_records_in_every_internal_topic(make_worker, env: dict, broker: str) -> None:
    """30 orders counted, the worker stopped, `faust -A app reset`: the changelogs fold to
    nothing, nothing is deleted, and a worker started after it counts the 30 again from
    the orders topic, once each, and takes new ones."""
    _run_some_orders(make_worker, env, broker, 30)
    changelogs = [f"{env['APP_ID']}-dedup-changelog", f"{env['APP_ID']}-aggregate-changelog"]
    assert all(any(_state_in_changelog(broker, t).values()) for t in changelogs)

    reset = _reset(env)
    assert "deleted" not in reset.stdout.replace("keys deleted", "")  # no topic deleted
    for topic in changelogs:
        assert f"emptied {topic}: " in reset.stdout
        assert _state_in_changelog(broker, topic) == {p: {} for p in range(4)}

    worker = make_worker(env, "after-reset")
    worker.wait_ready()
    wait_for(lambda: metric(worker, "orders_counted_total") == 30, what="the 30 again")
    produce(broker, env["ORDERS_TOPIC"], [_order(n) for n in range(30, 35)])
    wait_for(lambda: metric(worker, "orders_counted_total") == 35, what="5 new orders")
    assert worker.get("/buyers/Ana/Ruiz").json() == {
        "buyer": {"first_name": "Ana", "last_name": "Ruiz"}, "count": 35,
        "total_price": "87.50"}
    assert metric(worker, "orders_duplicate_total") == 0
    log = worker.log()
    assert "ERROR" not in log and "Traceback" not in log, log[-3000:]


def test_reset_with_records_in_the_internal_topics_on_tansu(
        own_broker, worker_env, make_worker):
    """tansu keeps a deleted topic's records and refuses new ones at their offsets
    (UnknownError): a reset that deleted and recreated the topics broke them for good."""
    broker = f"127.0.0.1:{own_broker['port']}"
    env = {**external_tansu(worker_env), "KAFKA_BROKER": broker, "PRINT_SINK": "0"}
    _reset_with_records_in_every_internal_topic(make_worker, env, broker)


@pytest.mark.kafka
def test_reset_with_records_in_the_internal_topics_on_kafka(kafka_worker_env, kafka_broker,
                                                           make_worker):
    env = {**kafka_worker_env, "PRINT_SINK": "0"}
    _reset_with_records_in_every_internal_topic(make_worker, env, kafka_broker)


def _recreate_topic(broker: str, topic: str) -> None:
    """Delete `topic` and create it again under its name, with 4 partitions."""
    _delete_topics(broker, [topic])
    _create_orders_topic(broker, topic)


@pytest.mark.kafka
def test_a_topic_recreated_and_refilled_past_the_state_is_a_loss_at_run_time_and_at_start(
        kafka_worker_env, kafka_broker, make_worker):
    """Offsets cannot tell a topic deleted, created again and refilled past every offset
    the state applied; its new topic id does, while the worker runs and at its next start.
    Nothing of the new topic is skipped as already applied. Apache Kafka only: tansu keeps
    a deleted topic's records and refuses the new topic's at their offsets (see the reset
    tests), so there a topic cannot be created again and refilled."""
    env = {**kafka_worker_env, "PRINT_SINK": "0"}
    topic = env["ORDERS_TOPIC"]
    worker = make_worker(env)
    worker.wait_ready()
    produce(kafka_broker, topic, [_order(n) for n in range(40)])
    wait_for(lambda: metric(worker, "orders_counted_total") == 40, what="orders counted")
    time.sleep(3)  # a broker check (every 2 s) has seen the topic ids

    _recreate_topic(kafka_broker, topic)
    # 400 orders: every partition ends far past the ~10 offsets the state applied in it
    produce(kafka_broker, topic, [_order(n) for n in range(1000, 1400)])

    assert worker.process.wait(timeout=60) == 1, worker.log()[-3000:]
    # noticed while the topic was gone (no such partition) or once it was back (a new
    # id): every partition of it is named either way
    errors = [line for line in worker.log().splitlines() if "ERROR" in line]
    assert any(f"lost: {topic}[0,1,2,3])" in line for line in errors), errors

    # only the id tells at the next start: the new topic ends past every offset the state
    # applied. The 400 orders of the new topic count; the old 40 went with the old topic.
    _refused_then_reset(make_worker, env, f"{topic} was deleted and created again (its "
                        f"topic id changed) (lost: {topic}[0,1,2,3])", 400)


def test_a_topic_created_where_tansu_held_records_sent_before_it_existed_takes_new_ones(
        own_broker, worker_env, tmp_path):
    """A producer holding a topic's metadata from before tansu restarted empty sends two
    records to it; tansu keeps them though it lists no such topic. The topics the worker
    then creates take records from offset 0 (tansu refused them for good, UnknownError,
    before `ensure_topics` deleted and created such a topic again)."""
    broker = f"127.0.0.1:{own_broker['port']}"
    settings = Settings(kafka_broker=broker, app_id=worker_env["APP_ID"],
                        orders_topic=worker_env["ORDERS_TOPIC"])
    rekey = topic_names(settings).rekey

    async def orphans() -> list[int] | None:
        producer = AIOKafkaProducer(bootstrap_servers=broker, request_timeout_ms=10_000)
        await producer.start()
        try:
            await producer.send_and_wait(rekey, b"before", partition=1)
            _restart_empty(own_broker, tmp_path)
            return [(await producer.send_and_wait(rekey, value, partition=1)).offset
                    for value in (b"orphan-1", b"orphan-2")]
        except UnknownError:  # tansu now and then refuses them instead: set up anew
            return None
        finally:
            await producer.stop()

    for _ in range(3):
        run_sync(ensure_topics(settings))
        if (taken := run_sync(orphans())) is not None:
            break
        _restart_empty(own_broker, tmp_path)
    assert taken == [0, 1]  # taken, for a topic the broker does not list
    assert rekey not in run_sync(existing_topics(settings))
    counts = run_sync(ensure_topics(settings))
    assert counts[rekey] == 4

    async def fresh() -> tuple[list[int], list[bytes]]:
        producer = AIOKafkaProducer(bootstrap_servers=broker, request_timeout_ms=10_000)
        await producer.start()
        try:
            offsets = [(await producer.send_and_wait(rekey, value, partition=1)).offset
                       for value in (b"new-1", b"new-2")]
        finally:
            await producer.stop()
        reader = AIOKafkaConsumer(bootstrap_servers=broker, enable_auto_commit=False)
        await reader.start()
        try:
            tp = TopicPartition(rekey, 1)
            reader.assign([tp])
            reader.seek(tp, 0)
            got = await reader.getmany(tp, timeout_ms=5_000)
            return offsets, [m.value for m in got.get(tp, [])]
        finally:
            await reader.stop()

    assert run_sync(fresh()) == ([0, 1], [b"new-1", b"new-2"])
