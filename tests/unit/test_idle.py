"""The idle rule's clock: silent partitions catch up to the largest watermark, once."""

from tables import idle
from tables.idle import IdleClock


def test_ticks_only_after_silence_and_only_for_partitions_behind(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(idle.time, "monotonic", lambda: now[0])
    clock = IdleClock(idle_timeout_ms=30_000)
    marks = {0: 5_000, 1: 9_000, 2: -(2**63)}  # partition 2 has seen nothing yet
    assert clock.due_ticks(marks) == {}  # silent for 0 s
    now[0] += 29.999
    assert clock.due_ticks(marks) == {}
    now[0] += 0.001
    assert clock.due_ticks(marks) == {0: 9_000, 2: 9_000}
    assert clock.due_ticks(marks) == {}  # already ticked to that watermark
    clock.heard()
    now[0] += 10
    assert clock.due_ticks({0: 9_000, 1: 12_000, 2: 9_000}) == {}  # not silent long enough
    now[0] += 20
    assert clock.due_ticks({0: 9_000, 1: 12_000, 2: 9_000}) == {0: 12_000, 2: 12_000}
