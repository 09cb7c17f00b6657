"""The latest result of each background analysis job, and the gauges read from it at scrape time.

After each run, the drift job (``drift.results.publish_latest``) and the explain job merge
one entry into a small JSON file per kind; the gateway registers ``JobResultsCollector``
on its /metrics registry, which turns those files into gauges when Prometheus scrapes.
Nothing here imports the jobs: it works on plain JSON.

    <store>/latest/drift.json     {"<model>/<version>/<arm>": <drift entry>, ...}
    <store>/latest/explain.json   {"<model>/<version>": <explain entry>, ...}

A drift entry::

    {"model": "titanic", "version": "2", "arm": "primary",
     "timestamp": "2025-01-02T03:04:05+00:00",      # the run's time (ISO 8601)
     "run_id": "...", "report": "/reports/drift/titanic/2/<run_id>.html" | null,
     "window": {"kind": "time" | "count", "start": ISO, "end": ISO, "rows": 1234},
     "features": [{"feature": "age", "test": "ks", "score": 0.08 | null,
                   "p_value": 0.2 | null, "threshold": 0.001, "drifted": false}, ...]}

An explain entry::

    {"model": "titanic", "version": "2", "timestamp": ISO, "report": "/reports/..." | null,
     "features": [{"feature": "age", "importance": 0.31}, ...]}

JSON has no NaN: a score or importance that is not a number is written as null and
exported as NaN. Entries older than ``max_age_s`` are not exported, so a model version
that stopped getting traffic stops alerting. Writers take a lock
(``<store>/.staging/latest.lock``) around read-merge-replace so that two processes never
lose each other's entries; readers need none (the file is replaced in one step).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitoring.prediction_log.layout import store_lock, write_text_file

log = logging.getLogger(__name__)

LATEST_DIR = "latest"
KINDS = ("drift", "explain")
LOCK_NAME = "latest"  # <store>/.staging/latest.lock

Entries = dict[str, dict[str, Any]]


def latest_path(store: Path, kind: str) -> Path:
    if kind not in KINDS:
        raise ValueError(f"unknown job result kind {kind!r}: expected one of {KINDS}")
    return store / LATEST_DIR / f"{kind}.json"


def read_latest(store: Path, kind: str) -> Entries:
    """The entries of one kind by key; empty when the file does not exist.

    Raises ``ValueError`` when the file is not a JSON object of objects.
    """
    path = latest_path(store, kind)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return _parse_entries(text, path)


def update_latest(store: Path, kind: str, key: str, entry: dict[str, Any]) -> None:
    """Set ``key``'s entry in the latest file of ``kind``, keeping every other key.

    A corrupt file is replaced (with a warning) rather than blocking every later run.
    """
    path = latest_path(store, kind)
    body = json.dumps(entry, allow_nan=False)  # fail before touching the file
    with store_lock(store, LOCK_NAME):
        try:
            entries = read_latest(store, kind)
        except ValueError as exc:
            log.warning("replacing the unreadable latest %s results: %s", kind, exc)
            entries = {}
        entries[key] = json.loads(body)
        write_text_file(store, path, json.dumps(entries, indent=1, sort_keys=True))


def latest_reader(store: Path, kind: str) -> Callable[[], Entries]:
    """The latest entries of ``kind``, re-read only when the file changed; empty when it is
    missing or corrupt (the gateway's canary analysis reads drift this way)."""
    return _CachedFile(latest_path(store, kind)).entries


def drifted_features(entry: dict[str, Any]) -> tuple[float, tuple[str, ...]]:
    """A drift entry's run time (Unix seconds) and the features it found drifted.

    Raises ``KeyError``, ``TypeError`` or ``ValueError`` for a malformed entry."""
    drifted = tuple(str(f["feature"]) for f in entry["features"] if f["drifted"] is True)
    return _unix_time(entry["timestamp"]), drifted


def _parse_entries(text: str, path: Path) -> Entries:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path} is not a JSON object of entries")
    return data


