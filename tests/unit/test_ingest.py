"""The ingest step: replay skip, parse, dead-letter, route by order number, dedup, shuffle."""

import orjson
from aiokafka.partitioner import murmur2

from core.fixed import FixedWindow
from core.ingest import Clock, IngestConfig, RawMessage, channel_records, ingest_partition
from core.shuffle import decode_rekeyed, encode_rekeyed
from core.watermarks import Emitter
from tests.unit.dictstore import DictStore

DAY = 86_400_000
CONFIG = IngestConfig(orders_topic="orders", rekey_topic="rekey", orders_partitions=4,
                      buyer_partitions=4, horizon_ms=DAY,
                      windows=(FixedWindow("tumble_10s", "tumbling", 10_000, 10_000),),
                      allowed_lateness_ms=5_000)


def kafka_partition(text: str, partitions: int = 4) -> int:
    return (murmur2(text.encode()) & 0x7FFFFFFF) % partitions


def raw(number, first="Ana", last="Ruiz", price="1.00", time_ms=0):
    return orjson.dumps({"order_number": number, "price": price, "order_time": time_ms,
                         "buyer": {"first_name": first, "last_name": last}})


def owned(partition: int, count: int, start: int = 1) -> list[int]:
    """Order numbers whose decimal key the default partitioner puts on `partition`."""
    found, number = [], start
    while len(found) < count:
        if kafka_partition(str(number)) == partition:
            found.append(number)
        number += 1
    return found


NOW = 10 * DAY  # the wall clock, after every order time here


def run(store, messages, partition=None, config=CONFIG, now=NOW):
    partition = messages[0].partition if partition is None else partition
    result = ingest_partition(partition, messages, config, store.read, store.scan, Clock(now))
    store.apply(result.updates)
    return result


def shuffled(result):
    """Buyer partition -> [(source, [(offset, order number, key, late clock)])]."""
    return {p: [(source, [(off, o.order_number, k, c) for off, o, k, c in rows])
                for source, rows in groups] for p, groups in result.shuffled.items()}


def test_owned_orders_are_deduplicated_in_place_and_shuffled_by_buyer():
    a, b = owned(2, 2)
    messages = [RawMessage("orders", 2, 10, str(a).encode(), raw(a, time_ms=5_000)),
                RawMessage("orders", 2, 11, str(b).encode(), raw(b, "Zoë", "Brontë", time_ms=0)),
                RawMessage("orders", 2, 12, str(a).encode(), raw(a, time_ms=5_000))]
    result = run(DictStore(), messages)
    assert (result.read, result.duplicates, dict(result.rekeyed)) == (3, 1, {})
    ana, zoe = kafka_partition('["Ana","Ruiz"]'), kafka_partition('["Zoë","Brontë"]')
    assert ana != zoe  # else this test proves less than it says
    # b comes after an order at 5_000 of its partition: that is its late clock
    assert shuffled(result) == {ana: [("orders:2", [(10, a, str(a).encode(), None)])],
                                zoe: [("orders:2", [(11, b, str(b).encode(), 5_000)])]}
    assert result.source_watermark_ms == 5_000


def test_a_copy_keyed_otherwise_takes_one_hop_to_the_owner_and_is_a_duplicate_there():
    [number] = owned(1, 1)
    store = DictStore()
    run(store, [RawMessage("orders", 1, 0, str(number).encode(), raw(number))])
    stray = run(DictStore(), [RawMessage("orders", 3, 6, None, raw(owned(3, 1)[0], time_ms=9)),
                              RawMessage("orders", 3, 7, b"other-key", raw(number))])
    assert list(stray.rekeyed) == [1]
    rekeyed, _ = channel_records(3, stray, Clock(NOW), Emitter(0), CONFIG)
    [(owner, value)] = [(o, v) for o, v in rekeyed if decode_rekeyed(v).orders]
    # it carries its origin's watermark after the batch, and before it (9) for itself
    assert owner == 1 and decode_rekeyed(value).watermark_ms == 9
    assert decode_rekeyed(value).orders[0][2] == 9
    at_owner = run(store, [RawMessage("rekey", 1, 0, None, value)])
    assert at_owner.duplicates == 1 and dict(at_owner.shuffled) == {}
    # the same rekey record again (its origin redid the batch): skipped, not a duplicate
    again = run(store, [RawMessage("rekey", 1, 1, None, value)])
    assert again.duplicates == 0


