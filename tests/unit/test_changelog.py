"""Changelog records and their replay: whole batches of current owners only."""

from tables.changelog import COMMIT_KEY, FENCE_KEY, Replay, batch_records


def replayed(records: list[tuple[int, bytes, bytes | None, int]]) -> tuple[list, dict]:
    """(offset, key, value, epoch) records through a Replay: the commits it made (offset,
    updates) and what it left pending."""
    replay, commits = Replay(), []
    for offset, key, value, epoch in records:
        if replay.read(key, value, epoch, offset):
            commits.append((offset, replay.take()))
    return commits, replay.pending


def test_a_batch_is_a_record_per_key_then_its_commit_marker():
    assert batch_records({"t|a": "1", "t|b": None}) == [
        (b"t|a", b"1"), (b"t|b", None), (COMMIT_KEY, b"")]


def test_records_apply_at_their_commit_marker_and_an_unfinished_batch_stays_pending():
    commits, pending = replayed([
        (0, FENCE_KEY, b"", -1),
        (1, b"t|a", b"1", 0), (2, b"t|b", b"2", 0), (3, COMMIT_KEY, b"", 0),
        (4, b"t|a", None, 0), (5, COMMIT_KEY, b"", 0),
        (6, b"t|c", b"9", 0),  # the writer died here
    ])
    assert commits == [(3, {"t|a": "1", "t|b": "2"}), (5, {"t|a": None})]
    assert pending == {"t|c": "9"}


def test_a_stale_owner_writing_after_a_later_fence_is_dropped():
    commits, pending = replayed([
        (0, FENCE_KEY, b"", -1),
        (1, b"t|a", b"1", 0), (2, COMMIT_KEY, b"", 0),
        (3, b"t|a", b"2", 0),  # the old owner's batch, cut by the new owner's fence
        (4, FENCE_KEY, b"", -1),
        (5, b"t|b", b"5", 0), (6, COMMIT_KEY, b"", 0),  # the old owner, resumed
        (7, b"t|a", b"1", 4), (8, COMMIT_KEY, b"", 4),  # the new owner's repair of t|a
        (9, b"t|b", b"7", 4), (10, COMMIT_KEY, b"", 4),
    ])
    assert commits == [(2, {"t|a": "1"}), (8, {"t|a": "1"}), (10, {"t|b": "7"})]
    assert pending == {}


def test_a_compacted_log_of_a_past_owner_still_restores_whole():
    # compaction leaves the latest record per key: older epochs' records before the last
    # fence and commit marker
    commits, _ = replayed([
        (3, b"t|a", b"1", 0), (40, b"t|b", b"2", 12), (77, FENCE_KEY, b"", -1),
        (80, b"t|c", b"3", 77), (81, COMMIT_KEY, b"", 77),
    ])
    assert commits == [(81, {"t|a": "1", "t|b": "2", "t|c": "3"})]
