"""Pipelines that run as a subprocess of bench/pipelines/ and report through a status file:
idiomatic faust, the bare faust agent. (Quix Streams is timed from outside: bench/quix.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.harness import (
    POLL_S,
    ROOT,
    BenchContext,
    RunResult,
    failed,
    log_tail,
    new_run,
    progress,
    say,
    start_process,
    stop_child,
    venv_command,
)
from bench.pipelines.common import ChildConfig, read_status


def faust_worker(module: str) -> list[str]:
    """`faust -A <module> worker -l warn --without-web` (port 6066 may be taken)."""
    return [venv_command("faust"), "-A", module, "worker", "-l", "warn", "--without-web"]


def python_module(module: str) -> list[str]:
    """`python -m <module>` with the bench's own interpreter."""
    return [sys.executable, "-m", module]


def watch_child(process: subprocess.Popen[bytes], config: ChildConfig, ctx: BenchContext,
                label: str) -> dict[str, Any] | str:
    """Poll the status file until the child says it finished; the error text otherwise."""
    status: dict[str, Any] | None = None
    last_change = time.monotonic()
    with progress(label, ctx.orders) as report:
        while True:
            latest = read_status(config.status_path)
            if latest != status:
                status, last_change = latest, time.monotonic()
            if status is not None and status["finished"]:
                report(status["counted"], f"{status['consumed']:,} read")
                return status
            if process.poll() is not None:
                return f"exited with code {process.returncode} before finishing"
            if time.monotonic() - last_change > ctx.stall_timeout_s:
                return f"no progress for {ctx.stall_timeout_s:.0f}s (status {status})"
            if status is not None:
                report(status["counted"], f"{status['consumed']:,} read")
            time.sleep(POLL_S)


def child_result(status: dict[str, Any], target: int) -> RunResult:
    """orders/s from the child's own clock, if its error is none and every check holds."""
    extra = {"checks": status["checks"], "consumed": status["consumed"],
             "counted": status["counted"]}
    wrong = [f"{name}: {got:,}, expected {expected:,}"
             for name, (got, expected) in status["checks"].items() if got != expected]
    if status["error"] or wrong or not status["seconds"]:
        return failed(status["error"] or "; ".join(wrong) or "no time measured", **extra)
    return RunResult(orders_per_s=target / status["seconds"], seconds=status["seconds"],
                     extra=extra)


def run_child(ctx: BenchContext, run_index: int, label: str,
              command: Callable[[str], list[str]], module: str) -> RunResult:
    """One run of `module` (fresh group, state dir and status file), timed by the child."""
    run_dir, config = new_run(ctx, module.rsplit(".", 1)[-1].replace("_", "-"))
    env = {**os.environ, **config.to_env(), "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    log_path = run_dir / "child.log"
    process = start_process(command(module), env, log_path)
    try:
        outcome = watch_child(process, config, ctx, f"{label} run {run_index + 1}")
    finally:
        code = stop_child(process)
    result = failed(outcome) if isinstance(outcome, str) else child_result(outcome, ctx.orders)
    result.extra.update(group=config.group, log=str(log_path), exit_code=code)
    if not result.ok:
        say(f"{label} run {run_index + 1} failed: {result.error}; log {log_path}:\n"
            f"{log_tail(log_path)}")
    return result


def run_faust_tables(ctx: BenchContext, run_index: int) -> RunResult:
    """Idiomatic faust: Tables written per order (bench/pipelines/faust_tables.py)."""
    return run_child(ctx, run_index, "idiomatic faust", faust_worker,
                     "bench.pipelines.faust_tables")


def run_faust_bare(ctx: BenchContext, run_index: int) -> RunResult:
    """A faust agent that only decodes and counts (bench/pipelines/faust_bare.py)."""
    return run_child(ctx, run_index, "bare faust agent", faust_worker,
                     "bench.pipelines.faust_bare")
