"""bench/benchmarks_doc.py: every bench script's ``--write`` replaces its own marked section of
BENCHMARKS.md and nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.test_drift_benches import BENCH, load

benchmarks_doc = load("benchmarks_doc")

BEGIN = "<!-- bench/batching.py: begin (rewritten by --write) -->"
END = "<!-- bench/batching.py: end -->"
OTHER = (
    "<!-- bench/drift_speed.py: begin (rewritten by --write) -->\n"
    "## Drift job speed\n\nmeasured\n"
    "<!-- bench/drift_speed.py: end -->\n"
)
READING = "\n### Reading the batching numbers (hand-written; `--write` leaves this part alone)\n"


def test_the_markers_are_named_after_the_script() -> None:
    expected = (BEGIN, END)
    assert benchmarks_doc.section_markers("batching") == expected
    assert benchmarks_doc.section_markers("bench/batching.py") == expected
    assert benchmarks_doc.section_markers(str(BENCH / "batching.py")) == expected


def test_a_section_in_the_middle_is_replaced_and_the_text_around_it_kept(
    tmp_path: Path,
) -> None:
    page = tmp_path / "BENCHMARKS.md"
    before = "# Benchmarks\n\nintro\n\n" + OTHER + "\n"
    after = READING + "\nkept as written\n\n" + OTHER
    page.write_text(f"{before}{BEGIN}\n## Dynamic batching\n\nold\n{END}\n{after}")

    benchmarks_doc.write_section(page, "batching", "## Dynamic batching\n\nnew\n")

    assert page.read_text() == f"{before}{BEGIN}\n## Dynamic batching\n\nnew\n{END}\n{after}"


def test_a_section_not_there_yet_is_appended_after_a_blank_line(tmp_path: Path) -> None:
    page = tmp_path / "BENCHMARKS.md"
    page.write_text("# Benchmarks\n\n" + OTHER + "\n\n")

    benchmarks_doc.write_section(page, "batching", "new\n")

    assert page.read_text() == f"# Benchmarks\n\n{OTHER}\n{BEGIN}\nnew\n{END}\n"


def test_a_missing_page_is_created(tmp_path: Path) -> None:
    page = tmp_path / "BENCHMARKS.md"

    benchmarks_doc.write_section(page, "batching", "new\n")

    assert page.read_text() == f"# Benchmarks\n\n{BEGIN}\nnew\n{END}\n"


def test_writing_twice_leaves_one_section(tmp_path: Path) -> None:
    page = tmp_path / "BENCHMARKS.md"
    page.write_text("# Benchmarks\n\n" + OTHER + READING)

    benchmarks_doc.write_section(page, "batching", "first\n")
    benchmarks_doc.write_section(page, "batching", "second\n")

    text = page.read_text()
    assert text.count(BEGIN) == text.count(END) == 1
    assert "second" in text and "first" not in text
    assert text.startswith("# Benchmarks\n\n" + OTHER + READING)


def test_what_follows_the_end_marker_is_kept_as_it_is() -> None:
    text = f"{BEGIN}\nold\n{END}\n\n\nreading\n"

    assert benchmarks_doc.with_section(text, "batching", "new\n") == (
        f"{BEGIN}\nnew\n{END}\n\n\nreading\n"
    )


def test_a_begin_marker_without_its_end_is_refused_not_guessed(tmp_path: Path) -> None:
    page = tmp_path / "BENCHMARKS.md"
    page.write_text(f"# Benchmarks\n\n{BEGIN}\nold\n\n{OTHER}")

    with pytest.raises(SystemExit, match="put the end marker back"):
        benchmarks_doc.write_section(page, "batching", "new\n")

    assert page.read_text() == f"# Benchmarks\n\n{BEGIN}\nold\n\n{OTHER}"


@pytest.mark.parametrize(
    "script", ["gateway_overhead", "log_overhead", "drift_speed", "explain_cost", "batching"]
)
def test_benchmarks_md_has_each_scripts_markers_once(script: str) -> None:
    text = benchmarks_doc.BENCHMARKS.read_text()
    begin, end = benchmarks_doc.section_markers(script)
    assert text.count(begin) == text.count(end) == 1
    assert text.index(begin) < text.index(end)
