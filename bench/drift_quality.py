#!/usr/bin/env python3
"""How good the drift verdicts are: false alarms on unchanged traffic, detection of real shifts.

    python bench/drift_quality.py                 # 200 windows per scenario, print the table
    python bench/drift_quality.py --write         # and update docs/drift.md (marked section)

The decision path is the drift job's (``drift.job.DriftJob.evaluate_window``) with default
``TestSettings``: ``evaluate`` per profiled feature (inputs and the prediction output) with
``n_tests = features + missing-share tests + 1``, ``missing_share_drift`` for each numeric
feature with missing values, ``pca_drift`` for the joint test, ``performance_drift`` (its own
family) and ``first_alarm`` (Page-Hinkley) on the labelled rows' errors. Only the window's
counting differs: the numpy builders (``numeric_counts``; ``counts_from_map`` over
``np.unique``, which is what the SQL scan feeds it) stand in for DuckDB, so hundreds of
windows take seconds. ``tests/drift/test_window.py`` shows the two count alike.

Data: a generator of 8 numeric features (f1 correlated with f0, f4 with f3, f2 skewed, f5
uniform, f6 gamma, f7 with 5 % NaN) and 2 categorical ones (c0: 4 categories, c1: 12),
a binary label drawn from a logistic function of f0, f1, f3, f5 and c0, and a fixed "model"
that predicts the label's more likely class (output ``prediction``). The reference profile
(``build_profile``, with labels, so the performance reference exists) comes from
``--reference-rows`` rows; every window is ``--rows`` fresh rows from another seed (window
i has the same seed in every scenario, so the scenarios differ only by their change).

Scenarios, ``--windows`` windows each:

1. no shift: the false-alarm rate is the share of windows where any feature test or the
   multivariate test drifted (target <= 5 %), also shown per kind of test.
2. f3's mean + 0.5 reference standard deviations: f3 flagged (target >= 95 %); *named*:
   f3 flagged and no other input (the prediction may follow: the model uses f3).
3. c0's share of ``a`` 40 % -> 20 %, the other categories scaled up to fill it.
4. a label flip: the labels of the window's last 30 % of rows (in time order) flipped,
   inputs and predictions unchanged: the concept changes 70 % into the window.
   ``performance_drift`` must flag it (target >= 95 %); no input feature should be.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from drift.calibration import default_statistic, evaluate
from drift.distributions import Distribution, counts_from_map, numeric_counts
from drift.fetched_values import row_errors
from drift.missing import missing_share_drift, needs_missing_test
from drift.multivariate import pca_drift
from drift.profile import ReferenceProfile, build_profile
from drift.sequential import PageHinkley, first_alarm, performance_drift
from drift.verdict import TestSettings

ROOT = Path(__file__).resolve().parent.parent
DOC_START = "<!-- drift-quality:start -->"
DOC_END = "<!-- drift-quality:end -->"
MAX_FALSE_ALARMS = 0.05
MIN_DETECTION = 0.95
C0_NAMES = np.asarray(["a", "b", "c", "d"])
C0_SHARES = np.asarray([0.4, 0.3, 0.2, 0.1])
C0_EFFECT = np.asarray([0.5, 0.0, -0.5, -1.0])
C1_NAMES = np.asarray([f"region-{i:02d}" for i in range(12)])
F3_MEAN, F3_STD = 10.0, 2.0
F3_SHIFT_SIGMAS = 0.5
#: c0's share of its first category in scenario 3 (40 % in the reference).
C0_SHIFTED_SHARE = 0.2
#: The share of the window's rows, at its end, whose labels scenario 4 flips.
FLIPPED_TAIL = 0.3


@dataclass(frozen=True)
class Change:
    """What a scenario does to the generator (nothing, by default)."""

    f3_shift_sigmas: float = 0.0
    c0_shares: tuple[float, ...] = tuple(C0_SHARES)
    flipped_tail: float = 0.0


@dataclass(frozen=True)
class Rows:
    """Generated rows: ``columns`` keyed as in the store (``in_f0`` .. ``out_prediction``)."""

    columns: dict[str, np.ndarray]
    labels: np.ndarray


@dataclass
class Verdicts:
    """What the job's tests said about one window."""

    features: dict[str, bool] = field(default_factory=dict)
    multivariate: bool = False
    performance: bool = False
    alarm_at: int | None = None


