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
from app.statecheck import (
    StateDirLock,
    StateError,
    check_orders_partitions,
    check_writable,
    reconcile_windows,
)
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



def counts(orders: int, internal: int, by_buyer: int = 4) -> dict[str, int]:
    """ensure_topics' answer for the default names: the orders topic and the state's topics."""
    return {"orders": orders, "orderstream-orders-by-number": internal,
            "orderstream-dedup-changelog": internal, "orderstream-orders-by-buyer": by_buyer,
            "orderstream-aggregate-changelog": by_buyer}


START_OVER = (
    "dedup state cannot move between partition counts. To start over from the orders topic: "
    "stop every worker, then run `faust -A app reset` where each worker's DATA_DIR is")


def test_the_orders_partition_count_the_state_was_built_for_passes(tmp_path):
    settings = Settings(data_dir=tmp_path)
    (settings.state_dir / "dedup" / "7").mkdir(parents=True)
    check_orders_partitions(settings, counts(8, 8, by_buyer=4))


def test_a_changed_orders_partition_count_is_refused_naming_both_counts(tmp_path):
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(StateError) as refused:
        check_orders_partitions(settings, counts(8, 4))
    assert str(refused.value) == (
        "the orders topic orders has 8 partitions but the state was built for 4 "
        "(orderstream-dedup-changelog and orderstream-orders-by-number have 4): "
        + START_OVER.format(tmp_path / "orderstream"))
    assert "\n" not in str(refused.value)


def test_one_internal_topic_recreated_still_names_the_old_count(tmp_path):
    partitions = {**counts(2, 2), "orderstream-dedup-changelog": 6}
    with pytest.raises(StateError, match="orders has 2 partitions but the state was built for 6 "
                                         "\\(orderstream-dedup-changelog has 6\\): "):
        check_orders_partitions(Settings(data_dir=tmp_path), partitions)


def test_local_dedup_stores_past_the_orders_partitions_are_refused(tmp_path):
    # internal topics recreated with the new count, DATA_DIR kept: the stores tell
    settings = Settings(data_dir=tmp_path)
    for partition in (1, 5, 3):
        (settings.state_dir / "dedup" / str(partition)).mkdir(parents=True)
    with pytest.raises(StateError) as refused:
        check_orders_partitions(settings, counts(4, 4))
    assert str(refused.value) == (
        f"the orders topic orders has 4 partitions but the state was built for 6 "
        f"({settings.state_dir / 'dedup'} holds the store of partition 5): "
        + START_OVER.format(settings.state_dir))
    # on the embedded broker, reconcile discards such state instead
    check_orders_partitions(Settings(data_dir=tmp_path, embedded_broker=True), counts(4, 4))


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
