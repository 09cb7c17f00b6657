"""Smoke tests of the drift benchmarks (bench/drift_speed.py, bench/drift_quality.py): each
runs end to end at a tiny size and prints its whole table; drift_quality's ``--write`` keeps
everything outside its markers in docs/drift.md (drift_speed writes BENCHMARKS.md through
bench/benchmarks_doc.py, tested in test_benchmarks_doc.py). The targets themselves are not
asserted here."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def load(name: str) -> ModuleType:
    """bench/NAME.py as a module. Its siblings are imported by name, as ``python bench/NAME.py``
    allows (bench/ is not a package): bench/ goes first on ``sys.path``, as it does there."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


drift_speed = load("drift_speed")
drift_quality = load("drift_quality")


def table_rows(report: str) -> list[list[str]]:
    """The cells of every body row of the report's markdown table."""
    lines = [line for line in report.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]


def test_drift_speed_times_both_paths_on_a_real_store(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["--rows", "20000", "--reference-rows", "5000", "--repeats", "1"]
    assert drift_speed.main(argv) == 0
    report = capsys.readouterr().out
    rows = {cells[0]: cells for cells in table_rows(report)}
    assert list(rows) == ["driftgate", "numpy/scipy"]
    for cells in rows.values():
        cold, warm, rss = (float(cell) for cell in cells[1:4])
        assert cold > 0 and warm > 0 and rss > 0
        assert "f3" in cells[5]  # the window's one real shift, found by both paths
    assert "## Drift job speed" in report
    assert "Targets (driftgate, warm)" in report


def test_drift_quality_reports_every_measure(capsys: pytest.CaptureFixture[str]) -> None:
    assert drift_quality.main(["--windows", "10", "--reference-rows", "20000"]) == 0
    report = capsys.readouterr().out
    rows = table_rows(report)
    expected = [(m.scenario, m.name) for m in drift_quality.MEASURES]
    assert [(cells[0], cells[1]) for cells in rows] == expected
    for cells, measure in zip(rows, drift_quality.MEASURES, strict=True):
        assert 0 <= float(cells[2].rstrip("%")) <= 100
        assert cells[5] in (("**pass**", "**FAIL**") if measure.target else ("",))


def test_scenario_changes_touch_only_what_they_name() -> None:
    seed = (3, 1)
    plain = drift_quality.generate(4000, seed)
    shifted = drift_quality.generate(4000, seed, drift_quality.SCENARIOS["f3 +0.5 sd"])
    difference = shifted.columns["in_f3"] - plain.columns["in_f3"]
    np.testing.assert_allclose(difference, drift_quality.F3_SHIFT_SIGMAS * drift_quality.F3_STD)
    np.testing.assert_array_equal(shifted.columns["in_f4"], plain.columns["in_f4"])

    flipped = drift_quality.generate(4000, seed, drift_quality.SCENARIOS["label flip"])
    changed = flipped.labels != plain.labels
    assert not changed[:2800].any() and changed[2800:].all()  # the last 30 % only
    for column, values in plain.columns.items():
        np.testing.assert_array_equal(flipped.columns[column], values)

    recategorised = drift_quality.generate(
        20_000, seed, drift_quality.SCENARIOS["c0 share 40->20%"]
    )
    shares = [np.mean(recategorised.columns["in_c0"] == name) for name in "abcd"]
    np.testing.assert_allclose(shares, [0.2, 0.4, 0.8 / 3, 0.4 / 3], atol=0.01)


def test_drift_quality_writes_between_the_markers_only(tmp_path: Path) -> None:
    page = tmp_path / "drift.md"
    drift_quality.write_doc(page, "first table\n")
    assert page.read_text().startswith("# Drift\n")
    page.write_text("# Drift\n\nlead's intro\n\n" + page.read_text().split("\n", 2)[2] + "\nmore\n")
    drift_quality.write_doc(page, "second table\n")
    text = page.read_text()
    assert "lead's intro" in text and text.endswith("\nmore\n")
    assert "second table" in text and "first table" not in text
    assert text.count(drift_quality.DOC_START) == text.count(drift_quality.DOC_END) == 1


def test_wilson_interval_brackets_the_rate() -> None:
    low, high = drift_quality.wilson(0, 200)
    assert low == 0 and 0.015 < high < 0.02  # the "rule of three", a bit above 3/200
    low, high = drift_quality.wilson(190, 200)
    assert low < 0.95 < high