def test_a_hopped_order_counts_at_its_owner_under_its_origin_and_carrier():
    [number] = owned(2, 1)
    copy = raw(number, time_ms=1_000)
    stray = run(DictStore(), [RawMessage("orders", 0, 4, b"k", copy)])
    [(where, order, before)] = stray.rekeyed[2]
    assert (where.offset, order.order_number, before) == (4, number, -(2**63))
    value = encode_rekeyed(0, 7_000, None, [(where, order, 7_000)])  # 7_000 read before it
    result = run(DictStore(), [RawMessage("rekey", 2, 0, None, value)])
    [(partition, groups)] = shuffled(result).items()
    assert groups == [("orders:0>2", [(4, number, b"k", 7_000)])]
    # its watermark: the min of its own source (nothing yet) and orders 0's (7_000)
    assert result.output.watermark_ms == -(2**63)


def test_same_number_other_content_is_a_conflict_in_the_dlq_with_the_original_coordinates():
    [number] = owned(0, 1)
    store = DictStore()
    run(store, [RawMessage("orders", 0, 0, None, raw(number, price="1.00"))])
    result = run(store, [RawMessage("orders", 0, 1, b"k", raw(number, price="2.00"))])
    assert result.conflicts == 1 and dict(result.shuffled) == {}
    [(key, value)] = result.dead_letters
    assert key == b"k"
    assert orjson.loads(value) == {
        "error": f"conflict: order_number {number} seen with different content",
        "topic": "orders", "partition": 0, "offset": 1,
        "raw": raw(number, price="2.00").decode()}


def test_a_replayed_offset_produces_nothing():
    [number] = owned(0, 1)
    store = DictStore()
    first = [RawMessage("orders", 0, 0, None, raw(number)), RawMessage("orders", 0, 1, None, b"[]")]
    run(store, first)
    again = run(store, first)
    assert (again.read, dict(again.shuffled), again.dead_letters, again.updates) == (
        2, {}, [], {})


def test_an_order_older_than_the_watermark_minus_the_horizon_counts_nowhere():
    a, b = owned(0, 2)
    store = DictStore()
    run(store, [RawMessage("orders", 0, 0, None, raw(a, time_ms=3 * DAY))])
    result = run(store, [RawMessage("orders", 0, 1, b"x", raw(b, time_ms=2 * DAY - 1))])
    assert result.too_old == 1 and dict(result.shuffled) == {}
    [(key, value)] = result.late
    late = orjson.loads(value)
    assert key == b"x" and late["order_number"] == b and late["order_time"] == (
        "1970-01-02T23:59:59.999Z")
    assert late["windows"] == ["window tumble_10s [1970-01-02T23:59:50.000Z, "
                               "1970-01-03T00:00:00.000Z) final at 1970-01-03T00:00:05.000Z"]


def test_invalid_messages_become_dead_letters_with_their_reason():
    result = run(DictStore(), [RawMessage("orders", 0, 0, b"k", b"[]"),
                               RawMessage("orders", 0, 1, None, raw(1, first=""))])
    assert result.invalid == 2 and dict(result.shuffled) == {}
    assert [(key, orjson.loads(v)["error"]) for key, v in result.dead_letters] == [
        (b"k", "value: not a JSON object (got array)"), (None, "buyer.first_name: empty")]


def test_a_key_over_4_kib_sends_its_message_to_the_dlq_keyed_by_its_first_4_kib():
    import hashlib

    first, second, third = owned(1, 3)
    at_limit, over = b"k" * 4096, b"\xff" * 4097
    result = run(DictStore(), [RawMessage("orders", 1, 0, at_limit, raw(first)),
                               RawMessage("orders", 1, 1, over, raw(second)),
                               RawMessage("orders", 1, 2, b"3", raw(third))])
    assert result.invalid == 1
    assert sum(len(rows) for groups in result.shuffled.values() for _, rows in groups) == 2
    [(key, value)] = result.dead_letters
    assert key == b"\xff" * 4096
    assert orjson.loads(value) == {
        "error": "key: 4097 bytes, more than 4096", "topic": "orders", "partition": 1,
        "offset": 1, "key_bytes": 4097, "key_sha256": hashlib.sha256(over).hexdigest(),
        "raw": raw(second).decode()}


