"""A fixture for tests that call ``driftgate.cli.main`` in-process."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def root_logging() -> Iterator[None]:
    """``main`` configures the root logger with this test's captured stderr; put it back,
    or later log lines from other threads go to a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
