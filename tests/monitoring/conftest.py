"""Fixtures for prediction-log tests: a temporary store, a registry, a started writer.

Everything runs for real: Parquet files in a temporary store, DuckDB reading them,
subprocesses where another process matters (readers, SIGKILL).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitoring.prediction_log import LogSettings, PredictionLogWriter


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def writer(store: Path, registry: CollectorRegistry) -> Iterator[PredictionLogWriter]:
    """A started writer with a short interval; closed after the test."""
    log_writer = PredictionLogWriter(store, LogSettings(flush_interval_s=0.1), registry)
    log_writer.start()
    yield log_writer
    log_writer.close()
