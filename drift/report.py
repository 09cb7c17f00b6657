"""A drift run as a self-contained HTML page, and the reports folder the gateway serves.

    <store>/reports/index.html                           latest report per model version
    <store>/reports/drift/<model>/<version>/<run_id>.html
    <store>/reports/drift/<model>/<version>/latest.html  a copy of the newest run's page

The gateway serves ``<store>/reports/`` under ``/reports/``; pages link to each other
relatively, so they also work opened from disk. ``render_report`` is pure (a ``DriftRun``
in, text out: inline SVG from ``drift.svg`` and plain CSS, no script, every text escaped);
``write_report`` stages and renames files like every other writer of the store;
``prune_reports`` bounds how many run pages a model version keeps.
"""

from __future__ import annotations

import itertools
import shlex
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from urllib.parse import quote

import numpy as np

from drift.distributions import OTHER, Distribution
from drift.findings import DriftRun, FeatureFinding
from drift.html import edge_texts, moment_text, number_text, path_segment
from drift.svg import bar_chart
from drift.verdict import effect_text
from monitoring.prediction_log.layout import store_lock, write_text_file

REPORTS = "reports"
LATEST_PAGE = "latest.html"
INDEX_PAGE = "index.html"
#: Run pages kept per model version by default (``prune_reports``).
KEEP_REPORTS = 200

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem;
       padding: 0 1rem; color: #1f2937; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
