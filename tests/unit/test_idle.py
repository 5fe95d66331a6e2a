"""The idle rule's clock: silent partitions catch up to the largest watermark, then event
time follows the wall clock until the last windows are final."""

from tables import idle
from tables.idle import IdleClock

NOTHING = -(2**63)


def test_silent_partitions_take_the_largest_watermark_then_follow_the_clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(idle.time, "monotonic", lambda: now[0])
    clock = IdleClock(idle_timeout_ms=30_000, catch_up_ms=65_000)
    marks = {0: 5_000, 1: 9_000, 2: NOTHING}  # partition 2 has seen nothing yet
    assert clock.due_ticks(marks, latest_order_ms=9_000) == {}  # silent for 0 s
    now[0] += 29.999
    assert clock.due_ticks(marks, 9_000) == {}
    now[0] += 0.001  # silent for IDLE_TIMEOUT: the largest watermark, no further yet
    assert clock.due_ticks(marks, 9_000) == {0: 9_000, 2: 9_000}
    marks = {0: 9_000, 1: 9_000, 2: 9_000}
    now[0] += 0.5
    assert clock.due_ticks(marks, 9_000) == {}  # at most one round a second
    now[0] += 29.5  # 60 s: 2 x IDLE_TIMEOUT, event time starts following the clock
    assert clock.due_ticks(marks, 9_000) == {}
    now[0] += 10  # 70 s
    assert clock.due_ticks(marks, 9_000) == {0: 19_000, 1: 19_000, 2: 19_000}
    now[0] += 600  # capped at the largest window plus lateness past the latest order
    marks = dict.fromkeys(marks, 19_000)
    assert clock.due_ticks(marks, 9_000) == dict.fromkeys(marks, 74_000)
    now[0] += 5
    assert clock.due_ticks(dict.fromkeys(marks, 74_000), 9_000) == {}


def test_new_orders_stop_it(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(idle.time, "monotonic", lambda: now[0])
    clock = IdleClock(idle_timeout_ms=1_000, catch_up_ms=10_000)
    now[0] += 5
    assert clock.due_ticks({0: 1_000, 1: 500}, 1_000) == {0: 4_000, 1: 4_000}
    clock.heard()
    now[0] += 0.9
    assert clock.due_ticks({0: 4_000, 1: 4_000}, 1_000) == {}