def generate(rows: int, seed: Sequence[int], change: Change = Change()) -> Rows:
    """``rows`` rows of the generator (module doc), with ``change`` applied."""
    rng = np.random.default_rng(list(seed))
    z = rng.standard_normal((rows, 8))
    f3 = F3_MEAN + F3_STD * z[:, 3]
    f7 = 50.0 + 5.0 * z[:, 7]
    f7[rng.random(rows) < 0.05] = np.nan
    numeric = {
        "f0": z[:, 0],
        "f1": 0.8 * z[:, 0] + 0.6 * z[:, 1],
        "f2": np.exp(0.5 * z[:, 2]),
        "f3": f3 + change.f3_shift_sigmas * F3_STD,
        "f4": F3_MEAN + F3_STD * (0.7 * z[:, 3] + math.sqrt(0.51) * z[:, 4]),
        "f5": rng.random(rows),
        "f6": rng.gamma(2.0, 1.5, rows),
        "f7": f7,
    }
    c0 = rng.choice(C0_NAMES.size, rows, p=np.asarray(change.c0_shares))
    c1_weights = 1.0 / np.arange(1, C1_NAMES.size + 1)
    c1 = rng.choice(C1_NAMES.size, rows, p=c1_weights / c1_weights.sum())
    logit = (
        -0.3
        + 0.9 * numeric["f0"]
        - 0.6 * numeric["f1"]
        + 0.5 * (numeric["f3"] - F3_MEAN) / F3_STD
        + 0.8 * (numeric["f5"] - 0.5)
        + C0_EFFECT[c0]
    )
    labels = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    flipped = rows - round(rows * change.flipped_tail)
    labels[flipped:] = 1 - labels[flipped:]
    columns = {f"in_{name}": values for name, values in numeric.items()}
    columns["in_c0"] = C0_NAMES[c0]
    columns["in_c1"] = C1_NAMES[c1]
    columns["out_prediction"] = (logit > 0).astype(np.int64)  # the model: the likelier class
    return Rows(columns, labels)


def reference_profile(rows: int, seed: int) -> ReferenceProfile:
    reference = generate(rows, (seed, 0))
    return build_profile(
        "quality",
        "1",
        reference.columns,
        f"bench: generator seed {seed}",
        labels=reference.labels,
        prediction="out_prediction",
    )


def observed(reference: Distribution, values: np.ndarray) -> Distribution:
    """The window's counts over the reference's bins, as the SQL scan hands them over."""
    if reference.kind == "numeric":
        missing = int(np.isnan(values).sum())
        return reference.with_counts(numeric_counts(values, reference.edges), missing)
    names, counts = np.unique(values, return_counts=True)
    found = dict(zip(names.tolist(), counts.tolist(), strict=True))
    return reference.with_counts(counts_from_map(found, reference.categories), 0)


def judge(profile: ReferenceProfile, window: Rows, settings: TestSettings) -> Verdicts:
    """Every test of ``DriftJob.evaluate_window`` and
    ``drift.window_evaluation.performance_findings`` on a window."""
    assert profile.multivariate is not None and profile.performance is not None
    pairs = [
        (feature, observed(feature.distribution, window.columns[feature.column]))
        for feature in profile.features
    ]
    missing = [(f, cur) for f, cur in pairs if needs_missing_test(f.distribution, cur)]
    n_tests = len(pairs) + len(missing) + 1
    verdicts = Verdicts()
    for feature, current in pairs:
        result = evaluate(feature.distribution, current, n_tests, settings)
        verdicts.features[feature.name] = result.drifted
    for feature, current in missing:
        result = missing_share_drift(feature.distribution, current, n_tests, settings)
        verdicts.features[f"{feature.name}:missing"] = result.drifted
    detector = profile.multivariate
    sample = {column: window.columns[column] for column in detector.columns}
    verdicts.multivariate = pca_drift(detector, sample, n_tests, settings).drifted
    performance = profile.performance
    predictions = window.columns[performance.prediction]
    errors = row_errors(performance.metric, predictions, window.labels)
    mean = float(errors.mean())
    verdicts.performance = performance_drift(
        performance.n,
        performance.mean,
        performance.std,
        int(errors.size),
        mean,
        math.sqrt(mean * (1 - mean)),
        1,
        settings,
    ).drifted
    verdicts.alarm_at = first_alarm(errors)
    return verdicts


