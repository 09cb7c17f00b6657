"""Another process holding a store's catalog open read-write, as an analyst's
``duckdb.connect(path)`` does: for tests of what waits for, or refuses, a busy catalog."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from monitoring.prediction_log import catalog

HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])  # read-write: what `duckdb FILE` does without -readonly
print("holding", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


@contextmanager
def catalog_held_read_write(store: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The store's catalog (created when missing), held read-write by a child process
    whose PID this yields; opening it gives up at the first try instead of after ~4 s."""
    monkeypatch.setattr(catalog, "_CONNECT_ATTEMPTS", 1)
    held = catalog.Catalog(store)
    held.ensure()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(held.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait(timeout=10)
