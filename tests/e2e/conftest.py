"""Shared runtime processes for the end-to-end tests (one per test session)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.processes import RunningProcess, driftgate_process, free_port


@pytest.fixture(scope="session")
def runtime_server(
    demo_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningProcess]:
    """A real ``driftgate runtime`` serving the demo repository on a loopback port."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("runtime") / "runtime.log"
    args = [
        "runtime",
        "--repository",
        str(demo_repository),
        "--port",
        str(port),
        "--poll-interval",
        "0",
    ]
    with driftgate_process(args, port, log_path=log_path) as running:
        yield running
