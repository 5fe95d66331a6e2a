"""Shared fixtures: the real embedded broker, started once per test session on a free port."""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.embedded import free_port, start_tansu, stop_process


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`host:port` of a tansu broker with in-memory storage, for this test session only."""
    port = free_port()
    log = Path(tmp_path_factory.mktemp("broker")) / "tansu.log"
    process = start_tansu("127.0.0.1", port, log_path=log)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        stop_process(process, timeout_s=5)


CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# As root, in a sandbox with no way out: no sandbox of Chromium's own, and none of its
# background connections, which this machine's closed network refuses.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's headless Chromium, driven by Playwright; skipped where it is not installed.

    One per test: Playwright's sync API keeps an event loop running in this thread while
    it is open, which other tests' `asyncio.run` would trip over.
    """
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (make test installs Debian's chromium where it "
                    f"can; CHROMIUM=path names another): browser tests skipped")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line for the Apache Kafka tier (tests marked `kafka`), so a CI log shows it ran
    and what it cost: `Apache Kafka tier: N passed, N failed, N skipped; N s of N s`
    (the tier's setup, call and teardown time, of every test's)."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    tier_s = all_s = 0.0
    for outcome, reports in terminalreporter.stats.items():
        for report in reports:
            duration = getattr(report, "duration", 0.0)
            all_s += duration
            if "kafka" not in getattr(report, "keywords", {}):
                continue
            tier_s += duration
            if outcome in counts and (report.when == "call" or outcome != "passed"):
                counts[outcome] += 1
    if any(counts.values()):
        terminalreporter.write_line("Apache Kafka tier: " + ", ".join(
            f"{n} {outcome}" for outcome, n in counts.items())
            + f"; {tier_s:.0f} s of {all_s:.0f} s")
