"""Processes as /proc shows them: what the tests of stops, kills and zombies look at."""

import time
from pathlib import Path


def proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, parent pid, session id, start time) of a process; None once it is gone."""
    try:
        text = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # the name in () may hold spaces
    return fields[0], int(fields[1]), int(fields[3]), int(fields[19])


def is_zombie(pid: int) -> bool:
    """Dead but not reaped yet: its pid still taken."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] == "Z"


def wait_until_zombie(pid: int, timeout_s: float = 10) -> None:
    """Until the killed process is a zombie; a hang guard."""
    deadline = time.monotonic() + timeout_s
    while not is_zombie(pid):
        assert time.monotonic() < deadline, f"pid {pid} did not become a zombie"
        time.sleep(0.01)
