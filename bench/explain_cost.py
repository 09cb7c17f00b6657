#!/usr/bin/env python3
"""What explanations cost: seconds per explained row for each explainer on the demo models.

    python bench/explain_cost.py                     # build the demo in a temp folder, run
    python bench/explain_cost.py var/models --write  # reuse a built demo, update BENCHMARKS.md

Loads, in process and through the runtime's own backends (``create_backend``), titanic
versions 1 (pipeline: encode, then logistic regression) and 2 (pipeline: encode, then
boosted trees), iris version 1 (Keras HDF5) and diabetes version 1 (TensorFlow SavedModel),
and wraps each as an ``explain`` PredictFn over its original inputs (titanic's five
columns; iris' four and diabetes' ten named features, stacked into the one ``features``
tensor those models take). For each model it times:

- ``kernel_shap``: ``--rows`` rows, a background of ``--background`` reference rows and
  ``--n-samples`` coalitions (exact enumeration when all fit: titanic's 5 inputs need 30,
  iris' 4 need 14; diabetes' 10 need 1022, so it samples);
- ``permutation``: the same rows with their labels and the model's metric (accuracy for
  the classifiers, mean absolute error for diabetes), ``--permutation-repeats`` shuffles;
- ``linear probe`` (``explain.linear.fit_linear``, one predict call) for models whose inputs
  are all numeric, and ``linear`` (the fast path) where the probe finds the model linear.

Each is run ``--repeats`` times; the table shows the median seconds per explained row and
the predict calls and predicted rows of one run, which are what the time is spent on.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from benchmarks_doc import BENCHMARKS, machine_description, write_section

from explain.budget import ExplainBudget, plan_rows
from explain.frame import CountedPredict, Frame, PredictFn, sample_rows
from explain.kernel_shap import kernel_shap
from explain.linear import fit_linear, linear_explain
from explain.permutation import Metric, permutation_importance

IRIS_FEATURES = ("sepal_length", "sepal_width", "petal_length", "petal_width")


@dataclass
class Case:
    """One model wrapped for the explainers, with data to explain."""

    label: str
    predict: PredictFn
    rows: Frame
    background: Frame
    labels: np.ndarray
    metric: Metric
    output_index: int | None  # the column Kernel SHAP explains


@dataclass
class Measurement:
    model: str
    method: str
    rows: int
    calls: int
    predicted_rows: int
    seconds_per_row: float
    note: str = ""


@contextmanager
def loaded(repository: Path, name: str, version: int) -> Iterator[Any]:
    from runtime.backends import create_backend, detect_format
    from runtime.config import load_model_config

    fmt, artefact = detect_format(repository / name / str(version))
    backend = create_backend(fmt, load_model_config(repository / name).backend_options())
    backend.load(artefact)
    try:
        yield backend
    finally:
        backend.unload()


def titanic_case(backend: Any, version: int, args: argparse.Namespace) -> Case:
    from runtime.demo.titanic_data import NUMERIC_FEATURES, load_titanic

    reference = load_titanic("reference")
    assert reference.survived is not None
    columns = {**reference.columns, "survived": reference.survived.astype(np.float64)}
    rows = sample_rows(columns, args.rows, seed=1)
    labels = rows.pop("survived").astype(np.int64)

    def predict(frame: Frame) -> np.ndarray:
        inputs = {
            name: column.astype(np.float32 if name in NUMERIC_FEATURES else object).reshape(-1, 1)
            for name, column in frame.items()
        }
        return np.asarray(backend.predict(inputs)["probability"][:, 0], dtype=np.float64)

    kind = "logistic regression" if version == 1 else "boosted trees"
    return Case(
        label=f"titanic v{version} (pipeline, {kind})",
        predict=predict,
        rows=rows,
        background=sample_rows(reference.columns, args.background, seed=0),
        labels=labels,
        metric="accuracy",
        output_index=None,
    )


def matrix_case(
    backend: Any,
    label: str,
    *,
    data: tuple[np.ndarray, np.ndarray],
    names: tuple[str, ...],
    output: str,
    args: argparse.Namespace,
    metric: Metric,
    output_index: int | None,
) -> Case:
    """A model with one ``features`` matrix input, explained by its named columns."""
    features, target = data
    columns = {name: features[:, j].astype(np.float64) for j, name in enumerate(names)}
    chosen = np.random.default_rng(1).choice(len(target), size=args.rows, replace=False)

    def predict(frame: Frame) -> np.ndarray:
        matrix = np.column_stack([frame[name] for name in names]).astype(np.float32)
        outputs = backend.predict({"features": matrix})[output]
        return np.asarray(outputs, dtype=np.float64)

    return Case(
        label=label,
        predict=predict,
        rows={name: column[chosen] for name, column in columns.items()},
        background=sample_rows(columns, args.background, seed=0),
        labels=target[chosen],
        metric=metric,
        output_index=output_index,
    )


def timed(
    repeats: int, run: Callable[[CountedPredict], Any], predict: PredictFn
) -> tuple[float, CountedPredict, Any]:
    """Median seconds of ``repeats`` runs, with the counters and result of the last."""
    seconds = []
    for _ in range(repeats):
        counted = CountedPredict(predict)
        started = time.perf_counter()
        result = run(counted)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), counted, result


def measure(case: Case, args: argparse.Namespace) -> list[Measurement]:
    n_rows = len(next(iter(case.rows.values())))
    results = []
    case.predict(case.background)  # warm-up: first calls pay for graph tracing and caches

    seconds, counted, attribution = timed(
        args.repeats,
        lambda p: kernel_shap(
            p, case.rows, case.background, n_samples=args.n_samples, output_index=case.output_index
        ),
        case.predict,
    )
    mode = "exact" if attribution.detail["exact"] else "sampled"
    results.append(
        Measurement(
            case.label,
            "kernel_shap",
            n_rows,
            counted.calls,
            counted.rows,
            seconds / n_rows,
            f"{mode}, {attribution.detail['coalitions']} coalitions, "
            f"additivity error {attribution.additivity_error():.1e}",
        )
    )

    seconds, counted, importance = timed(
        args.repeats,
        lambda p: permutation_importance(
            p, case.rows, labels=case.labels, metric=case.metric, repeats=args.permutation_repeats
        ),
        case.predict,
    )
    results.append(
        Measurement(
            case.label,
            "permutation",
            n_rows,
            counted.calls,
            counted.rows,
            seconds / n_rows,
            f"{case.metric}, top feature {importance.ranking()[0]}",
        )
    )

    if any(column.dtype.kind != "f" for column in case.rows.values()):
        results.append(
            Measurement(case.label, "linear", n_rows, 0, 0, float("nan"), "n/a: categorical inputs")
        )
        return results
    seconds, counted, fit = timed(
        args.repeats,
        lambda p: fit_linear(p, case.rows, case.background, output_index=case.output_index),
        case.predict,
    )
    verdict = "linear" if fit is not None else "not linear: use kernel_shap"
    results.append(
        Measurement(
            case.label,
            "linear probe",
            n_rows,
            counted.calls,
            counted.rows,
            seconds / n_rows,
            verdict,
        )
    )
    if fit is not None:
        seconds, counted, _ = timed(
            args.repeats,
            lambda p: linear_explain(p, case.rows, case.background, output_index=case.output_index),
            case.predict,
        )
        results.append(
            Measurement(case.label, "linear", n_rows, counted.calls, counted.rows, seconds / n_rows)
        )
    return results


def run(repository: Path, args: argparse.Namespace) -> list[Measurement]:
    from sklearn.datasets import load_diabetes, load_iris

    results: list[Measurement] = []
    for version in (1, 2):
        with loaded(repository, "titanic", version) as backend:
            results += measure(titanic_case(backend, version, args), args)
    with loaded(repository, "iris", 1) as backend:
        case = matrix_case(
            backend,
            "iris v1 (Keras HDF5), P(virginica)",
            data=load_iris(return_X_y=True),
            names=IRIS_FEATURES,
            output="probabilities",
            args=args,
            metric="accuracy",
            output_index=2,
        )
        results += measure(case, args)
    with loaded(repository, "diabetes", 1) as backend:
        diabetes = load_diabetes()
        case = matrix_case(
            backend,
            "diabetes v1 (SavedModel)",
            data=(diabetes.data, diabetes.target),
            names=tuple(diabetes.feature_names),
            output="progression",
            args=args,
            metric="neg_mae",
            output_index=None,
        )
        results += measure(case, args)
    return results


def render(args: argparse.Namespace, results: list[Measurement], wall_s: float) -> str:
    machine = machine_description()
    budget = ExplainBudget()
    command = (
        f"python bench/explain_cost.py var/models --rows {args.rows} --background "
        f"{args.background} --n-samples {args.n_samples} --permutation-repeats "
        f"{args.permutation_repeats} --repeats {args.repeats}"
    )
    lines = [
        "## Explain cost",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M %Z')} by `bench/explain_cost.py` in "
        f"{wall_s:.0f} s. Reproduce: `{command}` (add `--write` to update this section).",
        "",
        f"- Machine: {machine['cpu']}; {machine['os']}; Python {machine['python']}. "
        f"Code: commit {machine['commit']}.",
        f"- Load average (1 min) at the end of the run: {os.getloadavg()[0]:.2f}.",
        "- Models run in process through the runtime backends; *s/row* is the median over "
        f"{args.repeats} runs of one call's seconds divided by the rows it explained; calls "
        "and predicted rows are one run's.",
        "",
        f"- *rows per job*: what `plan_rows` allows a job with the default `ExplainBudget` "
        f"({budget.time_limit_s:.0f} s, at most {budget.max_rows} rows) at that cost.",
        "",
        "| model | method | rows | predict calls | predicted rows | s/row | rows per job | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for m in results:
        measured = not np.isnan(m.seconds_per_row)
        per_row = f"{m.seconds_per_row:.3g}" if measured else "n/a"
        per_job = plan_rows(budget, m.seconds_per_row) if measured else "n/a"
        lines.append(
            f"| {m.model} | {m.method} | {m.rows} | {m.calls} | {m.predicted_rows:,} | "
            f"{per_row} | {per_job} | {m.note} |"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "repository", type=Path, nargs="?", help="a built demo repository (default: build one)"
    )
    parser.add_argument("--rows", type=int, default=20, help="rows explained per model")
    parser.add_argument("--background", type=int, default=50, help="Kernel SHAP background rows")
    parser.add_argument("--n-samples", type=int, default=512, help="Kernel SHAP coalition budget")
    parser.add_argument("--permutation-repeats", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args(argv)
    # TensorFlow reads these when it is first imported (by the demo build or a backend).
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="explain-cost-") as tmp:
        repository = args.repository
        if repository is None:
            from runtime.demo import build_demo_repository

            repository = Path(tmp) / "models"
            print(f"building the demo repository in {repository} ...", file=sys.stderr)
            build_demo_repository(repository)
        results = run(repository.resolve(), args)
    report = render(args, results, time.perf_counter() - started)
    print(report)
    if args.write:
        write_section(BENCHMARKS, __file__, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