def test_with_dedup_off_repeats_count_but_replayed_offsets_still_do_not():
    from dataclasses import replace

    config = replace(CONFIG, dedup=False)
    store = DictStore()
    messages = [RawMessage("orders", 1, 0, None, raw(5)), RawMessage("orders", 1, 1, None, raw(5))]
    result = run(store, messages, config=config)
    assert sum(len(rows) for groups in result.shuffled.values() for _, rows in groups) == 2
    again = run(store, messages, config=config)
    assert dict(again.shuffled) == {}


def test_an_order_too_far_in_the_future_is_invalid_and_moves_no_watermark():
    a, b = owned(0, 2)
    store = DictStore()
    hour = 3_600_000
    result = run(store, [RawMessage("orders", 0, 0, None, raw(a, time_ms=NOW + 2 * hour)),
                         RawMessage("orders", 0, 1, None, raw(b, time_ms=NOW - 1))])
    assert result.invalid == 1 and result.source_watermark_ms == NOW - 1
    [(_, value)] = result.dead_letters
    assert orjson.loads(value)["error"] == (
        "order_time: 1970-01-11T02:00:00.000Z is more than MAX_FUTURE_SKEW (1h) ahead of the "
        "worker's clock")
    assert [rows for groups in shuffled(result).values() for _, rows in groups] == [
        [(1, b, None, None)]]


def test_watermark_only_records_go_to_every_channel_that_has_no_orders_once_due():
    [number] = owned(0, 1)
    store, emitter = DictStore(), Emitter(interval_ms=1_000)
    result = run(store, [RawMessage("orders", 0, 0, None, raw(number, time_ms=5))])
    rekeyed, shuffled_records = channel_records(0, result, Clock(NOW), emitter, CONFIG)
    assert sorted(o for o, _ in rekeyed) == [1, 2, 3]  # this source's watermark: 5
    assert {decode_rekeyed(v).watermark_ms for _, v in rekeyed} == {5}
    # the partition's own watermark waits for the other sources: only the orders go out
    assert [p for p, _ in shuffled_records] == [kafka_partition('["Ana","Ruiz"]')]
    # nothing changed: nothing due; a second later with a new watermark: due again
    quiet = run(store, [], partition=0)
    assert channel_records(0, quiet, Clock(NOW + 10), emitter, CONFIG) == ([], [])
    later = run(store, [RawMessage("orders", 0, 1, None, raw(owned(0, 2)[1], time_ms=9))])
    early, _ = channel_records(0, later, Clock(NOW + 500), emitter, CONFIG)
    assert early == []  # rate-limited
    due, _ = channel_records(0, later, Clock(NOW + 1_000), emitter, CONFIG)
    assert sorted(o for o, _ in due) == [1, 2, 3]


def test_a_redo_takes_the_batch_named_first_so_it_decides_as_the_attempt_it_repeats():
    """Copy A of a number arrives on orders[2], copy B (other content) hops in from
    orders[0]. The attempt takes A's batch, its outputs reach the broker, its commit does
    not. A redo that took B's batch first would accept B, and the aggregation, which has
    A already, would count the number twice. The batch named first prevents that."""
    from core.aggregation import AggregateConfig, apply_batch
    from core.aggregation import Clock as AggregateClock
    from core.ingest import may_take, next_batch
    from core.shuffle import Origin, decode_shuffle, encode_shuffle
    from core.watermarks import NO_WATERMARK

    [number] = owned(2, 1)
    a = RawMessage("orders", 2, 0, str(number).encode(), raw(number, price="1.00"))
    hopped = Origin("orders", 0, 5, b"k", raw(number, price="2.00"))
    [b_order] = [o for _, o, _ in run(DictStore(), [RawMessage(*hopped[:5])]).rekeyed[2]]
    b = RawMessage("rekey", 2, 0, None, encode_rekeyed(0, 0, None, [(hopped, b_order, 0)]))
    aggregation = AggregateConfig(CONFIG.windows, 5_000, 10**12, carriers=4)

    def counted(store, results):
        records = [decode_shuffle(encode_shuffle(2, NO_WATERMARK, None, groups))
                   for r in results for groups in r.shuffled.values()]
        result = apply_batch(records, aggregation, store.read, AggregateClock(NOW))
        store.apply(result.updates)
        return sum(orjson.loads(v)[0] for k, v in store.items() if k.startswith("t|"))

    # the attempt: names its batch durably first (nothing was named), decides, dies
    dedup = DictStore()
    assert may_take("orders:2", 0, dedup.read) == (True, True, True)
    dedup.apply(next_batch("orders:2", 0))
    attempt = ingest_partition(2, [a], CONFIG, dedup.read, dedup.scan, Clock(NOW))
    # without the rule, a redo taking B first counts the number twice
    careless = DictStore(dedup)
    careless_counts = counted(DictStore(), [attempt, run(careless, [b]), run(careless, [a])])
    assert careless_counts == 2
    # with it: B's batch waits, A's is redone alike, then B is a conflict
    totals = DictStore()
    counted(totals, [attempt])
    assert may_take("rekey:2", 0, dedup.read) == (False, False, False)
    assert may_take("orders:2", 0, dedup.read) == (True, False, True)
    redo = run(dedup, [a])
    assert shuffled(redo) == shuffled(attempt)
    assert may_take("rekey:2", 0, dedup.read) == (True, True, True)
    late = run(dedup, [b])
    assert late.conflicts == 1 and counted(totals, [redo, late]) == 1