h3 { font-size: 1rem; margin-bottom: .3rem; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #d1d5db; padding: .25rem .6rem; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.drifted td { background: #fde2e1; } tr.drifted td.flag { font-weight: 600; color: #b91c1c; }
.verdict { padding: .5rem .8rem; border-radius: .3rem; display: inline-block; }
.verdict.alarm { background: #fde2e1; color: #991b1b; }
.verdict.calm { background: #dcfce7; color: #166534; }
.chart { overflow-x: auto; } pre { background: #f3f4f6; padding: .8rem; overflow-x: auto; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dt { font-weight: 600; } dd { margin: 0; }
"""


def render_report(run: DriftRun, *, explain_link: str | None = None) -> str:
    """The run's report page: verdict, window, reference, a table of every finding
    (drifted first), one chart per feature, and the SQL that reproduces the window."""
    # (position, finding): positions name the sections; the sort is stable.
    findings = sorted(enumerate(run.findings), key=lambda item: not item[1].result.drifted)
    title = f"Drift: {run.model} version {run.version}, arm {run.arm}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f'<p><a href="../../../{INDEX_PAGE}">All reports</a></p>',
        f"<h1>{escape(title)}</h1>",
        _verdict(run),
        _facts(run),
    ]
    if explain_link is not None:
        parts.append(f'<p><a href="{escape(explain_link)}">Explanations of this version</a></p>')
    parts.append(_summary_table(findings))
    parts.append("<h2>Features</h2>")
    parts.extend(_feature_section(finding, position) for position, finding in findings)
    parts.append(_reproduce(run))
    parts.append("</body></html>")
    return "\n".join(parts)


def _verdict(run: DriftRun) -> str:
    drifted = run.drifted
    if not drifted:
        return f'<p class="verdict calm">No drift: {len(run.findings)} tests passed.</p>'
    names = ", ".join(f.feature for f in drifted)
    return (
        f'<p class="verdict alarm">{len(drifted)} of {len(run.findings)} tests found drift: '
        f"{escape(names)}</p>"
    )


def _facts(run: DriftRun) -> str:
    window = run.window
    facts = [
        ("Run", f"{run.run_id} at {moment_text(run.timestamp)}"),
        (
            "Window",
            f"{window.kind}: {moment_text(window.start)} to {moment_text(window.end)}, "
            f"{window.rows} rows",
        ),
        ("Reference", f"{run.reference_id}, {run.reference_rows} rows"),
    ]
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in facts)
    return f"<dl>{items}</dl>"


def _summary_table(findings: list[tuple[int, FeatureFinding]]) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in (
            "feature",
            "role",
            "kind",
            "test",
            "score",
            "p-value",
            "drifted when",
            "drifted",
            "PSI",
        )
    )
    rows = []
    for position, finding in findings:
        result = finding.result
        anchor = _anchor(position)
        marked = ' class="drifted"' if result.drifted else ""
        cells = [
            f'<td><a href="#{anchor}">{escape(finding.feature)}</a></td>',
            f"<td>{escape(finding.role)}</td>",
            f"<td>{escape(finding.kind)}</td>",
            f"<td>{escape(result.statistic)}</td>",
            f'<td class="num">{number_text(result.score)}</td>',
            f'<td class="num">{number_text(result.p_value)}</td>',
            f"<td>{escape(_rule(finding))}</td>",
            f'<td class="flag">{"yes" if result.drifted else "no"}</td>',
            f'<td class="num">{number_text(finding.psi)}</td>',
        ]
        rows.append(f"<tr{marked}>{''.join(cells)}</tr>")
    return f"<h2>Tests</h2><table><tr>{head}</tr>{''.join(rows)}</table>"


def _feature_section(finding: FeatureFinding, position: int) -> str:
    result = finding.result
    verdict = "drifted" if result.drifted else "not drifted"
    line = (
        f"{result.statistic}: score {number_text(result.score)}"
        + (f", p-value {number_text(result.p_value)}" if result.p_value is not None else "")
        + f"; {_rule(finding)}: {verdict}"
    )
    column = f" ({finding.column})" if finding.column and finding.column != finding.feature else ""
    parts = [
        f'<section id="{_anchor(position)}">',
        f"<h3>{escape(finding.feature)}{escape(column)}</h3>",
        f"<p>{escape(finding.role)}, {escape(finding.kind)}. {escape(line)}</p>",
    ]
    if finding.detail:
        parts.append(f"<p>{escape(finding.detail)}</p>")
    if finding.reference is not None and finding.current is not None:
        parts.append(f'<div class="chart">{_distribution_chart(finding)}</div>')
    parts.append("</section>")
    return "".join(parts)


def _distribution_chart(finding: FeatureFinding) -> str:
    reference, current = finding.reference, finding.current
    assert reference is not None and current is not None
    if len(reference.counts) != len(current.counts):
        return (
            f"<p>No chart: the reference has {len(reference.counts)} bins, "
            f"the window {len(current.counts)}.</p>"
        )
    labels = [*bin_labels(reference), "missing"]
    return bar_chart(
        labels,
        {"reference": _shares(reference), "current": _shares(current)},
        f"{finding.feature}: share of rows per bin",
        percent=True,
    )


def bin_labels(distribution: Distribution) -> list[str]:
    """Human labels of a distribution's bins: edge intervals, or category names."""
    if distribution.kind == "categorical":
        return ["(other)" if c == OTHER else c for c in distribution.categories]
    edges = edge_texts(distribution.edges, 4)
    if not edges:
        return ["all values"]
    middle = [f"({low}, {high}]" for low, high in itertools.pairwise(edges)]
    return [f"≤ {edges[0]}", *middle, f"> {edges[-1]}"]


def _shares(distribution: Distribution) -> list[float]:
    """Each bin's share of all rows, then the missing share (so the bars sum to 1)."""
    counts = np.append(distribution.counts, distribution.missing).astype(np.float64)
    rows = counts.sum()
    return [float(c) for c in (counts / rows if rows > 0 else counts)]


def sql_command(sql: str) -> str:
    """A shell command line running ``sql`` in ``driftgate sql``; SQL with quotes goes in
    a quoted here-document, which keeps it verbatim and readable."""
    if "'" not in sql:
        return f"driftgate sql {shlex.quote(sql)}"
    delimiter = "SQL"
    while delimiter in sql.splitlines():
        delimiter += "_"
    return f"driftgate sql \"$(cat <<'{delimiter}'\n{sql}\n{delimiter}\n)\""


def _reproduce(run: DriftRun) -> str:
    command = sql_command(run.sql)
    return (
        "<h2>Reproduce</h2>"
        "<p>The window's numbers come from this query over the prediction log:</p>"
        f"<pre>{escape(run.sql)}</pre>"
        "<p>Run it with (add <code>--store DIR</code> when the store is not "
        "<code>var/store</code>):</p>"
        f"<pre>{escape(command)}</pre>"
    )


def _rule(finding: FeatureFinding) -> str:
    result = finding.result
    if result.p_value is not None:
        floor = effect_text(result) if result.min_effect is not None else ""
        return f"p < {number_text(result.threshold)}" + (f" and {floor}" if floor else "")
    return f"score > {number_text(result.threshold)}"


def _anchor(position: int) -> str:
    return f"finding-{position}"


def report_url(model: str, version: str, run_id: str) -> str:
    """The URL path the gateway serves a run's report under."""
    segments = ("drift", model, version, f"{run_id}.html")
    return f"/{REPORTS}/" + "/".join(quote(s, safe="") for s in segments)


def write_report(store: Path, run: DriftRun, html: str) -> str:
    """Write the run's page and its version's ``latest.html``, refresh the index, and
    return the page's URL path (``/reports/drift/<model>/<version>/<run_id>.html``)."""
    folder = store / REPORTS / "drift" / path_segment(run.model) / path_segment(run.version)
    run_page = f"{path_segment(run.run_id)}.html"
    if run_page == LATEST_PAGE:
        raise ValueError("a run id cannot be 'latest': it names the newest run's copy")
    write_text_file(store, folder / run_page, html)
    write_text_file(store, folder / LATEST_PAGE, html)
    write_index(store)
    return report_url(run.model, run.version, run.run_id)


def write_index(store: Path) -> None:
    """Regenerate ``<store>/reports/index.html`` from the folders: one row per kind
    (drift, explain, ...), model and version that has a ``latest.html``."""
    root = store / REPORTS
    with store_lock(store, "reports"):
        rows = []
        for latest in sorted(root.glob(f"*/*/*/{LATEST_PAGE}"), key=_index_order):
            version_dir = latest.parent
            kind, model, version = (
                version_dir.parent.parent.name,
                version_dir.parent.name,
                version_dir.name,
            )
            try:
                updated = datetime.fromtimestamp(latest.stat().st_mtime, UTC)
            except FileNotFoundError:  # pruned or replaced meanwhile
                continue
            runs = sum(1 for p in version_dir.glob("*.html") if p.name != LATEST_PAGE)
            href = "/".join(quote(s, safe="") for s in (kind, model, version, LATEST_PAGE))
            rows.append(
                f"<tr><td>{escape(kind)}</td><td>{escape(model)}</td>"
                f'<td>{escape(version)}</td><td><a href="{escape(href)}">latest</a></td>'
                f'<td>{escape(moment_text(updated))}</td><td class="num">{runs}</td></tr>'
            )
        body = (
            "".join(rows)
            if rows
            else '<tr><td colspan="6">No reports yet: the jobs have not run.</td></tr>'
        )
        html = (
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f"<title>driftgate reports</title><style>{_STYLE}</style></head><body>"
            "<h1>driftgate reports</h1><table><tr><th>report</th><th>model</th>"
            "<th>version</th><th>page</th><th>updated (UTC)</th><th>runs kept</th></tr>"
            f"{body}</table></body></html>"
        )
        write_text_file(store, root / INDEX_PAGE, html)


def prune_reports(store: Path, keep: int = KEEP_REPORTS, *, kind: str = "drift") -> int:
    """Delete all but the newest ``keep`` run pages of each model version (``latest.html``
    is a copy and always stays); returns how many were deleted."""
    if keep < 0:
        raise ValueError(f"keep must be 0 or more, not {keep}")
    removed = 0
    for version_dir in (store / REPORTS / kind).glob("*/*"):
        pages = []
        for page in version_dir.glob("*.html"):
            if page.name == LATEST_PAGE:
                continue
            try:
                pages.append((page.stat().st_mtime_ns, page.name, page))
            except FileNotFoundError:
                continue
        pages.sort(reverse=True)
        for _, _, page in pages[keep:]:
            page.unlink(missing_ok=True)
            removed += 1
    return removed


def _index_order(latest: Path) -> tuple[str, str, tuple[int, int | str]]:
    version = latest.parent.name
    natural = (0, int(version)) if version.isascii() and version.isdigit() else (1, version)
    return (latest.parent.parent.parent.name, latest.parent.parent.name, natural)
