"""The explain job over a real store, asking a small runtime on a loopback port.

The runtime (``tests/explain/linear6.py``) answers for a model of six numeric inputs
whose probability is a logistic function of their weighted sum; the traffic is logged by
the real ``PredictionLogWriter``. The version has no reference profile, so its features
are the logged ``in_`` columns and its background its first rows. A run's time limit and
stop are ``test_job_time_limits.py``, how labels score permutation importance
``test_job_labels.py``. The full job against the real runtime is
``tests/e2e/test_explain_job_e2e.py``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from drift.profile import build_profile
from drift.references import ReferenceStore
from driftgate.jobs import build_jobs
from explain.kernel_shap import min_samples
from monitoring.prediction_log import run_sql
from tests.explain.linear6 import DOC, WEIGHTS, Runtime, explain_job, log_traffic


def test_n_samples_below_what_the_features_need_is_raised_with_a_warning(
    store: Path, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """Kernel SHAP refused 4 coalitions for 6 features, so every run failed every version
    (the feature count is the model's, unknown when the settings are read)."""
    job = explain_job(store, runtime, n_samples=4)
    with caplog.at_level(logging.WARNING, logger="driftgate.explain"):
        summary = job.run()
        job.run()  # said once per process, not every run

    assert summary.startswith("1 of 1 model versions explained"), summary
    methods = run_sql(store, "select distinct method from explanations order by method").rows
    assert methods == [("kernel_shap",), ("permutation",)]
    warnings = [r.getMessage() for r in caplog.records if "n_samples" in r.getMessage()]
    assert warnings == [
        "explain.n_samples 4 is too few for the 6 input features of linear6 version 1: "
        "Kernel SHAP needs at least 12 coalitions per row, so it uses 12 "
        "(set explain.n_samples to 12 or more to silence this)"
    ]
    assert warnings[0] in DOC.read_text()  # the line docs/explain.md shows


def test_enough_n_samples_are_used_as_set_without_a_warning(
    store: Path, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="driftgate.explain"):
        summary = explain_job(store, runtime, n_samples=min_samples(len(WEIGHTS))).run()

    assert summary.startswith("1 of 1 model versions explained"), summary
    assert "n_samples" not in caplog.text


def test_a_window_of_one_request_sent_again_and_again_is_explained(
    tmp_path: Path, runtime: Runtime
) -> None:
    """A smoke test or health check sends the same request over and over: every row's SHAP
    values then differ by rounding at most, and drawing their histogram raised "Too many
    bins for data range", failing every version on every run."""
    store = tmp_path / "store"
    log_traffic(store, "1", same={name: 0.1 * (j + 1) for j, name in enumerate(WEIGHTS)})
    training = np.random.default_rng(1).normal(size=(500, len(WEIGHTS)))
    columns = {f"in_{name}": training[:, j] for j, name in enumerate(WEIGHTS)}
    ReferenceStore(tmp_path / "models").save(build_profile("linear6", "1", columns, "test"))
    runtime.wobble.set()

    summary = explain_job(store, runtime).run()

    assert summary.startswith("1 of 1 model versions explained"), summary
    methods = run_sql(store, "select distinct method from explanations order by method").rows
    assert methods == [("kernel_shap",), ("permutation",)]
    assert (store / "reports" / "explain" / "linear6" / "1" / "latest.html").exists()


def test_the_version_a_successful_run_could_not_explain_is_exported(
    store: Path, runtime: Runtime
) -> None:
    """A run that explained some versions counts as a good run, so on-call would not see
    that one version's importance is no longer computed: ``driftgate_explain_check_failing``
    says which (alert DriftgateExplainCheckFailing)."""
    log_traffic(store, "2")  # served traffic, but the runtime no longer has version 2
    registry = CollectorRegistry()
    job = explain_job(store, runtime, registry, methods=("permutation",))

    def failing(version: str) -> float | None:
        labels = {"model": "linear6", "version": version}
        return registry.get_sample_value("driftgate_explain_check_failing", labels)

    summary = job.run()
    assert summary.startswith("1 of 2 model versions explained"), summary
    assert "; failed linear6/2 (" in summary
    assert (failing("1"), failing("2")) == (0.0, 1.0)

    runtime.versions.add("2")
    assert job.run().startswith("2 of 2 model versions explained")
    assert (failing("1"), failing("2")) == (0.0, 0.0)

    runtime.versions.clear()  # a run that fails as a whole still says which versions
    with pytest.raises(RuntimeError, match="every model version tried failed"):
        job.run()
    assert (failing("1"), failing("2")) == (1.0, 1.0)


def test_the_jobs_process_exports_the_explain_jobs_failing_versions(
    store: Path, runtime: Runtime
) -> None:
    config = store.parent / "gateway.yaml"
    config.write_text("auth: {enabled: false}\nlog: {store: store}\n")
    process = build_jobs(config, replicas=[runtime.url], only=["explain"])
    assert "driftgate_explain_check_failing" in {m.name for m in process.registry.collect()}
