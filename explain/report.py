"""An explain run as a self-contained HTML page, beside the drift reports.

    <store>/reports/explain/<model>/<version>/<run_id>.html
    <store>/reports/explain/<model>/<version>/latest.html   a copy of the newest run's page

The gateway serves ``<store>/reports/`` under ``/reports/``; ``drift.report.write_index``
lists these pages with the drift ones, and the drift report of a model version links to
its ``latest.html``. ``render_report`` is pure (an ``ExplainRun`` in, text out: inline SVG
from ``drift.svg``, no script, every text escaped): per method, the importance bars (std
beside each feature), a table of shares, ranks and shifts, then Kernel SHAP's attributions
of every feature as a histogram over the explained rows, and what the run cost.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from urllib.parse import quote

import numpy as np

from drift.html import edge_texts, moment_text, number_text, path_segment
from drift.report import INDEX_PAGE, LATEST_PAGE, REPORTS, write_index
from drift.svg import bar_chart, horizontal_bars
from explain.attributions import Attribution
from explain.results import Comparison, ExplainRun, MethodResult
from monitoring.prediction_log.layout import write_text_file

KIND = "explain"
#: Bins of each feature's attribution histogram.
ATTRIBUTION_BINS = 9

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1f2937; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
h3 { font-size: 1rem; margin-bottom: .3rem; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #d1d5db; padding: .25rem .6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.chart { overflow-x: auto; } .charts { display: flex; flex-wrap: wrap; gap: 1rem; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dt { font-weight: 600; } dd { margin: 0; }
"""

_METHOD_TITLES = {"permutation": "Permutation importance", "kernel_shap": "Kernel SHAP"}
_SCORINGS = {
    "prediction_change": "mean absolute change of the prediction when the feature is shuffled",
    "accuracy": "drop in accuracy against the feedback labels when the feature is shuffled",
    "neg_mae": "rise in mean absolute error against the feedback labels when shuffled",
    "log_loss": "rise in log loss against the feedback labels when the feature is shuffled",
    "mean_abs_attribution": "mean absolute SHAP value over the explained rows",
}


def render_report(run: ExplainRun, *, drift_link: str | None = None) -> str:
    """The run's page: facts and cost, then one section per method."""
    title = f"Explanations: {run.model} version {run.version}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f'<p><a href="../../../{INDEX_PAGE}">All reports</a></p>',
        f"<h1>{escape(title)}</h1>",
        _facts(run),
    ]
    if drift_link is not None:
        parts.append(f'<p><a href="{escape(drift_link)}">Drift report of this version</a></p>')
    for result in run.methods:
        parts.append(_method_section(result))
    parts.append("</body></html>")
    return "\n".join(parts)


def _facts(run: ExplainRun) -> str:
    explained = ", ".join(f"{r.method} {r.rows}" for r in run.methods)
    facts = [
        ("Run", f"{run.run_id} at {moment_text(run.timestamp)}"),
        ("Traffic", f"{run.window_rows} logged rows in the window, {run.labelled_rows} labelled"),
        ("Rows explained", explained),
        ("Reference", run.reference_id or "none (no profile: no shift against a reference)"),
        ("Model", f"output '{run.output}' from {run.replica}"),
        (
            "Cost",
            f"{run.predict_calls} predict calls, {run.predicted_rows} predicted rows, "
            f"{run.elapsed_s:.2f} s of a {run.time_limit_s:.3g} s budget",
        ),
    ]
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    return f"<dl>{items}</dl>"


def _method_section(result: MethodResult) -> str:
    importance = result.importance
    title = _METHOD_TITLES.get(result.method, result.method)
    scoring = _SCORINGS.get(importance.scoring, importance.scoring)
    order = importance.ranking()
    position = {name: j for j, name in enumerate(importance.features)}
    labels = [f"{name} ± {number_text(float(importance.std[position[name]]))}" for name in order]
    values = [float(importance.importance[position[name]]) for name in order]
    parts = [
        f'<section id="{escape(result.method)}">',
        f"<h2>{escape(title)}</h2>",
        f"<p>Importance: {escape(scoring)}, over {result.rows} rows."
        + (
            f" Unshuffled score {number_text(importance.baseline_score)}."
            if importance.baseline_score is not None
            else ""
        )
        + "</p>",
        '<div class="chart">'
        + horizontal_bars(labels, values, f"{title}: importance (± std)")
        + "</div>",
        _table(result),
        _correlations(result),
    ]
    if result.attribution is not None:
        parts.append(_distributions(result.attribution))
    parts.append("</section>")
    return "".join(parts)