def test_a_redo_cut_shorter_than_the_batch_named_keeps_it_named_until_done():
    """The attempt named orders[2] up to offset 9; the redo gets 0..4 first: it may go,
    must not name another batch, and the rekey batch still waits until 9 is done."""
    from core.ingest import may_take, next_batch

    store = DictStore(next_batch("orders:2", 9))
    assert may_take("orders:2", 4, store.read) == (True, False, False)
    store["s|orders:2"] = "4"
    assert may_take("rekey:2", 0, store.read) == (False, False, False)
    assert may_take("orders:2", 12, store.read) == (True, True, True)  # past 9: name it
    store["s|orders:2"] = "9"
    assert may_take("rekey:2", 0, store.read) == (True, True, True)


def test_an_idle_partition_sends_its_own_watermark_not_the_largest_of_its_inputs():
    """Orders 2 is at 11:00, orders 0 (through the rekey topic) at 12:00, both idle. What
    dedup 2 sends is idle with its own 11:00 and 12:00 as the largest: when orders 2 is
    active again, the aggregation must not have taken 12:00 for its watermark."""
    from core.ingest import output_of
    from core.schema import WATERMARK_KEY, via_key
    from core.watermarks import Channel, encode_channel

    eleven, twelve, lease = 39_600_000, 43_200_000, NOW + 60_000
    store = DictStore({WATERMARK_KEY: str(eleven), "m|source": str(eleven),
                       via_key(0): encode_channel(Channel(twelve, lease, twelve))})
    for q in (1, 3):
        store[via_key(q)] = encode_channel(Channel(eleven, lease, eleven))
    idle = ingest_partition(2, [], CONFIG, store.read, store.scan, Clock(NOW, lease))
    assert idle.output == (eleven, lease, twelve)
    # active again (its lease is gone): the min over the active inputs, 11:00
    vias = {q: Channel(twelve if q == 0 else eleven, lease, twelve) for q in (0, 1, 3)}
    assert output_of(eleven, eleven, vias, Clock(NOW)).watermark_ms == eleven


def test_a_large_copy_hops_cut_and_its_conflict_is_the_dlq_record_its_origin_would_write():
    """A 100 KiB order (an extra field) keyed otherwise hops to its owner with its value
    cut to 64 KiB, its size and hash: the record stays small, and the DLQ record of its
    conflict is the one the origin would have written from the whole value."""
    import hashlib

    from core.sinks import dlq_value

    [number] = owned(1, 1)
    owner = DictStore()
    run(owner, [RawMessage("orders", 1, 0, str(number).encode(), raw(number))])
    big = orjson.dumps({"order_number": number, "price": "9.99", "order_time": 0,
                        "buyer": {"first_name": "Ana", "last_name": "Ruiz"},
                        "note": "n" * 100_000})
    stray = run(DictStore(), [RawMessage("orders", 3, 7, b"k", big)])
    rekeyed, _ = channel_records(3, stray, Clock(NOW), Emitter(0), CONFIG)
    [value] = [v for o, v in rekeyed if o == 1]
    assert len(value) < 70_000
    conflict = run(owner, [RawMessage("rekey", 1, 0, None, value)])
    [(key, record)] = conflict.dead_letters
    assert key == b"k" and record == dlq_value(
        f"conflict: order_number {number} seen with different content", "orders", 3, 7, big)
    assert orjson.loads(record)["raw_sha256"] == hashlib.sha256(big).hexdigest()
