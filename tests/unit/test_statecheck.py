"""Start-up checks of DATA_DIR: writable, room to write, one worker, WINDOWS changes explained."""

import json
import logging
import os
import signal
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import pytest

from app import statecheck
from app.settings import Settings
from app.statecheck import StateDirLock, StateError, check_writable, reconcile_windows
from tests.procs import wait_until_zombie

ROOT = Path(__file__).resolve().parents[2]


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


HOLD_LOCK = """
import sys, time
from pathlib import Path
from app.statecheck import StateDirLock
StateDirLock(Path(sys.argv[1])).acquire()
print("held", flush=True)
time.sleep(600)
"""


def test_a_live_worker_holds_the_state_dir_and_its_death_frees_it(tmp_path):
    state_dir = tmp_path / "orderstream"
    state_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(state_dir)],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(StateError) as refused:
            StateDirLock(state_dir).acquire()
        assert str(refused.value) == (f"DATA_DIR {tmp_path} is in use by another worker (pid "
                                      f"{holder.pid}): give each worker its own DATA_DIR")
        os.kill(holder.pid, signal.SIGKILL)
        # not reaped: the holder stays a zombie, its pid taken, and the lock is free all the same
        wait_until_zombie(holder.pid)
        lock = StateDirLock(state_dir)
        lock.acquire()
        assert (state_dir / "worker.lock").read_text() == f"{os.getpid()}\n"
        lock.release()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()


def test_the_lock_is_taken_again_after_a_release(tmp_path):
    first, second = StateDirLock(tmp_path), StateDirLock(tmp_path)
    first.acquire()
    with pytest.raises(StateError, match=f"in use by another worker \\(pid {os.getpid()}\\)"):
        second.acquire()
    first.release()
    second.acquire()
    second.release()
