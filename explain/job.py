"""The explain job: global feature importance of every recently served model version, from
its logged traffic, and how that importance moved (attribution drift).

One run (``ExplainJob.run``, scheduled by ``monitoring.jobs.JobScheduler`` beside the drift
job):

1. Every (model, version) with rows in the last ``lookback_s`` (``drift.window.groups``;
   A/B arms and shadow copies of one version are one model version here).
2. Its traffic, in one query per version before any model is asked (so no DuckDB
   connection stays open during predict calls): the window (the last ``window.rows``
   answered rows, or those of the last ``window.last_s`` seconds, newest
   ``MAX_WINDOW_ROWS`` at most), with feedback labels from ``predictions_labeled``. Its
   features are the reference profile's inputs (``in_<feature>``), or, for a version
   without a profile, every ``in_`` column the window has values in. ``rows`` of them
   are sampled (fixed seed); from the labelled rows alone when at least ``min_rows`` of
   the window carry a numeric label. A window under ``min_rows`` rows is skipped.
3. The model: the first replica that describes the version (``explain.client``).
4. The methods over the sample (``explain.methods``): permutation importance, scored by
   the labels, then mean absolute Kernel SHAP over as many sampled rows as the time left
   allows, against a background of ``background_rows`` rows drawn from the reference
   profile (``drift.sampling``), or the version's first logged rows when it has none. A
   scoring other than the previous run's is logged as a warning, with the reason.
5. Shifts (``explain.drift``): of each method's shares against the previous run (read from
   the latest explain entry, so it survives a restart) and against the reference: the
   same methods over rows drawn from the profile, computed once per profile and kept in
   memory. Only importances of the same scoring are compared.
6. Outputs: the HTML report (``explain.report``), rows in ``explanations`` and the latest
   entry (``explain.results``), and a span "explain check" with an event per feature.

Budget: ``time_limit_s`` bounds a run. Each version gets an equal part of what is left
when its turn comes (the reference, on a cold cache, half of it), which the methods spend
as ``explain.methods`` says. A version reached after the limit is skipped; one that fails
is logged and the run goes on: the run fails when every version it tried failed (those
skipped, say for no input values, are not tried).
A run that explains some versions succeeds: ``driftgate_explain_check_failing`` (1 per
version it could not explain, 0 per version explained or skipped) says which it could not.

Hard limit: the scheduler stops a run at ``run_timeout_s`` (``ExplainJobSettings.run_limit_s``,
``monitoring.job_runner``), interrupting the run's DuckDB connection; it does so too when it
stops (the jobs process got SIGTERM). A run asked to stop explains no further version
(``monitoring.job_run.check_stop``) and makes no new runtime call. Every HTTP call to a
runtime is bounded as a whole (``monitoring.deadline_transport``): ``max(time_limit_s, 10)``
seconds, never past that limit, and cut short by a stop (it raises ``RunStopped``, the run
is stopped); httpx's own timeout bounds each read, and a runtime trickling its answer's
headers or body would otherwise hold the run for as long as it kept sending.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from drift.references import ReferenceStore
from drift.report import prune_reports
from drift.window import groups
from explain.attributions import Importance
from explain.client import RuntimePredict, RuntimePredictError, first_replica
from explain.methods import ExplainMethods
from explain.report import KIND, drift_report_link, render_report, write_report
from explain.results import (
    ExplainRun,
    MethodResult,
    previous_importances,
    publish_latest,
    with_comparisons,
    write_explanations,
)
from explain.settings import ExplainJobSettings
from explain.traffic import Traffic, read_traffic
from monitoring.deadline_transport import DeadlineTransport
from monitoring.failing_targets import FailingTargets
from monitoring.job_run import check_stop, watch_connection
from monitoring.prediction_log import connect_readonly, set_aside_damaged

log = logging.getLogger("driftgate.explain")

Clock = Callable[[], datetime]


class ExplainJob:
    """Explains every recently served model version; cheap to construct, touches no file."""

    def __init__(
        self,
        store: Path,
        settings: ExplainJobSettings,
        repository: Path,
        replicas: Sequence[str],
        tracer: trace.Tracer,
        *,
        clock: Clock = lambda: datetime.now(UTC),
        timer: Callable[[], float] = time.perf_counter,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.store = Path(store).resolve()
        self.settings = settings
        self.references = ReferenceStore(repository)
        self.replicas = tuple(replicas)
        self.tracer = tracer
        self.clock = clock
        self.timer = timer
        self.methods = ExplainMethods(settings, timer=timer)
        # A run that explained some versions succeeds: this says which ones it could not.
        self.failing = FailingTargets(
            "driftgate_explain_check_failing",
            "1 when the latest explain run could not explain the model version.",
            ["model", "version"],
            registry,
        )

    def run(self) -> str:
        """One scheduled run over every model version; returns a one-line summary. A
        damaged segment of the store is set aside and the run starts again without it."""
        return set_aside_damaged(self.store, self._run_all)

    def _run_all(self) -> str:
        deadline = self.timer() + self.settings.time_limit_s
        now = self.clock()
        con = connect_readonly(self.store)
        try:
            watch_connection(con)  # interrupted when the run passes its time limit
            since = now - timedelta(seconds=self.settings.lookback_s)
            found = sorted({(model, version) for model, version, _ in groups(con, since)})
            traffic = [self._read(con, m, v, now) for m, v in found]
        finally:
            con.close()
        explained: list[ExplainRun] = []
        skipped: list[str] = []
        failed: list[str] = []
        outcomes: dict[tuple[str, ...], bool] = dict.fromkeys(found, False)
        for position, ((model, version), read) in enumerate(zip(found, traffic, strict=True)):
            check_stop()  # asked to stop (time limit, shutdown): the rest wait for the next run
            name = f"{model}/{version}"
            left = deadline - self.timer()
            if isinstance(read, Exception):
                failed.append(f"{name} ({read})")
                outcomes[model, version] = True
                continue
            if isinstance(read, str) or left <= 0:
                skipped.append(f"{name} ({read if isinstance(read, str) else 'time limit'})")
                continue
            try:
                run = self.check(read, left / (len(found) - position))
            except RuntimePredictError as exc:  # the runtime's message says it all
                check_stop()  # a call refused because the run stops: no failure of the version
                log.warning("explaining %s failed: %s", name, exc)
                failed.append(f"{name} ({exc})")
                outcomes[model, version] = True
            except Exception as exc:  # one version's failure must not stop the others
                check_stop()
                log.exception("explaining %s failed", name)
                failed.append(f"{name} ({exc!r})")
                outcomes[model, version] = True
            else:
                if run is None:
                    skipped.append(f"{name} (time limit)")
                else:
                    explained.append(run)
        self.failing.record(outcomes)
        if failed and not explained:  # skipped versions were never tried
            raise RuntimeError(f"every model version tried failed: {'; '.join(failed)}")
        tops = [
            f"{r.model}/{r.version}: {', '.join(r.primary.importance.ranking()[:3])}"
            for r in explained
        ]
        return (
            f"{len(explained)} of {len(found)} model versions explained"
            + (f" ({'; '.join(tops)})" if tops else "")
            + (f"; skipped {', '.join(skipped)}" if skipped else "")
            + (f"; failed {'; '.join(failed)}" if failed else "")
        )

    def _read(
        self, con: duckdb.DuckDBPyConnection, model: str, version: str, now: datetime
    ) -> Traffic | str | Exception:
        """The version's traffic, why it is skipped, or why reading it failed (its profile)."""
        try:
            reference = self.references.latest(model, version)
            return read_traffic(con, self.settings, reference, model, version, now=now)
        except duckdb.Error:  # the store's, not the version's: set_aside_damaged's
            raise
        except Exception as exc:  # one version's failure must not stop the others
            log.exception("reading %s/%s to explain it failed", model, version)
            return exc

    def check(self, traffic: Traffic, budget_s: float) -> ExplainRun | None:
        """Explain one model version within ``budget_s`` seconds and publish the run; None
        when no method had the time to run."""
        started = self.timer()
        with self.tracer.start_as_current_span("explain check") as span:
            span.set_attributes(
                {"driftgate.model": traffic.model, "driftgate.version": traffic.version}
            )
            with self._first_replica(traffic.model, traffic.version) as predict:
                reference: dict[str, Importance] = {}
                if traffic.reference is not None:
                    reference = self.methods.reference(predict, traffic, budget_s / 2)
                spent = self.timer() - started
                results = self.methods.explain(predict, traffic, budget_s - spent)
                if not results:
                    span.set_attribute("driftgate.explain.skipped", "time limit")
                    return None
                run = self._run(traffic, predict, results, reference, self.timer() - started)
            span.set_attribute("driftgate.explain.predicted_rows", run.predicted_rows)
            for result in run.methods:
                shares = result.importance.shares()
                for rank, feature in enumerate(result.importance.ranking(), start=1):
                    span.add_event(
                        "explain.feature",
                        {
                            "driftgate.feature": feature,
                            "driftgate.explain.method": result.method,
                            "driftgate.explain.importance": _finite(
                                result.importance.as_dict()[feature]
                            ),
                            "driftgate.explain.share": shares[feature],
                            "driftgate.explain.rank": rank,
                        },
                    )
            return self.publish(run)

    def _first_replica(self, model: str, version: str) -> RuntimePredict:
        """The version on the first replica that describes it, each HTTP call bounded as a
        whole (a ``DeadlineTransport``); raises the last replica's error when none does."""
        call_s = max(self.settings.time_limit_s, 10.0)
        return first_replica(
            self.replicas,
            model,
            version,
            output=self.settings.output,
            index=self.settings.index,
            timeout_s=call_s,
            transport=lambda: DeadlineTransport(call_s),
        )

    def publish(self, run: ExplainRun) -> ExplainRun:
        """Report, store rows and latest entry, in that order (the rows link the report)."""
        drift_link = drift_report_link(self.store, run.model, run.version)
        url = write_report(self.store, run, render_report(run, drift_link=drift_link))
        run = replace(run, report=url)
        write_explanations(self.store, run)
        publish_latest(self.store, run)
        prune_reports(self.store, keep=self.settings.keep_reports, kind=KIND)
        return run

    def _run(
        self,
        traffic: Traffic,
        predict: RuntimePredict,
        results: list[MethodResult],
        reference: dict[str, Importance],
        elapsed_s: float,
    ) -> ExplainRun:
        previous = previous_importances(self.store, traffic.model, traffic.version)
        self.methods.note_scoring(traffic, results, previous)
        compared = with_comparisons(results, previous=previous, reference=reference)
        now = self.clock()
        return ExplainRun(
            run_id=f"{now.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}",
            timestamp=now,
            model=traffic.model,
            version=traffic.version,
            window_rows=traffic.window_rows,
            labelled_rows=traffic.labelled_rows,
            reference_id=None if traffic.reference is None else traffic.reference[0],
            replica=predict.base_url,
            output=predict.explained_output(),
            methods=tuple(compared),
            predict_calls=predict.calls,
            predicted_rows=predict.rows,
            elapsed_s=elapsed_s,
            time_limit_s=self.settings.time_limit_s,
        )


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -1.0
