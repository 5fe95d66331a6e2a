"""Start-up checks of DATA_DIR: writable, room to write, WINDOWS changes explained."""

import json
import logging
from collections import namedtuple

import pytest

from app import statecheck
from app.settings import Settings
from app.statecheck import StateError, check_writable, reconcile_windows


def test_a_data_dir_that_cannot_be_created_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StateError, match=f"DATA_DIR {blocker} is not writable"):
        check_writable(blocker / "orderstream")


def test_a_full_disk_is_a_clear_error(tmp_path, monkeypatch):
    # the disk itself cannot be filled here: the one mock is the free-space reading
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(statecheck.shutil, "disk_usage", lambda path: usage(10, 10, 1024))
    with pytest.raises(StateError, match="has 0 MiB free; RocksDB needs at least 64 MiB"):
        check_writable(tmp_path / "orderstream")


def test_windows_changes_are_explained_once_and_removed_ones_stay_dropped(tmp_path, caplog):
    def settings(windows: str) -> Settings:
        return Settings(data_dir=tmp_path, windows=windows)

    caplog.set_level(logging.WARNING)
    settings("tumble:10s").state_dir.mkdir(parents=True)
    assert reconcile_windows(settings("tumble:10s,hop:1m/10s")) == ()
    assert caplog.messages == []
    assert reconcile_windows(settings("tumble:10s,tumble:5s")) == ("hop_1m_10s",)
    assert caplog.messages == [
        f"WINDOWS changed against the state in {tmp_path / 'orderstream'}: tumble_5s is new and "
        "starts empty; hop_1m_10s was removed and its state is dropped"]
    assert reconcile_windows(settings("tumble:10s,tumble:5s")) == ("hop_1m_10s",)
    assert len(caplog.messages) == 1
    saved = json.loads((tmp_path / "orderstream" / "windows.json").read_text())
    assert saved == {"windows": ["tumble_10s", "tumble_5s"], "dropped": ["hop_1m_10s"]}
