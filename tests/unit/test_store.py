"""The RocksDB partition store on tmp_path."""

from tables.store import PartitionStore, read_changelog_offset


def test_commit_is_atomic_with_its_changelog_offset_and_survives_reopen(tmp_path):
    store = PartitionStore(tmp_path / "p0")
    assert store.changelog_offset == -1
    store.commit({"t|a": "1", "t|b": "2", "w|x|1": "3"}, changelog_offset=7)
    store.commit({"t|a": None, "t|c": "4"}, changelog_offset=8)
    store.close()
    assert read_changelog_offset(tmp_path / "p0") == 8
    reopened = PartitionStore(tmp_path / "p0")
    assert list(reopened.scan("t|")) == [("t|b", "2"), ("t|c", "4")]
    assert reopened.get_many(["t|a", "w|x|1"]) == [None, "3"]
    assert reopened.last_key("t|") == "t|c" and reopened.last_key("z|") is None
    reopened.close()


def test_a_missing_store_reflects_no_changelog(tmp_path):
    assert read_changelog_offset(tmp_path / "nothing") == -1