@dataclass(frozen=True)
class Measure:
    """One row of the table: the share of windows where ``holds`` is true."""

    scenario: str
    name: str
    holds: Callable[[Verdicts], bool]
    target: str = ""  # "<= 5%" or ">= 95%"; empty: reported, not judged


def _inputs(v: Verdicts) -> list[str]:
    return [name for name, drifted in v.features.items() if drifted and name != "prediction"]


def _named(feature: str) -> Callable[[Verdicts], bool]:
    return lambda v: _inputs(v) == [feature]


def _any_kind(names: Sequence[str]) -> Callable[[Verdicts], bool]:
    return lambda v: any(v.features[name] for name in names)


NUMERIC_INPUTS = tuple(f"f{i}" for i in range(8))
SCENARIOS: dict[str, Change] = {
    "no shift": Change(),
    f"f3 +{F3_SHIFT_SIGMAS} sd": Change(f3_shift_sigmas=F3_SHIFT_SIGMAS),
    "c0 share 40->20%": Change(
        c0_shares=(C0_SHIFTED_SHARE, *(C0_SHARES[1:] * (1 - C0_SHIFTED_SHARE) / 0.6))
    ),
    "label flip": Change(flipped_tail=FLIPPED_TAIL),
}
_NONE, _F3, _C0, _FLIP = SCENARIOS
MEASURES = (
    Measure(
        _NONE,
        "any feature or multivariate test drifted",
        lambda v: any(v.features.values()) or v.multivariate,
        f"<= {MAX_FALSE_ALARMS:.0%}",
    ),
    Measure(_NONE, "a numeric input drifted (8 tests)", _any_kind(NUMERIC_INPUTS)),
    Measure(_NONE, "a categorical input drifted (2 tests)", _any_kind(("c0", "c1"))),
    Measure(_NONE, "the prediction output drifted", _any_kind(("prediction",))),
    Measure(
        _NONE,
        "a missing-share test drifted",
        lambda v: any(d for name, d in v.features.items() if name.endswith(":missing")),
    ),
    Measure(_NONE, "multivariate (PCA) drifted", lambda v: v.multivariate),
    Measure(_NONE, "performance drifted (own family, alpha 5%)", lambda v: v.performance),
    Measure(_NONE, "Page-Hinkley alarmed", lambda v: v.alarm_at is not None),
    Measure(_F3, "f3 flagged", _any_kind(("f3",)), f">= {MIN_DETECTION:.0%}"),
    Measure(_F3, "named: f3 and no other input", _named("f3"), f">= {MIN_DETECTION:.0%}"),
    Measure(_F3, "the prediction output flagged too", _any_kind(("prediction",))),
    Measure(_F3, "multivariate flagged too", lambda v: v.multivariate),
    Measure(_C0, "c0 flagged", _any_kind(("c0",)), f">= {MIN_DETECTION:.0%}"),
    Measure(_C0, "named: c0 and no other input", _named("c0"), f">= {MIN_DETECTION:.0%}"),
    Measure(_C0, "the prediction output flagged too", _any_kind(("prediction",))),
    Measure(_C0, "multivariate flagged too", lambda v: v.multivariate),
    Measure(_FLIP, "performance flagged", lambda v: v.performance, f">= {MIN_DETECTION:.0%}"),
    Measure(
        _FLIP,
        "an input feature flagged (false alarm)",
        lambda v: bool(_inputs(v)),
        f"<= {MAX_FALSE_ALARMS:.0%}",
    ),
    Measure(_FLIP, "the prediction output flagged", _any_kind(("prediction",))),
    Measure(_FLIP, "Page-Hinkley alarmed", lambda v: v.alarm_at is not None),
)


