"""Fixtures of the drift job's tests: the spans a job records, and a model repository
whose titanic version 1 has a reference profile (``job_traffic`` draws the traffic)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from drift.profile import build_profile
from drift.references import ReferenceStore
from tests.drift.job_traffic import traffic


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[Path]:
    models = tmp_path / "models"
    (models / "titanic" / "1").mkdir(parents=True)
    reference = traffic(5000, seed=0)
    reference["out_survived"] = (reference["in_fare"] > 40).astype(np.int64)
    ReferenceStore(models).save(build_profile("titanic", "1", reference, "test"))
    yield models
