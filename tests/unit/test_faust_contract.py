"""The private and undocumented parts of faust-streaming, mode and aiokafka that orderstream
relies on, checked against the installed (pinned) versions.

app/faust/ overrides faust's consumer internals (transport.py), reaches into its ack
bookkeeping (transport.release, used by batches.py), and the rest of app/ reads faust's
assignor and group generation and poses as its group protocol (reset_cli.TakeAll). None
of that is public API: an upgrade may rename, reorder or stop calling any of it without
notice. Each check names what relies on it, so an upgrade that breaks one fails here
with the reason, not in a rebalance under load.
"""

import ast
import dataclasses
import inspect
import re
import textwrap
import tomllib
from collections.abc import Callable, MutableMapping, MutableSet
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiokafka
import faust
import pytest
from aiokafka.consumer.group_coordinator import CoordinatorGroupRebalance, GroupCoordinator
from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.coordinator.protocol import (
    ConsumerProtocolMemberAssignment,
    ConsumerProtocolMemberMetadata,
)
from aiokafka.structs import ConsumerRecord
from faust import streams
from faust.assignor import PartitionAssignor
from faust.exceptions import AlreadyConfiguredWarning
from faust.transport import consumer as faust_consumer
from faust.transport import drivers
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, ConsumerMessage, Message
from packaging.requirements import Requirement

from app.faust import transport
from app.reset_cli import TakeAll
from tests.unit.offline_faust import fake_thread, offline_app

