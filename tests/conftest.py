"""Shared fixtures: the real embedded broker, started once per test session on a free port."""

from collections.abc import Iterator
from pathlib import Path

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
