"""Fixtures of the explain job's tests: the linear6 runtime on a loopback port, and a store
holding its traffic (``linear6``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.explain.linear6 import Runtime, log_traffic


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    server = Runtime()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """200 rows of linear6 version 1, logged in the minutes before ``NOW``."""
    store = tmp_path / "store"
    log_traffic(store, "1")
    (tmp_path / "models").mkdir()
    return store