def run(args: argparse.Namespace) -> dict[str, list[Verdicts]]:
    """Every scenario's verdicts, one per window."""
    profile = reference_profile(args.reference_rows, args.seed)
    settings = TestSettings()
    return {
        scenario: [
            judge(profile, generate(args.rows, (args.seed, window + 1), change), settings)
            for window in range(args.windows)
        ]
        for scenario, change in SCENARIOS.items()
    }


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a rate (95 % by default)."""
    if n == 0:
        return 0.0, 1.0
    rate = hits / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def verdict(rate: float, target: str) -> str:
    if not target:
        return ""
    limit = float(target.split()[1].rstrip("%")) / 100
    passed = rate <= limit if target.startswith("<=") else rate >= limit
    return "**pass**" if passed else "**FAIL**"


def render(args: argparse.Namespace, results: dict[str, list[Verdicts]], wall_s: float) -> str:
    settings = TestSettings()
    names = next(iter(results.values()))[0].features
    missing_tests = sum(1 for name in names if name.endswith(":missing"))
    profile_features = len(names) - missing_tests
    n_tests = profile_features + missing_tests + 1
    numeric_test = default_statistic("numeric", args.rows, settings)
    categorical_test = default_statistic("categorical", args.rows, settings)
    detector = PageHinkley()
    floors = ", ".join(f"{name} {value}" for name, value in settings.min_effect.items())
    lines = [
        f"Measured {time.strftime('%Y-%m-%d')} by `python bench/drift_quality.py --windows "
        f"{args.windows} --rows {args.rows} --reference-rows {args.reference_rows} --seed "
        f"{args.seed}` in {wall_s:.0f} s ({args.windows} windows of {args.rows:,} rows per "
        f"scenario, reference of {args.reference_rows:,} rows).",
        "",
        f"Settings: the defaults. alpha {settings.alpha} per window over {n_tests} tests "
        f"({profile_features} features: 10 inputs and the prediction; {missing_tests} "
        "missing-share test for the numeric input with missing values; the PCA test), so "
        f"each at {settings.alpha / n_tests:.4f}; at {args.rows:,} rows numeric features get "
        f"`{numeric_test}` and categorical ones `{categorical_test}` (thresholds calibrated on "
        f"the reference, never below {floors}); performance at alpha "
        f"{settings.alpha} on its own; Page-Hinkley delta {detector.delta}, threshold "
        f"{detector.threshold}. Label flip: the last {FLIPPED_TAIL:.0%} of each window's rows.",
        "",
        "| scenario | measure | rate | 95% interval | target | result |",
        "|---|---|---:|---:|---:|---|",
    ]
    for measure in MEASURES:
        windows = results[measure.scenario]
        hits = sum(measure.holds(v) for v in windows)
        rate = hits / len(windows)
        low, high = wilson(hits, len(windows))
        lines.append(
            f"| {measure.scenario} | {measure.name} | {rate:.1%} | {low:.1%}-{high:.1%} | "
            f"{measure.target} | {verdict(rate, measure.target)} |"
        )
    alarms = [v.alarm_at for v in results[_FLIP] if v.alarm_at is not None]
    onset = args.rows - round(args.rows * FLIPPED_TAIL)
    if alarms:
        lines += [
            "",
            f"Page-Hinkley under the label flip: first alarm at labelled row "
            f"{statistics.median(alarms):.0f} (median over windows that alarmed; the flip "
            f"starts at row {onset}).",
        ]
    lines.append("")
    return "\n".join(lines)


def write_doc(path: Path, report: str) -> None:
    """Replace the part of ``path`` between the markers (a page with just them if absent)."""
    if not path.exists():
        path.write_text(f"# Drift\n\n{DOC_START}\n{DOC_END}\n")
    text = path.read_text()
    if DOC_START not in text or DOC_END not in text:
        raise SystemExit(f"{path} lacks the markers {DOC_START} and {DOC_END}: add them")
    head, rest = text.split(DOC_START, 1)
    tail = rest.split(DOC_END, 1)[1]
    path.write_text(f"{head}{DOC_START}\n{report}{DOC_END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=200, help="windows per scenario")
    parser.add_argument("--rows", type=int, default=5_000, help="rows per window")
    parser.add_argument("--reference-rows", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help="update docs/drift.md")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = run(args)
    report = render(args, results, time.perf_counter() - started)
    print(report)
    if args.write:
        write_doc(ROOT / "docs" / "drift.md", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
