"""Synthetic titanic traffic for the drift job's tests, logged into a real store.

``traffic`` draws fares, ages and sexes (with a fare shift where a test wants drift);
``write_traffic`` logs them through the real ``PredictionLogWriter`` as model titanic's
rows; ``drift_job`` builds the job over the store and the model repository of the
``repository`` fixture (``conftest.py``). Traffic is synthetic so that what is shifted
is known.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from drift.job import DriftJob
from drift.profile import build_profile
from drift.references import ReferenceStore
from drift.settings import DriftSettings, WindowSettings
from monitoring.prediction_log import LogSettings, PredictionLogWriter, PredictionRecord

START = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
EXTERNAL = "http://gateway.example:8080"


def traffic(rows: int, seed: int, fare_shift: float = 0.0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "in_fare": rng.gamma(2.0, 15.0, rows) + fare_shift,
        "in_age": rng.normal(30, 12, rows),
        "in_sex": rng.choice(np.array(["male", "female"], dtype=object), rows, p=[0.65, 0.35]),
    }


def write_traffic(
    store: Path, columns: dict[str, np.ndarray], version: str, start: datetime
) -> None:
    writer = PredictionLogWriter(store, LogSettings(store=str(store)), CollectorRegistry())
    writer.start()
    rows = len(columns["in_fare"])
    writer.submit(
        [
            PredictionRecord(
                request_id=f"{version}-{start.timestamp()}-{i}",
                row=0,
                timestamp=start + timedelta(milliseconds=i),
                route="titanic",
                arm="a",
                role="primary",
                model="titanic",
                version=version,
                replica="http://127.0.0.1:8001",
                dialect="eval",
                status=200,
                latency_s=0.003,
                trace_id=None,
                inputs={name[3:]: _plain(values[i]) for name, values in columns.items()},
                outputs={"survived": int(columns["in_fare"][i] > 40)},
            )
            for i in range(rows)
        ]
    )
    writer.close()


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def drift_job(
    tmp_path: Path, spans: InMemorySpanExporter, now: datetime, **overrides: object
) -> DriftJob:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    settings = DriftSettings(window=WindowSettings(rows=2000), min_rows=500, **overrides)  # type: ignore[arg-type]
    return DriftJob(
        tmp_path / "store",
        settings,
        tmp_path / "models",
        provider.get_tracer("test"),
        clock=lambda: now,
    )


def damage_profile(models: Path, version: str) -> None:
    store = ReferenceStore(models)
    store.save(build_profile("titanic", version, traffic(1000, seed=8), "test"))
    (name,) = store.history("titanic", version)
    (store.folder("titanic", version) / name).write_text("{not json")


def write_iris(store: Path, rows: int, start: datetime) -> None:
    """Rows of the demo's iris: a list of 4 floats in, a list of 3 probabilities out."""
    rng = np.random.default_rng(13)
    writer = PredictionLogWriter(store, LogSettings(store=str(store)), CollectorRegistry())
    writer.start()
    writer.submit(
        [
            PredictionRecord(
                request_id=f"iris-{i}",
                row=0,
                timestamp=start + timedelta(milliseconds=i),
                route="iris",
                arm="a",
                role="primary",
                model="iris",
                version="1",
                replica="http://127.0.0.1:8001",
                dialect="v2",
                status=200,
                latency_s=0.003,
                trace_id=None,
                inputs={"features": [float(v) for v in rng.normal(5.0, 1.0, 4)]},
                outputs={"probabilities": [0.2, 0.3, 0.5]},
            )
            for i in range(rows)
        ]
    )
    writer.close()
