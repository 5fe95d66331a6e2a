"""app.alignment: which input partitions are held back, with a hand-driven clock."""

from faust.types import TP

from app.alignment import Alignment, apply

A, B, C = TP("orders", 0), TP("orders", 1), TP("orders", 2)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_partition_ahead_by_more_than_the_drift_is_held_until_the_others_catch_up():
    clock = Clock()
    alignment = Alignment(max_drift_ms=2_500, stale_s=1.0, clock=clock)
    alignment.observe(A, 10_000)
    alignment.observe(B, 12_500)  # exactly the drift: not held
    assert alignment.decide() == (set(), set())
    alignment.observe(B, 12_501)
    assert alignment.decide() == ({B}, set())
    assert alignment.paused == {B}
    alignment.observe(A, 10_001)  # B is now exactly the drift ahead
    assert alignment.decide() == (set(), {B})
    assert alignment.paused == set()


def test_the_slowest_delivering_partition_sets_the_floor():
    clock = Clock()
    alignment = Alignment(max_drift_ms=1_000, stale_s=1.0, clock=clock)
    alignment.observe(A, 0)
    alignment.observe(B, 5_000)
    alignment.observe(C, 800)
    assert alignment.decide() == ({B}, set())  # C is within 1 s of A, B is 5 s ahead


def test_a_partition_that_went_quiet_holds_nobody_back():
    clock = Clock()
    alignment = Alignment(max_drift_ms=1_000, stale_s=1.0, clock=clock)
    alignment.observe(A, 0)
    alignment.observe(B, 9_000)
    assert alignment.decide() == ({B}, set())
    clock.now += 0.5
    assert alignment.decide() == (set(), set())  # A delivered 0.5 s ago: B still waits
    clock.now += 0.6  # A silent for 1.1 s: caught up, or stuck
    assert alignment.decide() == (set(), {B})


def test_orders_without_a_time_count_as_delivery_and_reset_forgets_everything():
    clock = Clock()
    alignment = Alignment(max_drift_ms=1_000, stale_s=1.0, clock=clock)
    alignment.observe(A, 0)
    alignment.observe(B, 3_000)
    alignment.observe(A, None)  # a batch of invalid messages: A still delivers
    assert alignment.decide() == ({B}, set())
    alignment.reset()
    assert alignment.paused == set()
    alignment.observe(B, 3_000)
    assert alignment.decide() == (set(), set())


def test_apply_releases_before_it_holds():
    clock = Clock()
    alignment = Alignment(max_drift_ms=1_000, stale_s=1.0, clock=clock)
    calls: list[tuple[str, set[TP]]] = []
    alignment.observe(A, 0)
    alignment.observe(B, 5_000)
    apply(alignment, lambda tps: calls.append(("hold", set(tps))),
          lambda tps: calls.append(("release", set(tps))))
    alignment.observe(A, 4_500)
    alignment.observe(C, 9_000)
    apply(alignment, lambda tps: calls.append(("hold", set(tps))),
          lambda tps: calls.append(("release", set(tps))))
    assert calls == [("hold", {B}), ("release", {B}), ("hold", {C})]


def test_a_slow_partition_with_records_left_holds_the_others_until_it_delivers_or_stalls():
    clock = Clock()
    alignment = Alignment(max_drift_ms=1_000, stale_s=1.0, max_wait_s=10.0, clock=clock)
    alignment.observe(A, 0, backlog=True)  # a slow lane: its next batch takes 3 s
    alignment.observe(B, 9_000, backlog=True)
    assert alignment.decide() == ({B}, set())
    clock.now += 3.0
    assert alignment.decide() == (set(), set())  # still waiting for A: B stays held
    alignment.observe(A, 8_500, backlog=True)
    assert alignment.decide() == (set(), {B})
    alignment.observe(B, 20_000, backlog=True)
    assert alignment.decide() == ({B}, set())
    clock.now += 10.0  # A delivered nothing for 10 s though records are left: stuck
    assert alignment.decide() == (set(), {B})
