"""The runtime keeps loaded models out of full garbage collections (runtime/heap.py).

A scan that loads or retires a model settles the heap (one collection, then ``gc.freeze``),
and so does the first scan after a busy retired version's last request unloaded it; a
scan that changes nothing leaves it alone, and nothing is frozen unless the process's
owner (``driftgate runtime``) enabled it. The real ScaleBackend of tests/runtime/fakes.py
stands in for a framework.
"""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime import heap
from runtime.repository import ModelRepository
from tests.runtime.test_repository import add_version


@pytest.fixture
def settles(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Settling enabled for one test and counted; the test process is thawed afterwards."""
    calls: list[float] = []
    real = heap.settle

    def counted() -> float:
        calls.append(real())
        return calls[-1]

    enabled = threading.Event()
    enabled.set()
    monkeypatch.setattr(heap, "_enabled", enabled)
    monkeypatch.setattr(heap, "settle", counted)
    yield calls
    gc.unfreeze()


def test_settling_is_off_unless_the_process_enables_it() -> None:
    before = gc.get_freeze_count()

    assert heap.settle() == 0.0
    assert gc.get_freeze_count() == before


def test_a_scan_that_loads_a_model_freezes_the_heap_once(tmp_path: Path, settles) -> None:
    add_version(tmp_path, "double", 1, "2")
    repository = ModelRepository(tmp_path)
    try:
        repository.scan()
        assert len(settles) == 1
        assert gc.get_freeze_count() > 0

        repository.scan()  # nothing changed on disk
        assert len(settles) == 1

        add_version(tmp_path, "double", 2, "3")  # a new version loads, the old one retires
        repository.scan()
        assert len(settles) == 2
        assert repository.resolve("double").version == 2
    finally:
        repository.close()


def test_a_version_retired_while_busy_is_freed_by_the_scan_after_its_last_request(
    tmp_path: Path, settles
) -> None:
    add_version(tmp_path, "double", 1, "2")
    repository = ModelRepository(tmp_path)
    try:
        repository.scan()
        held = repository.acquire("double")  # a request in flight on version 1
        backend = held.backend
        backend.cycle = backend  # type: ignore[union-attr]  # frameworks hold cycles
        alive = weakref.ref(backend)
        del backend

        add_version(tmp_path, "double", 2, "3")
        repository.scan()  # 2 loads, 1 retires but serves on, so it is frozen with the rest
        assert len(settles) == 2

        repository.release(held)  # the last request: version 1 unloads
        del held
        gc.collect()
        assert alive() is not None  # frozen objects are skipped, garbage or not

        repository.scan()  # nothing new on disk, but an unload since the last settle
        assert len(settles) == 3
        assert alive() is None

        repository.scan()
        assert len(settles) == 3
    finally:
        repository.close()


class _Node:
    me: _Node


def test_settling_frees_what_an_earlier_freeze_kept_alive(settles) -> None:
    node = _Node()
    node.me = node  # a cycle: only a full collection frees it
    alive = weakref.ref(node)
    gc.freeze()
    del node
    gc.collect()
    assert alive() is not None  # frozen objects are skipped, garbage or not

    heap.settle()  # as after a model was retired

    assert alive() is None
