"""The ingest step: replay skip, parse, dead-letter, route by order number, dedup, shuffle."""

import orjson
from aiokafka.partitioner import murmur2

from core.ingest import IngestConfig, RawMessage, ingest_partition
from core.shuffle import decode_shuffle
from tables.windows import WindowSpec
from tests.unit.test_aggregate import DictStore

DAY = 86_400_000
CONFIG = IngestConfig(orders_topic="orders", rekey_topic="rekey", orders_partitions=4,
                      buyer_partitions=4, horizon_ms=DAY,
                      windows=(WindowSpec("tumble_10s", "tumbling", 10_000, 10_000),),
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


def run(store, messages):
    result = ingest_partition(messages, CONFIG, store.read, store.scan)
    store.apply(result.updates)
    return result


def test_owned_orders_are_deduplicated_in_place_and_shuffled_by_buyer():
    a, b = owned(2, 2)
    messages = [RawMessage("orders", 2, 10, str(a).encode(), raw(a)),
                RawMessage("orders", 2, 11, str(b).encode(), raw(b, "Zoë", "Brontë")),
                RawMessage("orders", 2, 12, str(a).encode(), raw(a))]
    result = run(DictStore(), messages)
    assert (result.read, result.duplicates, result.rekeyed) == (3, 1, [])
    by_partition = {p: decode_shuffle(v) for p, v in result.shuffled}
    ana, zoe = kafka_partition('["Ana","Ruiz"]'), kafka_partition('["Zoë","Brontë"]')
    assert ana != zoe  # else this test proves less than it says
    source, orders = by_partition[ana]
    assert source == "orders:2" and [(off, o.order_number, k) for off, o, k in orders] == [
        (10, a, str(a).encode())]
    assert [o.order_number for _, o, _ in by_partition[zoe][1]] == [b]


def test_a_copy_keyed_otherwise_takes_one_hop_to_the_owner_and_is_a_duplicate_there():
    [number] = owned(1, 1)
    store = DictStore()
    run(store, [RawMessage("orders", 1, 0, str(number).encode(), raw(number))])
    stray = run(DictStore(), [RawMessage("orders", 3, 7, b"other-key", raw(number))])
    assert stray.shuffled == [] and [p for p, _, _ in stray.rekeyed] == [1]
    _, key, value = stray.rekeyed[0]
    at_owner = run(store, [RawMessage("rekey", 1, 0, key, value)])
    assert at_owner.duplicates == 1 and at_owner.shuffled == []


def test_same_number_other_content_is_a_conflict_in_the_dlq_with_the_original_coordinates():
    [number] = owned(0, 1)
    store = DictStore()
    run(store, [RawMessage("orders", 0, 0, None, raw(number, price="1.00"))])
    result = run(store, [RawMessage("orders", 0, 1, b"k", raw(number, price="2.00"))])
    assert result.conflicts == 1 and result.shuffled == []
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
    assert (again.read, again.shuffled, again.dead_letters, again.updates) == (2, [], [], {})


def test_an_order_older_than_the_watermark_minus_the_horizon_counts_nowhere():
    a, b = owned(0, 2)
    store = DictStore()
    run(store, [RawMessage("orders", 0, 0, None, raw(a, time_ms=3 * DAY))])
    result = run(store, [RawMessage("orders", 0, 1, b"x", raw(b, time_ms=2 * DAY - 1))])
    assert result.too_old == 1 and result.shuffled == []
    [(key, value)] = result.late
    late = orjson.loads(value)
    assert key == b"x" and late["order_number"] == b and late["order_time"] == (
        "1970-01-02T23:59:59.999Z")
    assert late["windows"] == ["window tumble_10s [1970-01-02T23:59:50.000Z, "
                               "1970-01-03T00:00:00.000Z) final at 1970-01-03T00:00:05.000Z"]


def test_invalid_messages_become_dead_letters_with_their_reason():
    result = run(DictStore(), [RawMessage("orders", 0, 0, b"k", b"[]"),
                               RawMessage("orders", 0, 1, None, raw(1, first=""))])
    assert result.invalid == 2 and result.shuffled == []
    assert [(key, orjson.loads(v)["error"]) for key, v in result.dead_letters] == [
        (b"k", "value: not a JSON object (got array)"), (None, "buyer.first_name: empty")]


def test_with_dedup_off_repeats_count_but_replayed_offsets_still_do_not():
    from dataclasses import replace

    config = replace(CONFIG, dedup=False)
    store = DictStore()
    messages = [RawMessage("orders", 1, 0, None, raw(5)), RawMessage("orders", 1, 1, None, raw(5))]
    result = ingest_partition(messages, config, store.read, store.scan)
    store.apply(result.updates)
    assert sum(len(decode_shuffle(v)[1]) for _, v in result.shuffled) == 2
    again = ingest_partition(messages, config, store.read, store.scan)
    assert again.shuffled == []
