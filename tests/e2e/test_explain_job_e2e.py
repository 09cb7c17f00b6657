"""The explain job against a real runtime: logged titanic traffic in, every output out.

The store holds what the gateway would have logged: 300 passengers of the bundled training
set answered by titanic version 1 (three in four with a survival label sent as feedback),
20 rows of version 2 (too few to explain) and 60 rows of a model the runtime does not
serve. Version 1 has a reference profile, built as ``driftgate reference build`` does, in
a copy of the model's folder: the job reads profiles from it and asks the runtime
(``runtime_server``, serving the demo repository) for predictions. The job runs twice,
so the second run has a previous one to compare with.

What is true of the demo model (checked in process on the training set, not assumed):
version 1 is a logistic regression over the encoded inputs that leans on ``sex``, then
``pclass``; ``fare`` and ``embarked`` move its probability least, whichever way
importance is measured (prediction change, accuracy drop or mean absolute SHAP).
"""

from __future__ import annotations

import math
import re
import shutil
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from drift.job import DriftJob
from drift.profile import build_profile
from drift.references import ReferenceStore
from drift.settings import DriftSettings, WindowSettings
from driftgate.reference import build_reference
from explain.budget import PROBE_ROWS
from explain.job import ExplainJob
from explain.settings import ExplainJobSettings
from monitoring.job_results import JobResultsCollector, read_latest
from monitoring.prediction_log import (
    FeedbackRecord,
    LogSettings,
    PredictionLogWriter,
    PredictionRecord,
    connect_readonly,
)
from runtime.demo.titanic_data import DATA_DIR, FEATURES, FILES, load_titanic
from tests.e2e.processes import RunningProcess

pytestmark = pytest.mark.e2e

DOC = Path(__file__).resolve().parents[2] / "docs" / "explain.md"

END = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
PASSENGERS = 300
# Small enough to keep the runs to seconds, large enough for a stable ranking.
SETTINGS = ExplainJobSettings(
    rows=120, min_rows=50, background_rows=15, n_samples=64, repeats=3, time_limit_s=120
)


@dataclass
class Explained:
    store: Path
    repository: Path
    runtime: str
    summaries: list[str]
    run_ids: list[str]  # titanic version 1's, in order
    spans: InMemorySpanExporter
    tracer_provider: TracerProvider


def _record(
    request_id: str, seconds_before_end: int, model: str, version: str, inputs: dict[str, Any]
) -> PredictionRecord:
    return PredictionRecord(
        request_id=request_id,
        row=0,
        timestamp=END - timedelta(seconds=seconds_before_end),
        route=model,
        arm="stable",
        role="primary",
        model=model,
        version=version,
        replica="http://127.0.0.1:8001",
        dialect="simple",
        status=200,
        latency_s=0.01,
        trace_id=None,
        inputs=inputs,
        outputs={},
    )


