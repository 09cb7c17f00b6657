"""drift.report and drift.svg: the HTML page of a run, the reports folder, pruning."""

from __future__ import annotations

import os
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from drift.distributions import numeric_reference
from drift.report import (
    bin_labels,
    prune_reports,
    render_report,
    sql_command,
    write_index,
    write_report,
)
from drift.svg import bar_chart, horizontal_bars
from tests.drift.runs import WINDOW_SQL, make_run


class Elements(HTMLParser):
    """Tags and text of a page, to check it parses and to find things in it."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Elements:
    parser = Elements()
    parser.feed(html)
    return parser


def test_report_shows_every_finding_with_the_drifted_one_first_and_marked() -> None:
    run = make_run()
    html = render_report(run)

    for finding in run.findings:
        assert f">{finding.feature}</a>" in html
    table = html[html.index("<h2>Tests</h2>") : html.index("<h2>Features</h2>")]
    rows = re.findall(r"<tr( class=\"drifted\")?><td><a href=\"#[^\"]+\">([^<]+)</a>", table)
    assert rows[0] == (' class="drifted"', "sex")
    assert [marked for marked, _ in rows[1:]] == ["", "", ""]
    assert "1 of 4 tests found drift: sex" in html
    assert "p &lt; 0.0125" in html and "score &gt; 0.1" in html
    assert "titanic-2-20250301.json, 2000 rows" in html
    assert "2025-03-14T08:30:00+00:00 to 2025-03-14T09:30:00+00:00, 505 rows" in html


def test_report_draws_one_chart_per_feature_with_distributions() -> None:
    run = make_run()
    elements = parse(render_report(run))
    charts = [attrs for tag, attrs in elements.tags if tag == "svg"]
    assert len(charts) == 3  # the multivariate finding has no distributions
    text = "".join(elements.text)
    assert "window too small for the joint test" in text
    assert "(other)" in text and "missing" in text
    assert not any(tag in ("script", "link", "img") for tag, _ in elements.tags)


def test_report_reproduce_section_has_the_sql_and_command() -> None:
    html = render_report(make_run())
    text = "".join(parse(html).text)
    assert WINDOW_SQL in text  # unescaped back by the parser: the page shows it verbatim
    assert sql_command(WINDOW_SQL) in text


@pytest.mark.parametrize(
    "sql",
    [WINDOW_SQL, "select count(*) from predictions", "select 'a\nSQL\n' as \"x\" -- $HOME `id`"],
)
def test_sql_command_passes_the_query_verbatim_through_a_shell(sql: str) -> None:
    # A stand-in driftgate prints the query it was given.
    script = 'driftgate() { printf "%s" "$2"; }\n' + sql_command(sql)
    shown = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    assert shown.stdout == sql


def test_every_text_is_escaped() -> None:
    html = render_report(make_run(categorical_feature="<script>alert(1)</script>"))
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_explain_link_is_optional() -> None:
    assert "Explanations" not in render_report(make_run())
    html = render_report(make_run(), explain_link="/reports/explain/titanic/2/latest.html")
    assert 'href="/reports/explain/titanic/2/latest.html"' in html


def test_numeric_bins_are_labelled_by_their_edges() -> None:
    age = make_run().findings[0].reference
    assert age is not None
    labels = bin_labels(age)
    assert len(labels) == len(age.counts)
    assert labels[0].startswith("≤ ") and labels[-1].startswith("> ")
    assert labels[1] == f"({age.edges[0]:.4g}, {age.edges[1]:.4g}]"


def test_bins_whose_edges_differ_by_rounding_are_told_apart() -> None:
    """A reference of one value sent again and again, give or take a rounding, has edges
    an ulp apart: at 4 digits every bin read ``(0.1, 0.1]``."""
    nearly = numeric_reference(np.array([0.1, np.nextafter(0.1, 1)] * 50))
    assert len(nearly.edges) == 2
    labels = bin_labels(nearly)
    assert len(set(labels)) == len(labels) == 3
    assert labels[0] == "≤ 0.10000000000000001"


def test_write_report_paths_latest_and_index(tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = make_run(model="fraud model", run_id="run-1")
    url = write_report(store, first, render_report(first))
    assert url == "/reports/drift/fraud%20model/2/run-1.html"
    folder = store / "reports" / "drift" / "fraud model" / "2"
    assert (folder / "run-1.html").read_text() == (folder / "latest.html").read_text()

    second = make_run(model="fraud model", run_id="run-2", categorical_drifted=False)
    write_report(store, second, render_report(second))
    assert "No drift" in (folder / "latest.html").read_text()
    assert sorted(p.name for p in folder.iterdir()) == ["latest.html", "run-1.html", "run-2.html"]

    index = (store / "reports" / "index.html").read_text()
    assert 'href="drift/fraud%20model/2/latest.html"' in index
    assert not any((store / ".staging").glob("*.tmp"))


def test_index_lists_each_model_version_once(tmp_path: Path) -> None:
    store = tmp_path / "store"
    write_index(store)
    assert "No reports yet" in (store / "reports" / "index.html").read_text()
    for version in ("10", "2"):
        for run_id in ("a", "b"):
            run = make_run(version=version, run_id=run_id)
            write_report(store, run, render_report(run))
    index = (store / "reports" / "index.html").read_text()
    links = re.findall(r'href="([^"]+)"', index)
    assert links == ["drift/titanic/2/latest.html", "drift/titanic/10/latest.html"]


def test_unsafe_names_are_refused(tmp_path: Path) -> None:
    for bad in (make_run(model="../etc"), make_run(version=".."), make_run(run_id="latest")):
        with pytest.raises(ValueError):
            write_report(tmp_path, bad, "<html></html>")


def test_prune_keeps_the_newest_runs_of_each_version(tmp_path: Path) -> None:
    store = tmp_path / "store"
    for version in ("1", "2"):
        for index in range(5):
            run = make_run(version=version, run_id=f"run-{index}")
            write_report(store, run, "<html></html>")
            page = store / "reports" / "drift" / "titanic" / version / f"run-{index}.html"
            os.utime(page, (1_700_000_000 + index, 1_700_000_000 + index))

    assert prune_reports(store, keep=2) == 6
    for version in ("1", "2"):
        folder = store / "reports" / "drift" / "titanic" / version
        assert sorted(p.name for p in folder.iterdir()) == [
            "latest.html",
            "run-3.html",
            "run-4.html",
        ]
    assert prune_reports(store, keep=2) == 0


def test_bar_chart_and_horizontal_bars_are_escaped_svg() -> None:
    svg = bar_chart(["a<b", "c"], {"ref": [0.2, 0.8], "cur&": [0.5, 0.5]}, "t<itle")
    elements = parse(svg)
    assert elements.tags[0][0] == "svg"
    assert sum(1 for tag, _ in elements.tags if tag == "rect") == 4 + 2  # bars + legend
    assert "a<b" in "".join(elements.text) and "<b" not in svg.replace("&lt;b", "")
    with pytest.raises(ValueError, match="2 labels"):
        bar_chart(["a", "b"], {"ref": [1.0]}, "t")

    bars = horizontal_bars(["age", "sex"], [0.3, -0.1], "importance")
    widths = [float(a["width"] or 0) for tag, a in parse(bars).tags if tag == "rect"]
    assert widths[0] == pytest.approx(3 * widths[1], rel=0.02)