def _table(result: MethodResult) -> str:
    importance = result.importance
    shares = importance.shares()
    position = {name: j for j, name in enumerate(importance.features)}
    head = "".join(
        f"<th>{escape(h)}</th>"
        for h in (
            "rank",
            "feature",
            "importance",
            "std",
            "share",
            "shift vs previous",
            "shift vs reference",
        )
    )
    rows = []
    for rank, name in enumerate(importance.ranking(), start=1):
        j = position[name]
        cells = [
            f'<td class="num">{rank}</td>',
            f"<td>{escape(name)}</td>",
            f'<td class="num">{number_text(float(importance.importance[j]))}</td>',
            f'<td class="num">{number_text(float(importance.std[j]))}</td>',
            f'<td class="num">{_percent(shares[name])}</td>',
            f'<td class="num">{_shift(result.previous, name)}</td>',
            f'<td class="num">{_shift(result.reference, name)}</td>',
        ]
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _correlations(result: MethodResult) -> str:
    lines = []
    for comparison, what in ((result.previous, "the previous run"), (result.reference, "")):
        if comparison is None:
            continue
        against = what or "the reference"
        lines.append(
            f"Rank correlation with {against}: {number_text(comparison.rank_correlation)} "
            "(Spearman; 1 is the same order)."
        )
    if not lines:
        return "<p>Nothing to compare with yet: no previous run or reference of this method.</p>"
    return "".join(f"<p>{escape(line)}</p>" for line in lines)


def _distributions(attribution: Attribution) -> str:
    if len(attribution.predictions) == 0:
        return ""
    charts = []
    for j, feature in enumerate(attribution.features):
        labels, shares = attribution_histogram(attribution.values[:, j])
        chart = bar_chart(
            labels, {"rows": shares}, f"{feature}: SHAP values (share of rows)", percent=True
        )
        charts.append(f'<div class="chart">{chart}</div>')
    return (
        "<h3>Attribution distributions</h3>"
        f"<p>How each feature moved the prediction of the {len(attribution.predictions)} "
        f"explained rows, from the base value {number_text(attribution.base_value)} "
        "(the mean prediction over the background).</p>"
        f'<div class="charts">{"".join(charts)}</div>'
    )


def attribution_histogram(
    values: np.ndarray, bins: int = ATTRIBUTION_BINS
) -> tuple[list[str], list[float]]:
    """Equal-width bins over a feature's finite SHAP values: (bin labels, share of rows).

    Values too close together for ``bins`` distinct edges, as the attributions of one row
    explained again and again are (they differ by rounding only), share fewer bins, down to
    one; a range wider than the largest float is split without overflowing. Labels carry
    the digits that tell the edges apart."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return ["no values"], [0.0]
    low, high = float(finite.min()), float(finite.max())
    if low == high:
        return [f"{low:.3g}"], [1.0]
    # Not low + (high - low) * t: the difference overflows to inf past 1.8e308, and
    # np.histogram(range=...) refuses bins narrower than the values' rounding.
    steps = np.linspace(0.0, 1.0, bins + 1)
    edges = np.unique(np.clip(low * (1 - steps) + high * steps, low, high))
    counts, _ = np.histogram(finite, bins=edges)
    texts = edge_texts(edges.tolist(), 3)
    labels = [f"{texts[i]} to {texts[i + 1]}" for i in range(len(counts))]
    return labels, [float(c) / finite.size for c in counts]


def _shift(comparison: Comparison | None, feature: str) -> str:
    if comparison is None or feature not in comparison.shift:
        return "n/a"
    value = comparison.shift[feature]
    if not math.isfinite(value):
        return "n/a"
    return f"{value * 100:+.1f} pts"


def _percent(value: float) -> str:
    return f"{value * 100:.1f}%"


def report_folder(store: Path, model: str, version: str) -> Path:
    """``<store>/reports/explain/<model>/<version>``."""
    return store / REPORTS / KIND / path_segment(model) / path_segment(version)


def report_url(model: str, version: str, page: str) -> str:
    """The URL path the gateway serves a page of a model version's explanations under."""
    segments = (KIND, model, version, page)
    return f"/{REPORTS}/" + "/".join(quote(s, safe="") for s in segments)


def drift_report_link(store: Path, model: str, version: str) -> str | None:
    """The relative link from an explain page to the version's latest drift report, when
    there is one."""
    if not (store / REPORTS / "drift" / model / version / LATEST_PAGE).exists():
        return None
    return "../../../" + "/".join(quote(s, safe="") for s in ("drift", model, version, LATEST_PAGE))


def write_report(store: Path, run: ExplainRun, html: str) -> str:
    """Write the run's page and its version's ``latest.html``, refresh the index, and
    return the page's URL path (``/reports/explain/<model>/<version>/<run_id>.html``)."""
    folder = report_folder(store, run.model, run.version)
    page = f"{path_segment(run.run_id)}.html"
    if page == LATEST_PAGE:
        raise ValueError("a run id cannot be 'latest': it names the newest run's copy")
    for final in (folder / page, folder / LATEST_PAGE):
        write_text_file(store, final, html)
    write_index(store)
    return report_url(run.model, run.version, page)