def _passenger(columns: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    values = {name: column[i] for name, column in columns.items()}
    return {
        name: None if isinstance(v, float) and math.isnan(v) else v for name, v in values.items()
    }


def _write_traffic(store: Path) -> None:
    data = load_titanic("reference")
    assert data.survived is not None
    records: list[PredictionRecord | FeedbackRecord] = []
    for i in range(PASSENGERS):
        records.append(
            _record(f"t1-{i}", PASSENGERS - i, "titanic", "1", _passenger(data.columns, i))
        )
        if i % 4:
            label = int(data.survived[i])
            records.append(FeedbackRecord(f"t1-{i}", 0, label, END - timedelta(seconds=1)))
    for i in range(20):
        records.append(_record(f"t2-{i}", 20 - i, "titanic", "2", _passenger(data.columns, i)))
    for i in range(60):
        records.append(_record(f"g-{i}", 60 - i, "ghost", "1", {"width": float(i)}))
    writer = PredictionLogWriter(store, LogSettings())
    writer.start()
    writer.submit(records)
    writer.close()


def _job(
    explained: Explained, settings: ExplainJobSettings = SETTINGS, **kwargs: Any
) -> ExplainJob:
    tracer = explained.tracer_provider.get_tracer("test")
    return ExplainJob(
        explained.store,
        settings,
        explained.repository,
        [explained.runtime],
        tracer,
        clock=lambda: END,
        **kwargs,
    )


@pytest.fixture(scope="module")
def explained(
    runtime_server: RunningProcess, demo_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Explained]:
    home = tmp_path_factory.mktemp("explain-job")
    repository = home / "models"
    shutil.copytree(demo_repository / "titanic", repository / "titanic")
    build_reference(repository, "titanic", "1", DATA_DIR / FILES["reference"], label="Survived")
    store = home / "store"
    _write_traffic(store)
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    result = Explained(store, repository, runtime_server.url, [], [], spans, provider)
    job = _job(result)
    for _ in range(2):
        result.summaries.append(job.run())
        result.run_ids.append(read_latest(store, "explain")["titanic/1"]["run_id"])
    yield result
    provider.shutdown()


def _rows(store: Path, sql: str) -> list[tuple[Any, ...]]:
    con = connect_readonly(store)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_the_run_explains_what_it_can_and_names_the_rest(explained: Explained) -> None:
    summary = explained.summaries[0]
    assert summary.startswith("1 of 3 model versions explained (titanic/1: sex, pclass"), summary
    assert "skipped titanic/2 (20 rows in the window, fewer than 50)" in summary
    assert (
        "failed ghost/1" in summary
        and "answered 404" in summary
        and "unknown model 'ghost'" in summary
    )


def test_explanations_are_rows_of_the_catalog(explained: Explained) -> None:
    first = explained.run_ids[0]
    rows = _rows(
        explained.store,
        "select method, scoring, feature, share, rank, shift_vs_previous, shift_vs_reference, "
        f"rows, report from explanations where model = 'titanic' and run_id = '{first}'",
    )
    assert sorted((r[0], r[2]) for r in rows) == sorted(
        (method, feature) for method in ("kernel_shap", "permutation") for feature in FEATURES
    )
    by_method = {
        method: [r for r in rows if r[0] == method] for method in ("permutation", "kernel_shap")
    }
    # Three in four rows have a label: permutation is scored by the model's accuracy.
    assert {r[1] for r in by_method["permutation"]} == {"accuracy"}
    assert {r[1] for r in by_method["kernel_shap"]} == {"mean_abs_attribution"}
    for method_rows in by_method.values():
        assert sum(r[3] for r in method_rows) == pytest.approx(1.0)
        assert sorted(r[4] for r in method_rows) == [1, 2, 3, 4, 5]
        assert all(r[5] is None for r in method_rows)  # the first run: nothing before it
        assert all(r[7] == SETTINGS.rows for r in method_rows)
        assert all(r[8] == f"/reports/explain/titanic/1/{first}.html" for r in method_rows)
    # The reference (rows drawn from the profile, no labels) has Kernel SHAP to compare
    # with, but no accuracy: a drop in accuracy and a change in prediction are not comparable.
    assert all(r[6] is not None for r in by_method["kernel_shap"])
    assert all(r[6] is None for r in by_method["permutation"])


def test_the_query_in_docs_explain_md_gives_the_latest_run(explained: Explained) -> None:
    section = DOC.read_text().split("## The explain job", 1)[1]
    (query,) = re.findall(r"```sql\n(.*?)```", section, re.DOTALL)
    rows = _rows(explained.store, textwrap.dedent(query))
    assert [(method, rank) for method, rank, *_ in rows] == [
        (method, rank) for method in ("kernel_shap", "permutation") for rank in range(1, 6)
    ]
    assert {row[2] for row in rows} == set(FEATURES)


def test_sex_and_pclass_rank_above_fare_and_embarked(explained: Explained) -> None:
    rows = _rows(
        explained.store,
        f"select method, feature, rank from explanations where run_id = '{explained.run_ids[0]}'",
    )
    for method in ("permutation", "kernel_shap"):
        rank = {feature: r for m, feature, r in rows if m == method}
        assert rank["sex"] == 1 and rank["pclass"] == 2, (method, rank)
        assert max(rank["sex"], rank["pclass"]) < min(rank["fare"], rank["embarked"]), rank


def test_the_second_run_compares_with_the_first(explained: Explained) -> None:
    second = explained.run_ids[1]
    shifts = _rows(
        explained.store,
        f"select shift_vs_previous from explanations where run_id = '{second}'",
    )
    # Same traffic, same seeds: the same importance, so no shift.
    assert len(shifts) == 2 * len(FEATURES)
    assert all(shift == pytest.approx(0.0, abs=1e-12) for (shift,) in shifts)
    methods = read_latest(explained.store, "explain")["titanic/1"]["methods"]
    assert methods["kernel_shap"]["rank_correlation_vs_previous"] == pytest.approx(1.0)


def test_the_gateway_exports_the_importance_gauge(explained: Explained) -> None:
    entry = read_latest(explained.store, "explain")["titanic/1"]
    collector = JobResultsCollector(explained.store, clock=lambda: END.timestamp() + 60)
    (family,) = [m for m in collector.collect() if m.name == "driftgate_feature_importance"]
    exported = {
        s.labels["feature"]: s.value
        for s in family.samples
        if s.labels["model"] == "titanic" and s.labels["version"] == "1"
    }
    assert set(exported) == set(FEATURES)
    assert entry["method"] == "permutation"  # the first configured method is the gauge
    assert exported == pytest.approx(entry["methods"]["permutation"]["importance"])


def test_the_report_has_charts_and_is_listed(explained: Explained) -> None:
    entry = read_latest(explained.store, "explain")["titanic/1"]
    page = explained.store / entry["report"].removeprefix("/")
    latest = explained.store / "reports/explain/titanic/1/latest.html"
    assert page.read_text() == latest.read_text()
    html = latest.read_text()
    assert html.count("<svg") >= 2 + len(FEATURES)  # two importance charts, one histogram each
    assert "Attribution distributions" in html and "Permutation importance" in html
    index = (explained.store / "reports/index.html").read_text()
    assert 'href="explain/titanic/1/latest.html"' in index


def test_each_model_version_is_a_span_with_an_event_per_feature(explained: Explained) -> None:
    checks: list[ReadableSpan] = [
        s for s in explained.spans.get_finished_spans() if s.name == "explain check"
    ]
    titanic = [s for s in checks if s.attributes and s.attributes["driftgate.model"] == "titanic"]
    ghost = [s for s in checks if s.attributes and s.attributes["driftgate.model"] == "ghost"]
    assert len(titanic) == 2 and len(ghost) == 2
    events = titanic[0].events
    assert {e.attributes["driftgate.feature"] for e in events if e.attributes} == set(FEATURES)
    assert len(events) == 2 * len(FEATURES)  # per method and feature
    assert all(s.status.status_code is StatusCode.ERROR for s in ghost)


def test_the_drift_report_of_the_version_links_its_explanations(explained: Explained) -> None:
    settings = DriftSettings(window=WindowSettings(rows=PASSENGERS), min_rows=100, rounds=20)
    tracer = explained.tracer_provider.get_tracer("test")
    drift = DriftJob(explained.store, settings, explained.repository, tracer, clock=lambda: END)
    drift.run()
    html = (explained.store / "reports/drift/titanic/1/latest.html").read_text()
    assert 'href="../../../explain/titanic/1/latest.html"' in html


class Ticking:
    """A clock that moves one second each time it is read: the job's budget is then spent
    by its own steps, whatever the machine's speed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def store_copy(explained: Explained, tmp_path: Path) -> Explained:
    """The explained store copied, for runs that would change what the other tests read."""
    shutil.copytree(explained.store, tmp_path / "store")
    copied = Explained(**{**explained.__dict__, "store": tmp_path / "store"})
    return copied


def test_a_tight_time_limit_explains_fewer_rows(store_copy: Explained) -> None:
    settings = msgspec.structs.replace(SETTINGS, time_limit_s=30.0)
    summary = _job(store_copy, settings, timer=Ticking()).run()
    assert summary.startswith("1 of 3 model versions explained"), summary
    methods = read_latest(store_copy.store, "explain")["titanic/1"]["methods"]
    assert methods["permutation"]["rows"] == SETTINGS.rows  # a fixed cost, run first
    assert PROBE_ROWS <= methods["kernel_shap"]["rows"] < SETTINGS.rows


def test_a_version_reached_after_the_limit_is_skipped(store_copy: Explained) -> None:
    settings = msgspec.structs.replace(SETTINGS, time_limit_s=1.0)
    summary = _job(store_copy, settings, timer=Ticking()).run()
    assert "skipped ghost/1 (time limit), titanic/1 (time limit)" in summary


def test_a_version_whose_profile_cannot_be_read_fails_alone(
    store_copy: Explained, tmp_path: Path
) -> None:
    repository = tmp_path / "models"
    shutil.copytree(store_copy.repository, repository)
    references = ReferenceStore(repository)
    references.save(build_profile("titanic", "2", {"in_fare": np.arange(100.0)}, "test"))
    (damaged,) = references.history("titanic", "2")
    (references.folder("titanic", "2") / damaged).write_text("{not json")

    summary = _job(Explained(**{**store_copy.__dict__, "repository": repository})).run()

    assert summary.startswith("1 of 3 model versions explained (titanic/1: sex, pclass"), summary
    failed = summary.split("; failed ", 1)[1]
    assert "titanic/2 (" in failed and "not a readable reference profile" in failed
