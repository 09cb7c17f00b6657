"""The explain report: a self-contained page per run, beside the drift reports."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from drift.report import prune_reports
from explain.report import (
    attribution_histogram,
    drift_report_link,
    render_report,
    write_report,
)
from tests.explain.runs import make_run


def test_each_method_has_its_bars_table_and_comparisons() -> None:
    html = render_report(make_run())
    assert "Permutation importance" in html and "Kernel SHAP" in html
    assert "drop in accuracy against the feedback labels" in html
    assert "Unshuffled score 0.81." in html
    # Bars carry the std beside the feature, most important first.
    permutation = html.split('<section id="permutation">')[1].split("</section>")[0]
    labels = re.findall(r"<title>([a-z]+ ± [0-9.]+)</title>", permutation)
    assert labels == ["sex ± 0.03", "fare ± 0.005", "pclass ± 0.01"]
    assert "<td>sex</td>" in permutation and "95.2%" in permutation  # 0.20 of 0.21
    assert "-2.0 pts" in permutation  # sex's shift since the previous run
    assert "Rank correlation with the previous run: 0.5" in permutation
    shap = html.split('<section id="kernel_shap">')[1].split("</section>")[0]
    assert "Rank correlation with the reference: 1" in shap
    assert "+15.0 pts" in shap


def test_kernel_shap_attributions_are_drawn_per_feature() -> None:
    html = render_report(make_run())
    shap = html.split('<section id="kernel_shap">')[1]
    assert "Attribution distributions" in shap
    for feature in ("fare", "sex", "pclass"):
        assert f"{feature}: SHAP values (share of rows)" in shap
    assert "the base value 0.38" in shap


def test_the_facts_say_what_was_explained_and_what_it_cost() -> None:
    html = render_report(make_run())
    assert "2000 logged rows in the window, 600 labelled" in html
    assert "permutation 50, kernel_shap 40" in html
    assert "7 predict calls, 31000 predicted rows, 2.50 s of a 30 s budget" in html
    assert "profile-20250101T000000.000000Z.json" in html


def test_every_text_is_escaped() -> None:
    html = render_report(make_run(feature_names=("<script>x</script>", "sex", "pclass")))
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_the_histogram_shares_add_up_to_one() -> None:
    labels, shares = attribution_histogram(np.array([-0.2, -0.1, 0.0, 0.05, 0.3, np.nan]))
    assert len(labels) == len(shares) == 9
    assert sum(shares) == pytest.approx(1.0)
    assert attribution_histogram(np.array([0.1, 0.1])) == (["0.1"], [1.0])
    assert attribution_histogram(np.array([np.nan])) == (["no values"], [0.0])


@pytest.mark.parametrize(
    "values",
    [
        [0.1, np.nextafter(0.1, 1)],  # one row explained again: equal up to rounding
        [0.1, np.nextafter(0.1, 1), np.nextafter(np.nextafter(0.1, 1), 1), 0.1],
        [-1e308, 0.0, 1e308],  # their difference overflows
        [np.finfo(float).min, np.finfo(float).max],
        [0.0, 5e-324],  # the smallest float apart
        [1e-320, 2e-320],
        [-np.inf, 2.0, np.inf, np.nan, 2.0 + 4e-16],
    ],
)
def test_any_finite_values_make_a_histogram(values: list[float]) -> None:
    """np.histogram refused ``range=`` narrower than 9 bins of the values' rounding ("Too
    many bins for data range"), failing the report and so the explain run of the version."""
    labels, shares = attribution_histogram(np.array(values))

    assert 1 <= len(labels) <= 9 and len(labels) == len(shares)
    assert sum(shares) == pytest.approx(1.0)
    assert all(" to " in label for label in labels)
    assert len(set(labels)) == len(labels)  # the edges are told apart
    assert all("nan" not in label and "inf" not in label for label in labels)


def test_values_a_rounding_apart_share_one_bin_labelled_with_the_digits_that_differ() -> None:
    assert attribution_histogram(np.array([0.1, np.nextafter(0.1, 1), 0.1])) == (
        ["0.10000000000000001 to 0.10000000000000002"],
        [1.0],
    )


def test_pages_are_written_linked_from_the_index_and_pruned(tmp_path: Path) -> None:
    url = write_report(tmp_path, make_run(), "<p>first</p>")
    assert url == "/reports/explain/titanic/1/run-0001.html"
    folder = tmp_path / "reports" / "explain" / "titanic" / "1"
    write_report(tmp_path, make_run(run_id="run-0002"), "<p>second</p>")
    assert (folder / "latest.html").read_text() == "<p>second</p>"
    index = (tmp_path / "reports" / "index.html").read_text()
    assert 'href="explain/titanic/1/latest.html"' in index
    assert prune_reports(tmp_path, keep=1, kind="explain") == 1
    assert sorted(p.name for p in folder.iterdir()) == ["latest.html", "run-0002.html"]


def test_a_run_id_that_would_leave_the_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="report path segment"):
        write_report(tmp_path, make_run(run_id="../x"), "")
    with pytest.raises(ValueError, match="latest"):
        write_report(tmp_path, make_run(run_id="latest"), "")


def test_the_drift_report_of_the_version_is_linked_once_it_exists(tmp_path: Path) -> None:
    assert drift_report_link(tmp_path, "titanic", "1") is None
    drift = tmp_path / "reports" / "drift" / "titanic" / "1"
    drift.mkdir(parents=True)
    (drift / "latest.html").write_text("drift")
    link = drift_report_link(tmp_path, "titanic", "1")
    assert link == "../../../drift/titanic/1/latest.html"
    html = render_report(make_run(), drift_link=link)
    assert f'<a href="{link}">Drift report of this version</a>' in html
