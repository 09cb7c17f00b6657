"""The explain job over a real store, asking a small runtime on a loopback port.

The runtime speaks the two calls the job makes (``describe`` and ``eval`` in the runtime's
column form) for a model of six numeric inputs whose probability is a logistic function
of their weighted sum; the traffic is logged by the real ``PredictionLogWriter``. The
version has no reference profile, so its features are the logged ``in_`` columns and its
background its first rows. The full job against the real runtime is
``tests/e2e/test_explain_job_e2e.py``.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from drift.profile import build_profile
from drift.references import ReferenceStore
from driftgate.jobs import build_jobs
from explain.job import ExplainJob
from explain.kernel_shap import min_samples
from explain.settings import ExplainJobSettings
from monitoring.jobs import JobScheduler
from monitoring.prediction_log import (
    FeedbackRecord,
    LogSettings,
    PredictionLogWriter,
    PredictionRecord,
    run_sql,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "explain.md"
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
WEIGHTS = {"f0": 2.0, "f1": -1.0, "f2": 0.5, "f3": 0.0, "f4": 1.5, "f5": -0.5}
PATH = "/v1/models/linear6/versions/1"


def _probability(inputs: dict[str, Any]) -> float:
    total = sum(weight * (inputs[name] or 0.0) for name, weight in WEIGHTS.items())
    return 1.0 / (1.0 + math.exp(-total))


class Runtime:
    """``describe`` and ``eval`` of model linear6 version 1 (and of the other ``versions``
    added), on a free loopback port."""

    def __init__(self) -> None:
        describe = {
            "model": "linear6",
            "version": "1",
            "inputs": [{"name": n, "datatype": "FP64", "shape": [-1]} for n in WEIGHTS],
            "outputs": [{"name": "probability", "datatype": "FP64", "shape": [-1]}],
        }
        self.versions = {"1"}
        served = self.versions
        #: Set: eval answers trickle in, a byte every 50 ms (each read is quick, the call endless).
        self.trickle = threading.Event()
        #: Set: the same for the header lines of eval answers.
        self.trickle_headers = threading.Event()
        #: Set once an eval answer has started to trickle.
        self.trickling = threading.Event()
        #: Set: every other row's answer is one ulp higher, as a vectorised runtime's
        #: answers to the same row can differ by batch position.
        self.wobble = threading.Event()
        trickle, trickle_headers, trickling = self.trickle, self.trickle_headers, self.trickling
        wobble = self.wobble

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                known = {f"{PATH[:-1]}{v}/describe" for v in served}
                self._answer(200 if self.path in known else 404, describe)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if trickle.is_set():
                    self._trickle()
                    return
                if trickle_headers.is_set():
                    self._trickle_headers()
                    return
                columns = list(body.values())
                rows = [
                    dict(zip(body, values, strict=True)) for values in zip(*columns, strict=True)
                ]
                answers = [_probability(row) for row in rows]
                if wobble.is_set():
                    answers = [
                        math.nextafter(p, 2.0) if i % 2 else p for i, p in enumerate(answers)
                    ]
                outputs = {"probability": answers}
                self._answer(200, {"model": "linear6", "version": "1", "outputs": outputs})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _trickle(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self._send_slowly(1000)

            def _trickle_headers(self) -> None:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                self._send_slowly(1000)

            def _send_slowly(self, size: int) -> None:
                trickling.set()
                try:
                    for _ in range(size):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.05)
                except OSError:  # the client gave up
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    server = Runtime()
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    """200 rows of linear6 version 1, logged in the minutes before ``NOW``."""
    store = tmp_path / "store"
    _log(store, "1")
    (tmp_path / "models").mkdir()
    return store


def _log(store: Path, version: str, *, same: dict[str, float] | None = None) -> None:
    """200 rows of linear6 ``version`` in the minutes before ``NOW``: random inputs, or
    ``same`` in every row (one request sent again and again)."""
    rng = np.random.default_rng(0)
    writer = PredictionLogWriter(store, LogSettings(store=str(store)), CollectorRegistry())
    writer.start()
    records = []
    for i in range(200):
        inputs = dict(same) if same else {name: float(rng.normal()) for name in WEIGHTS}
        records.append(
            PredictionRecord(
                request_id=f"r-{version}-{i}",
                row=0,
                timestamp=NOW - timedelta(seconds=300 - i),
                route="linear6",
                arm="a",
                role="primary",
                model="linear6",
                version=version,
                replica="http://127.0.0.1:8001",
                dialect="simple",
                status=200,
                latency_s=0.002,
                trace_id=None,
                inputs=inputs,
                outputs={"probability": _probability(inputs)},
            )
        )
    writer.submit(records)
    writer.close()


def _job(
    store: Path, runtime: Runtime, registry: CollectorRegistry | None = None, **overrides: Any
) -> ExplainJob:
    settings = ExplainJobSettings(
        rows=20, min_rows=10, background_rows=5, repeats=2, time_limit_s=60, **overrides
    )
    return ExplainJob(
        store,
        settings,
        store.parent / "models",
        [runtime.url],
        trace.NoOpTracer(),
        clock=lambda: NOW,
        registry=registry,
    )


def test_n_samples_below_what_the_features_need_is_raised_with_a_warning(
    store: Path, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """Kernel SHAP refused 4 coalitions for 6 features, so every run failed every version
    (the feature count is the model's, unknown when the settings are read)."""
    job = _job(store, runtime, n_samples=4)
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
        summary = _job(store, runtime, n_samples=min_samples(len(WEIGHTS))).run()

    assert summary.startswith("1 of 1 model versions explained"), summary
    assert "n_samples" not in caplog.text


def test_a_window_of_one_request_sent_again_and_again_is_explained(
    tmp_path: Path, runtime: Runtime
) -> None:
    """A smoke test or health check sends the same request over and over: every row's SHAP
    values then differ by rounding at most, and drawing their histogram raised "Too many
    bins for data range", failing every version on every run."""
    store = tmp_path / "store"
    _log(store, "1", same={name: 0.1 * (j + 1) for j, name in enumerate(WEIGHTS)})
    training = np.random.default_rng(1).normal(size=(500, len(WEIGHTS)))
    columns = {f"in_{name}": training[:, j] for j, name in enumerate(WEIGHTS)}
    ReferenceStore(tmp_path / "models").save(build_profile("linear6", "1", columns, "test"))
    runtime.wobble.set()

    summary = _job(store, runtime).run()

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
    _log(store, "2")  # served traffic, but the runtime no longer has version 2
    registry = CollectorRegistry()
    job = _job(store, runtime, registry, methods=("permutation",))

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


def cut_at_the_time_limit(logged: str) -> bool:
    """The run ended at its 1.5 s limit: the runner's limit fired, or, a moment before it,
    the call's own deadline (``DeadlineTransport``: the time the run has left) ended the call
    and the run failed with it; which comes first depends on the machine's timing."""
    return (
        "job explain ran past its time limit of 1.5 s" in logged
        or "the answer did not arrive within 1." in logged
    )


def test_a_runtime_that_trickles_its_answer_is_cut_off_at_the_runs_time_limit(
    store: Path, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """httpx's timeout bounds each read, so an answer arriving a byte at a time held the
    run for as long as the runtime kept sending: every job of the process waited."""
    runtime.trickle.set()
    jobs = JobScheduler(CollectorRegistry(), trace.NoOpTracer())
    jobs.stop_grace_s = 3.0
    jobs.add("explain", 300, _job(store, runtime).run, timeout_s=1.5)
    started = time.monotonic()

    assert not jobs.run_once(jobs.jobs[0])

    assert jobs.jobs[0].straggler is None  # the call itself ended, not only the wait
    assert time.monotonic() - started < 4.5
    assert cut_at_the_time_limit(caplog.text), caplog.text


def test_a_runtime_that_trickles_its_answers_headers_is_cut_off_at_the_runs_time_limit(
    store: Path, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """The call's deadline was looked at between chunks of the body only: headers arriving
    a byte at a time held the run past its limit and its grace, and it was left running."""
    runtime.trickle_headers.set()
    jobs = JobScheduler(CollectorRegistry(), trace.NoOpTracer())
    jobs.stop_grace_s = 3.0
    jobs.add("explain", 300, _job(store, runtime).run, timeout_s=1.5)
    started = time.monotonic()

    assert not jobs.run_once(jobs.jobs[0])

    assert jobs.jobs[0].straggler is None  # the call itself ended, not only the wait
    assert time.monotonic() - started < 4.5
    assert cut_at_the_time_limit(caplog.text), caplog.text


def test_a_stop_ends_the_runtime_call_under_way_and_the_run_counts_as_stopped(
    store: Path, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """A stop (SIGTERM to ``driftgate jobs``) reached a runtime call only when it returned:
    with a runtime trickling its answer, the run was left running 5 s later."""
    runtime.trickle.set()
    registry = CollectorRegistry()
    jobs = JobScheduler(registry, trace.NoOpTracer())
    jobs.add("explain", 300, _job(store, runtime).run, timeout_s=3600)
    jobs.start()
    assert runtime.trickling.wait(10)
    began = time.monotonic()

    jobs.stop()

    assert time.monotonic() - began < 2
    assert jobs.jobs[0].straggler is None  # the run returned
    stopped = {"job": "explain", "outcome": "stopped"}
    assert registry.get_sample_value("driftgate_job_runs_total", stopped) == 1
    assert "job explain was stopped with the scheduler" in caplog.text
    assert "left running" not in caplog.text


# --- labels: how permutation importance is scored -------------------------------------------


def _label(store: Path, labels: dict[int, float]) -> None:
    """Feedback for rows of version 1 (``r-1-<i>``), by row number."""
    writer = PredictionLogWriter(store, LogSettings(store=str(store)), CollectorRegistry())
    writer.start()
    writer.submit(
        [
            FeedbackRecord(request_id=f"r-1-{i}", row=None, label=label, timestamp=NOW)
            for i, label in labels.items()
        ]
    )
    writer.close()


def _labelled_job(store: Path, runtime: Runtime) -> ExplainJob:
    """Every labelled row sampled (up to 40), so a stray label is in the sample."""
    settings = ExplainJobSettings(
        rows=40, min_rows=10, background_rows=5, repeats=2, time_limit_s=60
    )
    return ExplainJob(
        store,
        settings,
        store.parent / "models",
        [runtime.url],
        trace.NoOpTracer(),
        clock=lambda: NOW,
    )


def _permutation_rows(store: Path) -> list[tuple[Any, ...]]:
    """(scoring, shift_vs_previous is null) of the permutation rows, by run, oldest first."""
    return run_sql(
        store,
        "select distinct timestamp, scoring, shift_vs_previous is null from explanations "
        "where method = 'permutation' order by timestamp",
    ).rows


def test_one_stray_non_integer_label_is_left_out_not_a_change_of_scoring(
    store: Path, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    """One 0.7 among 0/1 labels made the run score by mean absolute error, silently: a
    new scale for driftgate_feature_importance, and no shift against the previous run."""
    _label(store, {i: float(i % 2) for i in range(39)} | {39: 0.7})
    job = _labelled_job(store, runtime)
    with caplog.at_level(logging.WARNING, logger="driftgate.explain"):
        job.run()

    assert [row[1] for row in _permutation_rows(store)] == ["accuracy"]
    stray = [r.getMessage() for r in caplog.records if "strays" in r.getMessage()]
    assert stray == [
        "explain linear6 version 1: 1 of 40 numeric labels are not whole numbers (such as "
        "0.7): left out as strays (at most 5% of the labels), so the permutation importance "
        "is scored by accuracy against the other labels"
    ]
    assert stray[0] in DOC.read_text()  # the line docs/explain.md shows


def test_a_change_of_scoring_is_a_warning_naming_both_and_why(
    store: Path, runtime: Runtime, caplog: pytest.LogCaptureFixture
) -> None:
    _label(store, {i: float(i % 2) for i in range(40)})
    job = _labelled_job(store, runtime)
    job.run()
    _label(store, dict.fromkeys(range(40, 50), 0.5))  # 10 of 50: numbers, not strays
    job.clock = lambda: NOW + timedelta(seconds=1)  # a later run
    with caplog.at_level(logging.WARNING, logger="driftgate.explain"):
        job.run()

    runs = _permutation_rows(store)
    assert [(scoring, unshifted) for _, scoring, unshifted in runs] == [
        ("accuracy", True),  # no previous run
        ("neg_mae", True),  # not comparable with the previous run's accuracy
    ]
    changed = [r.getMessage() for r in caplog.records if "scored by neg_mae now" in r.getMessage()]
    assert changed == [
        "explain linear6 version 1: permutation importance is scored by neg_mae now, by "
        "accuracy in the previous run, because 10 of 50 numeric labels are not whole numbers "
        "(such as 0.5), more than the 5% left out as strays; driftgate_feature_importance "
        "changes scale and this run has no shift_vs_previous"
    ]
    assert [r.levelno for r in caplog.records if r.getMessage() in changed] == [logging.WARNING]
    assert changed[0] in DOC.read_text()
