"""Fixtures every runtime test module shares."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import runtime.backends


@pytest.fixture(autouse=True)
def scale_format(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tiny real ``scale`` backend (tests/runtime/fakes.py) as a format of its own."""
    monkeypatch.setitem(runtime.backends.FORMATS, "scale", "tests.runtime.fakes:ScaleBackend")


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()
