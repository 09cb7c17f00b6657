"""The drift job: every model version (and A/B arm) with recent traffic, checked against its
reference over one window of the log, with every output written.

One run (``DriftJob.run``, scheduled by ``monitoring.jobs.JobScheduler``):

1. ``groups``: (model, version, arm) with rows in the last ``lookback_s``.
2. The reference: the latest profile beside the model version (``ReferenceStore``), or,
   when there is none, one built from the version's first ``auto_reference_rows`` logged
   rows and saved there (so it is built once and reused); a version logging nothing a
   profile describes (tensors only) is skipped, as one with too few rows is.
3. The window (the last N rows or the last T seconds), scanned in one SQL query into
   histograms over the reference's bins (``drift.window``); fewer than ``min_rows`` rows:
   no verdict.
4. Tests (``drift.window_evaluation``, with ``drift.calibration``): one per input feature
   and output, picked by the default table, at alpha corrected for the number of tests
   (Bonferroni), the joint PCA test, and, once labels exist, realised performance against
   the reference's plus Page-Hinkley on the error stream.
5. Outputs: the HTML report, rows in ``drift_results``, the latest-results file that the
   gateway's ``/metrics`` turns into gauges, a span event per test, and the webhook: the
   changes since what its receiver holds as firing, which the store keeps
   (``drift.alert_state``) so that a restart or the next ``--once`` process goes on from it.
6. Versions gone quiet: what the receiver holds as firing for a (model, version, arm)
   with no answered request in the last ``lookback_s`` is resolved, the annotation
   saying so (``drift.quiet``), and forgotten. No run visits such a
   version any more, so nothing else would ever resolve it; a version that serves again
   is checked again and fires again if it still drifts.

A run asked to stop (``monitoring.job_run``: past its time limit, or the jobs process
stopping) checks no further version and posts no further alert: an alert not posted
leaves what the store says the receiver holds unchanged, so the next run sends it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import duckdb
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from drift.alert_state import read_firing, record_firing
from drift.alerts import WebhookNotifier
from drift.findings import DriftRun, Window
from drift.log_profile import NothingToProfile, profile_from_log
from drift.profile import ReferenceProfile
from drift.quiet import resolve_quiet
from drift.references import ReferenceStore
from drift.report import prune_reports, render_report, write_report
from drift.results import latest_key, publish_latest, write_results
from drift.settings import DriftSettings
from drift.verdict import TestSettings
from drift.window import groups, window_bounds
from drift.window_evaluation import Clock, Slice, evaluate_window
from monitoring.failing_targets import FailingTargets
from monitoring.job_run import check_stop
from monitoring.prediction_log import connect_readonly, set_aside_damaged

log = logging.getLogger("driftgate.drift")


class DriftJob:
    """Checks every recently served model version; cheap to construct, touches no file."""

    def __init__(
        self,
        store: Path,
        settings: DriftSettings,
        repository: Path,
        tracer: trace.Tracer,
        *,
        notifier: WebhookNotifier | None = None,
        clock: Clock = lambda: datetime.now(UTC),
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.store = Path(store).resolve()
        self.settings = settings
        self.tests: TestSettings = settings.tests()
        self.references = ReferenceStore(repository)
        self.tracer = tracer
        self.notifier = notifier
        self.clock = clock
        # A run that checked some versions succeeds: this says which ones it could not.
        self.failing = FailingTargets(
            "driftgate_drift_check_failing",
            "1 when the latest drift run could not check the model version and arm.",
            ["model", "version", "arm"],
            registry,
        )

    def run(self) -> str:
        """One scheduled run over every group; returns a one-line summary. A damaged
        segment of the store is set aside and the run starts again without it. A version
        that fails is logged, named in the summary and set to 1 in
        ``driftgate_drift_check_failing``; the run fails only when every version tried did."""
        return set_aside_damaged(self.store, self._run)

    def _run(self) -> str:
        now = self.clock()
        con = connect_readonly(self.store)
        try:
            found = groups(con, now - timedelta(seconds=self.settings.lookback_s))
            runs, failed = [], []
            outcomes: dict[tuple[str, ...], bool] = {}
            for model, version, arm in found:
                check_stop()  # time limit or shutdown: the rest wait for the next run
                try:
                    runs.append(self.check(con, model, version, arm, now))
                    outcomes[model, version, arm] = False
                except duckdb.Error:  # the store's, not the version's: set_aside_damaged's
                    raise
                except Exception as exc:  # one version's failure must not stop the others
                    check_stop()
                    log.exception("checking %s/%s arm %s failed", model, version, arm)
                    failed.append(f"{model}/{version} arm {arm} ({exc})")
                    outcomes[model, version, arm] = True
            check_stop()
            quiet = (
                resolve_quiet(
                    self.store,
                    self.notifier,
                    con,
                    set(found),
                    now=now,
                    lookback_s=self.settings.lookback_s,
                )
                if self.notifier is not None
                else []
            )
        finally:
            con.close()
        self.failing.record(outcomes)
        done = [r for r in runs if r is not None]
        if failed and not done:  # skipped versions were never tried
            raise RuntimeError(f"every model version tried failed: {'; '.join(failed)}")
        drifted = [f"{r.model}/{r.version}:{f.feature}" for r in done for f in r.drifted]
        return (
            f"{len(done)} of {len(found)} model versions checked; "
            f"drifted: {', '.join(drifted) if drifted else 'none'}"
            + (f"; failed: {'; '.join(failed)}" if failed else "")
            + (f"; alerts resolved as quiet: {', '.join(quiet)}" if quiet else "")
        )

    def check(
        self, con: duckdb.DuckDBPyConnection, model: str, version: str, arm: str, now: datetime
    ) -> DriftRun | None:
        """Check one model version and arm; None when there is nothing to judge yet."""
        with self.tracer.start_as_current_span("drift check") as span:
            span.set_attributes(
                {"driftgate.model": model, "driftgate.version": version, "driftgate.arm": arm}
            )
            try:
                reference = self.reference(con, model, version)
            except NothingToProfile as nothing:  # a tensor model: normal, not a failure
                span.set_attribute("driftgate.drift.skipped", "nothing to test")
                log.info("skipped %s/%s arm %s: %s", model, version, arm, nothing)
                return None
            if reference is None:
                span.set_attribute("driftgate.drift.skipped", "no reference")
                log.info(
                    "skipped %s/%s arm %s: no reference profile, none built from the log "
                    "(auto_reference_rows: %d)",
                    model,
                    version,
                    arm,
                    self.settings.auto_reference_rows,
                )
                return None
            reference_id, profile = reference
            window = window_bounds(
                con,
                model,
                version,
                arm,
                end=now,
                last_s=self.settings.window.last_s,
                rows=self.settings.window.rows,
            )
            if window is None or window.rows < self.settings.min_rows:
                span.set_attribute("driftgate.drift.skipped", "window too small")
                log.info(
                    "skipped %s/%s arm %s: window of %d rows, under min_rows %d",
                    model,
                    version,
                    arm,
                    0 if window is None else window.rows,
                    self.settings.min_rows,
                )
                return None
            run = self.evaluate_window(
                con, profile, reference_id, Slice(model, version, arm), window
            )
            for finding in run.findings:
                span.add_event(
                    "drift.test",
                    {
                        "driftgate.feature": finding.feature,
                        "driftgate.drift.statistic": finding.result.statistic,
                        "driftgate.drift.score": _finite(finding.result.score),
                        "driftgate.drift.threshold": finding.result.threshold,
                        "driftgate.drift.drifted": finding.result.drifted,
                    },
                )
            span.set_attribute("driftgate.drift.drifted", [f.feature for f in run.drifted])
            self.publish(run)
            return run

    def reference(
        self, con: duckdb.DuckDBPyConnection, model: str, version: str
    ) -> tuple[str, ReferenceProfile] | None:
        latest = self.references.latest(model, version)
        if latest is not None or self.settings.auto_reference_rows <= 0:
            return latest
        profile = profile_from_log(con, model, version, self.settings.auto_reference_rows)
        if profile is None:
            return None
        path = self.references.save(profile)
        log.info("built the reference of %s version %s from the log: %s", model, version, path)
        return path.name, profile

    def evaluate_window(
        self,
        con: duckdb.DuckDBPyConnection,
        profile: ReferenceProfile,
        reference_id: str,
        target: Slice,
        window: Window,
    ) -> DriftRun:
        """Every test of one window, with this job's settings (``drift.window_evaluation``)."""
        return evaluate_window(
            con,
            profile,
            reference_id,
            target,
            window,
            settings=self.settings,
            tests=self.tests,
            clock=self.clock,
        )

    def publish(self, run: DriftRun) -> DriftRun:
        """Report, store rows, latest results and webhook, in that order (links first)."""
        explain_page = Path(self.store, "reports", "explain", run.model, run.version, "latest.html")
        # Relative, like every link between reports: the page also works opened from disk.
        explain_link = (
            f"../../../explain/{quote(run.model, safe='')}/{quote(run.version, safe='')}/"
            "latest.html"
            if explain_page.exists()
            else None
        )
        url = write_report(self.store, run, render_report(run, explain_link=explain_link))
        run = replace(run, report=url)
        write_results(self.store, run)
        publish_latest(self.store, run)
        prune_reports(self.store, keep=self.settings.keep_reports)
        if self.notifier is not None:
            self.alert(self.notifier, run)
        return run

    def alert(self, notifier: WebhookNotifier, run: DriftRun) -> None:
        """Post what changed since what the receiver holds, read from the store rather than
        from memory (``drift.alert_state``): a new process, such as each CronJob run, goes
        on where the last one stopped, re-sending what was not delivered and only that."""
        key = latest_key(run)
        held = read_firing(self.store, key, notifier.url)
        heard = notifier.notify(dict.fromkeys(held, True), run)
        firing = {feature for feature, drifted in heard.items() if drifted}
        if firing != held:
            record_firing(
                self.store,
                key,
                notifier.url,
                firing,
                run_id=run.run_id,
                updated=self.clock(),
                target=(run.model, run.version, run.arm),
            )


def _finite(value: float) -> float:
    return value if math.isfinite(value) else -1.0
