"""What counts as the broker no longer backing the state, and the client log throttle."""

import logging

from app.brokerwatch import behind, recreated
from app.logthrottle import ClientErrorThrottle
from core.sources import held_offsets


def test_a_broker_ending_past_every_held_position_backs_the_state():
    held = {("orders", 0): 41, ("app-dedup-changelog", 0): 9}
    assert behind(held, {("orders", 0): 42, ("app-dedup-changelog", 0): 10}) is None


def test_an_end_at_or_below_a_held_offset_or_a_missing_partition_is_a_loss():
    held = {("orders", 0): 41, ("orders", 1): 5, ("orders", 2): 7, ("app-changelog", 3): 9}
    loss = behind(held, {("orders", 0): 41, ("orders", 1): 6, ("orders", 2): 0})
    assert loss is not None
    assert dict(loss.behind) == {"app-changelog": (3,), "orders": (0, 2)}
    assert loss.topics == "app-changelog[3], orders[0,2]"
    assert loss.detail == ("app-changelog[3] has no such partition but the state applied "
                           "offset 9")


def test_a_topic_with_a_new_id_loses_every_partition_held_in_it_however_far_it_ends():
    held = {("orders", 0): 41, ("orders", 2): 7, ("app-changelog", 3): 9}
    loss = recreated(held, {"orders", "app-other"})
    assert loss is not None
    assert dict(loss.behind) == {"orders": (0, 2)}
    assert loss.detail == "orders was deleted and created again (its topic id changed)"
    assert recreated(held, {"app-other"}) is None
    assert recreated(held, set()) is None


def test_held_offsets_are_the_plain_partition_labels_of_a_store():
    keys = [("s|orders:0", "12"), ("s|orders:0>3", "12"), ("s|app-orders-by-number:3", "4"),
            ("s|orders:２", "1")]
    assert held_offsets(lambda prefix: [kv for kv in keys if kv[0].startswith(prefix)]) == {
        ("orders", 0): 12, ("app-orders-by-number", 3): 4}


def record(name: str, level: int, msg: str) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, None, None)


def test_client_errors_become_one_marked_warning_per_kind_and_interval():
    throttle = ClientErrorThrottle()
    first = record("aiokafka.conn", logging.ERROR, "Unable connect to node %s")
    assert throttle.filter(first)
    assert (first.levelname, first.msg) == ("INFO", "kafka client: Unable connect to node %s")
    assert not throttle.filter(record("aiokafka.conn", logging.ERROR, "Unable connect to node %s"))
    assert throttle.filter(record("aiokafka.client", logging.ERROR, "Unable to update metadata"))
    timer = record("mode.timers", logging.WARNING, "Timer %s is overlapping")
    assert throttle.filter(timer) and (timer.levelname, timer.msg) == (
        "INFO", "timer: Timer %s is overlapping")
    ours = record("app.runtime", logging.ERROR, "orderstream: the broker lacks records")
    assert throttle.filter(ours) and ours.levelname == "ERROR"


def test_every_client_warning_is_a_sign_of_trouble_even_when_held_back():
    signs: list[None] = []
    throttle = ClientErrorThrottle(on_trouble=lambda: signs.append(None))
    throttle.filter(record("aiokafka.conn", logging.ERROR, "Unable connect to node %s"))
    throttle.filter(record("aiokafka.conn", logging.ERROR, "Unable connect to node %s"))  # held
    assert len(signs) == 2
    throttle.filter(record("aiokafka.consumer", logging.INFO, "Subscribed to topic(s)"))
    throttle.filter(record("mode.timers", logging.WARNING, "Timer %s is overlapping"))
    throttle.filter(record("app.runtime", logging.ERROR, "orderstream: stopping"))
    assert len(signs) == 2  # info lines, timers and our own lines are not the client's trouble