class _CachedFile:
    """One latest file parsed once per version on disk (size and mtime)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._signature: tuple[int, int] | None = None
        self._entries: Entries = {}
        self._lock = threading.Lock()

    def entries(self) -> Entries:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("cannot read %s: %s", self.path, exc)
            return {}
        signature = (stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if signature != self._signature:
                self._signature = signature
                self._entries = self._load()
            return self._entries

    def _load(self) -> Entries:
        # Failures are remembered with the signature: one warning per bad version.
        try:
            return _parse_entries(self.path.read_text(encoding="utf-8"), self.path)
        except (OSError, ValueError) as exc:
            log.warning("ignoring latest job results %s: %s", self.path, exc)
            return {}


_DRIFT_FEATURE_LABELS = ["model", "version", "arm", "feature", "test"]
_DRIFT_RUN_LABELS = ["model", "version", "arm"]
_IMPORTANCE_LABELS = ["model", "version", "feature"]
#: What a hand-edited or half-migrated entry raises while being read.
_MALFORMED = (KeyError, TypeError, ValueError, AttributeError)


class JobResultsCollector(Collector):
    """Gauges from the latest drift and explain results, read at scrape time.

    ``driftgate_drift_score`` / ``driftgate_drift_detected`` per feature and test,
    ``driftgate_drift_last_run_timestamp_seconds`` / ``driftgate_drift_window_rows``
    per model version and arm, ``driftgate_feature_importance`` per feature. A scrape
    re-parses a file only when it changed; a missing or corrupt file exports nothing.
    """

    def __init__(
        self, store: Path, max_age_s: float = 86400, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.max_age_s = max_age_s
        self._clock = clock
        self._drift = _CachedFile(latest_path(store, "drift"))
        self._explain = _CachedFile(latest_path(store, "explain"))

    def describe(self) -> Iterable[Metric]:
        return _Families().all()

    def collect(self) -> Iterable[Metric]:
        families = _Families()
        oldest = self._clock() - self.max_age_s
        for key, entry in self._drift.entries().items():
            try:
                families.add_drift(entry, oldest)
            except _MALFORMED as exc:
                log.debug("skipping malformed latest drift entry %s: %r", key, exc)
        for key, entry in self._explain.entries().items():
            try:
                families.add_explain(entry, oldest)
            except _MALFORMED as exc:
                log.debug("skipping malformed latest explain entry %s: %r", key, exc)
        return families.all()


class _Families:
    """The metric families of one scrape; a label set seen twice keeps its first sample
    (Prometheus rejects an exposition with duplicate series)."""

    def __init__(self) -> None:
        self.score = GaugeMetricFamily(
            "driftgate_drift_score",
            "Score of the latest drift test of each feature (see the test for its scale).",
            labels=_DRIFT_FEATURE_LABELS,
        )
        self.detected = GaugeMetricFamily(
            "driftgate_drift_detected",
            "1 when the latest drift test found the feature drifted from its reference.",
            labels=_DRIFT_FEATURE_LABELS,
        )
        self.last_run = GaugeMetricFamily(
            "driftgate_drift_last_run_timestamp_seconds",
            "Unix time of the latest drift run of the model version and arm.",
            labels=_DRIFT_RUN_LABELS,
        )
        self.window_rows = GaugeMetricFamily(
            "driftgate_drift_window_rows",
            "Rows of the prediction log the latest drift run looked at.",
            labels=_DRIFT_RUN_LABELS,
        )
        self.importance = GaugeMetricFamily(
            "driftgate_feature_importance",
            "Importance of each feature in the latest explain run of the model version.",
            labels=_IMPORTANCE_LABELS,
        )
        self._seen: set[tuple[str, ...]] = set()

    def all(self) -> list[Metric]:
        return [self.score, self.detected, self.last_run, self.window_rows, self.importance]

    def add_drift(self, entry: dict[str, Any], oldest: float) -> None:
        finished = _unix_time(entry["timestamp"])
        if finished < oldest:
            return
        run = [str(entry["model"]), str(entry["version"]), str(entry["arm"])]
        samples = []
        for feature in entry["features"]:
            labels = [*run, str(feature["feature"]), str(feature["test"])]
            detected = 1.0 if feature["drifted"] is True else 0.0
            samples.append((labels, _gauge_value(feature["score"]), detected))
        rows = float(entry["window"]["rows"])
        if not self._first("run", *run):
            return
        self.last_run.add_metric(run, finished)
        self.window_rows.add_metric(run, rows)
        for labels, score, detected in samples:
            if self._first("feature", *labels):
                self.score.add_metric(labels, score)
                self.detected.add_metric(labels, detected)

    def add_explain(self, entry: dict[str, Any], oldest: float) -> None:
        if _unix_time(entry["timestamp"]) < oldest:
            return
        model, version = str(entry["model"]), str(entry["version"])
        samples = [
            ([model, version, str(f["feature"])], _gauge_value(f["importance"]))
            for f in entry["features"]
        ]
        for labels, importance in samples:
            if self._first("importance", *labels):
                self.importance.add_metric(labels, importance)

    def _first(self, *key: str) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def _gauge_value(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _unix_time(text: str) -> float:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