ROOT = Path(__file__).resolve().parents[2]
PINNED = {Requirement(text).name: Requirement(text) for text in tomllib.loads(
    (ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
TOPIC = TP("orders", 0)


def parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def uses(function: Callable[..., Any], attribute: str) -> bool:
    """Whether `function`'s source reads or calls `<something>.<attribute>`."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return any(isinstance(node, ast.Attribute) and node.attr == attribute
               for node in ast.walk(tree))


# -- the pins -------------------------------------------------------------------------


def test_faust_is_pinned_exactly_and_the_installed_versions_are_the_pinned_ones():
    faust_pin = PINNED["faust-streaming"]
    assert [spec.operator for spec in faust_pin.specifier] == ["=="], (
        "pyproject.toml must pin faust-streaming exactly: app/faust/ relies on its private "
        "consumer internals, checked here against that one version")
    for name in ("faust-streaming", "aiokafka", "mode-streaming"):
        installed = version(name)
        assert PINNED[name].specifier.contains(installed), (
            f"{name} {installed} is installed but pyproject.toml asks for {PINNED[name]}: "
            "this contract is checked against what is installed")


# -- the transport's registration -----------------------------------------------------


def test_the_orderstream_scheme_selects_the_transport_through_faust_registry():
    transport.register()
    assert isinstance(drivers.TRANSPORTS.aliases, MutableMapping), (
        "transport.register() adds the orderstream:// scheme to "
        "faust.transport.drivers.TRANSPORTS.aliases")
    assert drivers.TRANSPORTS.aliases[transport.SCHEME] == "app.faust.transport:Transport", (
        "TRANSPORTS.aliases maps a scheme to a 'module:attribute' path")
    assert drivers.by_url(f"{transport.SCHEME}://127.0.0.1:9092") is transport.Transport, (
        "faust must resolve a broker URL's scheme through TRANSPORTS.aliases: app.main's "
        "orderstream:// broker URLs select app.faust.transport that way")
    with offline_app() as (app, _):
        assert type(app.transport) is transport.Transport, (
            "an app whose broker URL is orderstream:// must get app.faust.transport's "
            "Transport")
        assert type(app.consumer) is transport.Consumer, (
            "faust's aiokafka Transport must build its consumer from the `Consumer` class "
            "attribute, which app.faust.transport.Transport overrides")
        assert type(app.consumer._thread) is transport.ConsumerThread, (
            "faust's ThreadDelegateConsumer must build its thread with "
            "_new_consumer_thread(), which app.faust.transport.Consumer overrides")


# -- the overridden consumer methods --------------------------------------------------

# (faust class, method, faust's parameters, async, what relies on it)
OVERRIDES = [
    (faust_aiokafka.Consumer, "_getmany", ["self", "active_partitions", "timeout"], True,
     "transport.Consumer._getmany cuts fetches into batches; faust calls it by keyword"),
    (faust_aiokafka.Consumer, "_to_message", ["self", "tp", "record"], False,
     "transport.Consumer._to_message turns a FetchBatch into one ConsumerMessage"),
    (faust_aiokafka.Consumer, "_add_gap", ["self", "tp", "offset_from", "offset_to"], True,
     "transport.Consumer._add_gap skips the gaps a batch's last offset seems to leave"),
    (faust_aiokafka.Consumer, "_new_offset", ["self", "tp"], False,
     "transport.Consumer._new_offset expands each acked batch into its offsets"),
    (faust_aiokafka.Consumer, "_new_consumer_thread", ["self"], False,
     "transport.Consumer._new_consumer_thread builds the read_committed ConsumerThread"),
    (faust_aiokafka.Consumer, "on_partitions_revoked", ["self", "revoked"], True,
     "transport.Consumer.on_partitions_revoked drops waiting batches and revoked spans"),
    (faust_aiokafka.Consumer, "on_partitions_assigned",
     ["self", "assigned", "generation_id"], True,
     "transport.Consumer.on_partitions_assigned drops waiting batches"),
    (faust_aiokafka.Consumer, "seek", ["self", "partition", "offset"], True,
     "transport.Consumer.seek drops the partition's waiting batches"),
    (faust_aiokafka.Consumer, "seek_wait", ["self", "partitions"], True,
     "transport.Consumer.seek_wait drops the partitions' waiting batches"),
    (faust_aiokafka.Consumer, "seek_to_committed", ["self"], True,
     "transport.Consumer.seek_to_committed drops every waiting batch"),
    (faust_aiokafka.AIOKafkaConsumerThread, "_create_worker_consumer", ["self", "transport"],
     False, "transport.ConsumerThread._create_worker_consumer sets read_committed"),
]
OURS = {faust_aiokafka.Consumer: transport.Consumer,
        faust_aiokafka.AIOKafkaConsumerThread: transport.ConsumerThread}


@pytest.mark.parametrize(("base", "name", "expected", "is_async", "relied_on_by"), OVERRIDES,
                         ids=[f"{base.__name__}.{name}" for base, name, *_ in OVERRIDES])
def test_each_overridden_method_keeps_faust_signature(base, name, expected, is_async,
                                                      relied_on_by):
    theirs, ours = getattr(base, name), getattr(OURS[base], name)
    assert parameters(theirs) == expected, (
        f"faust's {base.__name__}.{name} now takes {parameters(theirs)}: {relied_on_by}")
    assert inspect.iscoroutinefunction(theirs) is is_async, (
        f"faust's {base.__name__}.{name} changed between sync and async: {relied_on_by}")
    assert parameters(ours) == expected, f"{relied_on_by}, with faust's parameters"
    assert inspect.iscoroutinefunction(ours) is is_async, relied_on_by


def test_every_method_the_transport_overrides_is_in_this_contract():
    listed = {(base, name) for base, name, *_ in OVERRIDES}
    for base, ours in OURS.items():
        overridden = {name for name, value in vars(ours).items()
                      if callable(value) and name != "__init__" and hasattr(base, name)}
        assert overridden == {name for b, name in listed if b is base}, (
            f"app.faust.transport.{ours.__name__} overrides {sorted(overridden)}: each "
            "needs its entry in OVERRIDES")


# (faust function, what it must still use, what relies on that)
HOOKS = [
    (faust_consumer.Consumer._wait_next_records, "_getmany",
     "faust's fetch loop must fetch through _getmany, where batches are cut"),
    (faust_consumer.Consumer.getmany, "_to_message",
     "faust's getmany must turn each fetched item into a message with _to_message"),
    (faust_consumer.Consumer._drain_messages, "_add_gap",
     "faust records read-offset gaps with _add_gap, skipped for batch topics"),
    (faust_consumer.Consumer._filter_committable_offsets, "_new_offset",
     "faust must find the offset to commit with _new_offset, which expands batches"),
    (faust_consumer.ThreadDelegateConsumer.__init__, "_new_consumer_thread",
     "faust must build the consumer thread with _new_consumer_thread"),
    (faust_aiokafka.AIOKafkaConsumerThread._create_consumer, "_create_worker_consumer",
     "a worker's aiokafka consumer must come from _create_worker_consumer"),
    (faust_consumer.Consumer.perform_seek, "seek_to_committed",
     "the seek after an assignment must go through seek_to_committed, which drops "
     "waiting batches"),
    (faust_consumer.Consumer.wait_empty, "_unacked_messages",
     "a rebalance or a stop waits while _unacked_messages holds a message: "
     "transport.release takes a batch out of it"),
    (faust_consumer.Consumer._wait_for_ack, "_waiting_for_ack",
     "that wait sleeps on the _waiting_for_ack future: transport.release wakes it"),
    (aiokafka.AIOKafkaConsumer.start, "_isolation_level",
     "aiokafka's consumer must read _isolation_level when it starts: "
     "transport.ConsumerThread sets it between creation and start"),
]


@pytest.mark.parametrize(("function", "attribute", "relied_on_by"), HOOKS,
                         ids=[f"{f.__qualname__}-{a}" for f, a, _ in HOOKS])
def test_faust_still_reaches_what_the_transport_hooks_into(function, attribute, relied_on_by):
    assert uses(function, attribute), (
        f"{function.__module__}.{function.__qualname__} no longer uses {attribute}: "
        f"{relied_on_by}")


# -- the consumer's bookkeeping -------------------------------------------------------


def test_the_bookkeeping_the_transport_reads_and_writes_is_on_faust_consumer():
    with offline_app() as (app, _):
        consumer = app.consumer
        assert consumer._acked[TOPIC] == [], (
            "transport.Consumer._new_offset rewrites _acked[tp], a list per partition, in "
            "place")
        assert consumer._committed_offset[TOPIC] is None, (
            "transport.Consumer._new_offset reads _committed_offset[tp] (None: unknown)")
        assert consumer._read_offset[TOPIC] is None, (
            "transport.Consumer._cut starts the first batch after a seek from "
            "_read_offset[tp] (None: unknown)")
        assert isinstance(consumer._unacked_messages, MutableSet), (
            "transport.release discards a batch's message from _unacked_messages")
        assert consumer.unacked is consumer._unacked_messages, (
            "_unacked_messages is the set faust waits on (Consumer.unacked): "
            "transport.release empties it of a released batch")
        assert consumer._waiting_for_ack is None, (
            "transport.release wakes _waiting_for_ack (None, or a future while a "
            "rebalance or stop waits)")
        assert "acked" in Message.__slots__, "transport.release sets message.acked"


def test_an_ack_records_the_offset_once_and_never_for_a_message_already_marked_acked():
    with offline_app() as (app, loop):
        topic = app.topic("orders")
        app.topics.add(topic)
        loop.run_until_complete(app.topics._update_indices())
        consumer = app.consumer
        fresh = ConsumerMessage("orders", 0, 12, 0.0, 0, [], None, None, None, tp=TOPIC)
        consumer.track_message(fresh)
        assert fresh.ack(consumer) is True, (
            "Message.ack(consumer) is what stream.ack ends in (batches.each_batch)")
        assert (fresh.acked, consumer._acked[TOPIC], fresh in consumer.unacked) == (
            True, [12], False), (
            "faust's ack must append the message's offset to _acked[tp] and drop it from "
            "_unacked_messages: transport.Consumer._new_offset expands those offsets")
        released = ConsumerMessage("orders", 0, 15, 0.0, 0, [], None, None, None, tp=TOPIC)
        released.acked = True
        assert consumer.ack(released) is False, (
            "faust's ack must refuse a message whose `acked` transport.release set")
        assert consumer._acked[TOPIC] == [12], (
            "faust's ack must record nothing for a message whose `acked` is set: "
            "transport.release sets it so that a late ack cannot commit a released batch")


def test_faust_commits_up_to_the_first_run_of_acked_offsets():
    base_new_offset = faust_aiokafka.Consumer._new_offset  # faust's own, not the override
    with offline_app() as (app, _):
        consumer = app.consumer
        consumer._acked[TOPIC] = [3, 4, 5, 7]
        assert base_new_offset(consumer, TOPIC) == 6, (
            "faust's _new_offset must commit past the first run of consecutive acked "
            "offsets: transport.Consumer._new_offset hands it every offset of each batch")
        assert consumer._acked[TOPIC] == [7], (
            "faust's _new_offset must drop the run it commits from _acked[tp]: "
            "transport.Consumer._new_offset keeps what is left for the next commit")
        consumer._committed_offset[TOPIC] = 5
        assert base_new_offset(consumer, TOPIC) is None, (
            "faust's _new_offset must commit nothing while offsets right after the "
            "committed one are unacked: a batch acked before the one before it waits")


def test_a_seek_sets_the_read_offset_the_first_batch_after_it_starts_from():
    with offline_app() as (app, loop):
        consumer = app.consumer
        thread = fake_thread(consumer)
        loop.run_until_complete(consumer.seek(TOPIC, 40))
        assert consumer._read_offset[TOPIC] == 40, (
            "faust's seek must set _read_offset[tp]: transport.Consumer._cut starts the "
            "first batch after a seek from it")
        loop.run_until_complete(consumer.seek(TOPIC, 0))
        assert consumer._read_offset[TOPIC] is None, "faust's seek to 0 leaves it unknown"
        thread.committed = {TOPIC: 25}
        loop.run_until_complete(consumer.perform_seek())
        assert (consumer._read_offset[TOPIC], consumer._committed_offset[TOPIC]) == (25, 25), (
            "after an assignment faust must set both the read and committed offsets to the "
            "committed one: the first batch and its commit start there")
        assert thread.seeks == [(TOPIC, 40), (TOPIC, 0)], (
            "faust's seek must reach the consumer thread (the real position)")


# -- faust's message and aiokafka's record --------------------------------------------


def test_consumer_message_takes_its_fields_in_the_order_the_transport_passes_them():
    assert parameters(ConsumerMessage.__init__)[:13] == [
        "self", "topic", "partition", "offset", "timestamp", "timestamp_type", "headers",
        "key", "value", "checksum", "serialized_key_size", "serialized_value_size", "tp",
    ], "transport.Consumer._to_message builds ConsumerMessage with positional arguments"
    assert "generation_id" in parameters(ConsumerMessage.__init__), (
        "transport.Consumer._to_message passes generation_id=")


def test_faust_streams_skip_messages_of_another_group_generation():
    source = inspect.getsource(streams)
    assert re.search(r"message\.generation_id\s*!=\s*self\.app\.consumer_generation_id",
                     source), (
        "faust's stream compares each message's generation_id with the app's: "
        "transport.Consumer._to_message must set it, or every batch would be skipped")


def test_aiokafka_records_have_the_fields_a_batch_reads():
    fields = {field.name for field in dataclasses.fields(ConsumerRecord)}
    assert {"topic", "partition", "offset", "timestamp", "timestamp_type", "key", "value",
            "serialized_key_size", "serialized_value_size"} <= fields, (
        "transport.Consumer._to_message and the stages read these of aiokafka's "
        "ConsumerRecord")


def test_faust_worker_consumer_reads_uncommitted_records_unless_told_otherwise():
    with offline_app() as (app, loop):
        thread = app.consumer._thread

        async def faust_isolation_level() -> str:
            kafka = faust_aiokafka.AIOKafkaConsumerThread._create_worker_consumer(
                thread, app.transport)
            try:
                return str(kafka._isolation_level)
            finally:
                await kafka.stop()

        assert loop.run_until_complete(faust_isolation_level()) == "read_uncommitted", (
            "transport.ConsumerThread switches faust's consumer to read_committed through "
            "aiokafka's _isolation_level attribute")


# -- what the agents' input goes through ----------------------------------------------


def test_the_schema_and_event_hooks_the_batch_schema_uses():
    compile_parameters = inspect.signature(faust.Schema.compile).parameters
    assert list(compile_parameters)[:2] == ["self", "app"] and all(
        p.kind is p.KEYWORD_ONLY for name, p in compile_parameters.items()
        if name not in ("self", "app")), (
        "transport.BatchSchema.compile(app, **_) replaces faust's: only `app` positional")
    assert parameters(faust.App.create_event) == [
        "self", "key", "value", "headers", "message"], (
        "transport.BatchSchema's decoder calls app.create_event(key, value, headers, message)")


def test_the_stream_calls_each_batch_makes():
    assert parameters(faust.Stream.noack) == ["self"], "batches.each_batch: stream.noack()"
    assert inspect.isasyncgenfunction(faust.Stream.events), (
        "batches.each_batch iterates stream.noack().events()")
    assert parameters(faust.Stream.ack) == ["self", "event"], (
        "batches.each_batch acks each handled batch with stream.ack(event)")
    assert inspect.iscoroutinefunction(faust.Stream.ack), "batches.each_batch awaits stream.ack"


# -- the group: assignor, generation, high watermarks ----------------------------------


def test_take_all_speaks_faust_own_group_protocol():
    with offline_app() as (app, _):
        assignor = app.assignor
        assert type(assignor) is PartitionAssignor, (
            "app.assignor must be faust's PartitionAssignor: the runtime's members() casts "
            "it to one and calls external_topics_metadata()")
        assert (assignor.name, assignor.version) == ("faust", 4), (
            "faust's group protocol changed: reset_cli.TakeAll poses as protocol 'faust' "
            "version 4 to join the workers' group")
        assert (TakeAll.name, TakeAll.version) == (assignor.name, assignor.version), (
            "reset_cli.TakeAll must name the protocol and version faust's PartitionAssignor "
            "uses, or the broker refuses it in the workers' group")


def test_standby_replicas_make_faust_use_its_own_assignor():
    from app.main import faust_settings
    from app.settings import Settings

    assert faust_settings(Settings())["table_standby_replicas"] == 1, (
        "app.main asks for one standby replica to get faust's own assignor")

    def strategy(**options: Any) -> list[Any]:
        with offline_app(**options) as (app, loop):
            async def chosen() -> list[Any]:
                kafka = app.consumer._thread._create_worker_consumer(app.transport)
                try:
                    return list(kafka._partition_assignment_strategy)
                finally:
                    await kafka.stop()
            found = loop.run_until_complete(chosen())
            return [a if a is not app.assignor else "app.assignor" for a in found]

    assert strategy(table_standby_replicas=1) == ["app.assignor"], (
        "app.main sets table_standby_replicas=1 so that faust's consumer uses app.assignor "
        "(co-partitioned assignment, every worker's URL and partitions)")
    assert strategy(table_standby_replicas=0) == [RoundRobinPartitionAssignor], (
        "with no standbys (and no tables) faust falls back to round robin")


def test_the_assignor_shares_each_worker_partitions_by_url():
    with offline_app() as (app, _):
        assignor = app.assignor
        assert assignor.external_topics_metadata() == {}, (
            "before any assignment the runtime's members() finds no other worker")
        shared = {"http://worker-1:8000": {"orders-by-buyer": [0, 2]}}
        assignor.external_topic_distribution = shared
        assert assignor.external_topics_metadata() == shared, (
            "the runtime's members() reads {url: {topic: [partitions]}} from "
            "PartitionAssignor.external_topics_metadata()")


def test_aiokafka_takes_an_assignor_as_take_all_is_written():
    assert AbstractPartitionAssignor.__abstractmethods__ == {
            "name", "assign", "metadata", "on_assignment"}, (
        "reset_cli.TakeAll implements aiokafka's AbstractPartitionAssignor")
    assert not inspect.isabstract(TakeAll), (
        "reset_cli.TakeAll must implement every abstract member of aiokafka's assignor")
    for function, attribute in ((GroupCoordinator._lookup_assignor, "name"),
                                (GroupCoordinator._perform_assignment, "assign"),
                                (CoordinatorGroupRebalance.perform_group_join, "metadata"),
                                (GroupCoordinator._on_join_complete, "on_assignment")):
        assert uses(function, attribute), (
            f"aiokafka's {function.__qualname__} must use the assignor's {attribute}: "
            "reset_cli.TakeAll (a class, not an instance) provides it")


def test_take_all_member_metadata_and_assignment_encode_as_aiokafka_decodes_them():
    assert list(ConsumerProtocolMemberMetadata.SCHEMA.names) == [
        "version", "subscription", "user_data"], "reset_cli.TakeAll.metadata, positionally"
    assert list(ConsumerProtocolMemberAssignment.SCHEMA.names) == [
        "version", "assignment", "user_data"], "reset_cli.TakeAll.assign, positionally"
    metadata = ConsumerProtocolMemberMetadata.decode(TakeAll.metadata(["orders"]).encode())
    assert (metadata.version, metadata.subscription, metadata.user_data) == (
        4, ["orders"], b""), "reset_cli.TakeAll.metadata builds it positionally"

    class Cluster:
        def partitions_for_topic(self, topic: str) -> set[int]:
            return {1, 0}

    [(member, assignment)] = TakeAll.assign(Cluster(), {"m-1": metadata}).items()
    decoded = ConsumerProtocolMemberAssignment.decode(assignment.encode())
    assert (member, decoded.version, decoded.assignment, decoded.user_data) == (
        "m-1", 4, [("orders", [0, 1])], b""), (
        "reset_cli.TakeAll.assign builds ConsumerProtocolMemberAssignment positionally")


def test_the_group_generation_is_kept_on_the_app():
    with offline_app() as (app, _):
        assert app.consumer_generation_id == 0, (
            "the runtime reads app.consumer_generation_id, 0 before the first assignment")
    assert uses(faust_aiokafka.ConsumerRebalanceListener.on_partitions_assigned,
                "consumer_generation_id"), (
        "faust must set app.consumer_generation_id on each assignment: the runtime tells "
        "an expelled worker by a generation skipped, and batches carry it")


def test_a_partition_never_fetched_has_no_high_watermark():
    for function in (faust_consumer.ThreadDelegateConsumer.highwater,
                     faust_aiokafka.AIOKafkaConsumerThread.highwater):
        assert uses(function, "highwater"), (
            f"{function.__qualname__} must pass aiokafka's highwater on: "
            "app.consumer.highwater(tp) in the runtime and app.main")
    with offline_app() as (_, loop):
        async def highwater() -> int | None:
            kafka = aiokafka.AIOKafkaConsumer(bootstrap_servers="127.0.0.1:1")
            try:
                kafka.assign([aiokafka.TopicPartition("orders", 0)])
                return kafka.highwater(aiokafka.TopicPartition("orders", 0))
            finally:
                await kafka.stop()

        assert loop.run_until_complete(highwater()) is None, (
            "app.consumer.highwater(tp) comes from aiokafka's, None before a fetch: the "
            "runtime's check_read and the ingest stage's lag skip an unknown one")


# -- the app's own hooks (app/main.py, app/runtime.py) --------------------------------


def test_the_web_server_is_left_out_when_the_boot_strategy_says_so():
    with offline_app(web_enabled=True) as (app, _):
        app.boot_strategy.enable_web = False
        assert list(app.boot_strategy.web_server()) == [], (
            "app.main's OrderstreamApp turns faust's web server off with "
            "boot_strategy.enable_web, over the CLI's --with-web")
    assert parameters(faust.App.on_init_dependencies) == ["self"], (
        "app.main's OrderstreamApp.on_init_dependencies() puts the runtime first")


def test_rebalance_signals_hand_the_partitions_to_their_receivers():
    assert re.search(r"on_partitions_assigned\.send\)?\(assigned\)",
                     inspect.getsource(faust.App._on_partitions_assigned)), (
        "faust must send the assigned partitions as the signal's one argument: "
        "app.main's on_assigned hands them to the runtime")
    assert re.search(r"on_partitions_revoked\.send\)?\(revoked\)",
                     inspect.getsource(faust.App._on_partitions_revoked)), (
        "faust must send the revoked partitions as the signal's one argument")
    with offline_app() as (app, loop):
        got = []

        async def on_assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
            got.append((sender, assigned))

        app.on_partitions_assigned.connect(on_assigned)
        loop.run_until_complete(app.on_partitions_assigned.send({TOPIC}))
        assert got == [(app, {TOPIC})], (
            "app.main's rebalance handlers take (sender, partitions)")


def test_a_failed_worker_can_stop_without_waiting_for_its_unacked_batch():
    with offline_app() as (app, _):
        assert app.crash_reason is None, "the runtime's exit code reads app.crash_reason"
        assert inspect.iscoroutinefunction(app.crash), (
            "app/runtime.py stops a failed worker with app.crash")
        assert app.conf.stream_wait_empty is True, (
            "by default a stop waits for every message in flight (the runtime turns that "
            "off after a failure)")
    assert issubclass(AlreadyConfiguredWarning, Warning), (
        "app/runtime.py silences AlreadyConfiguredWarning around that change")
    assert uses(faust_consumer.Consumer.on_stop, "stream_wait_empty"), (
        "after a fatal error app/runtime.py sets conf.stream_wait_empty False so that the "
        "stop does not wait for the failed batch's ack")
