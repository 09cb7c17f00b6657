"""Several writer processes on one store agree on each feature column's shape.

Two real processes (``shape_child``) introduce the same new column at the same moment,
one as a scalar and one as a list, round after round. Whichever registers it first keeps
the plain name; the other's values go to ``<column>__<shape>``, and the views keep working.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from monitoring.prediction_log import SqlResult, run_sql
from monitoring.prediction_log.shape_registry import ShapeRegistry
from tests.monitoring.builders import fits, segment_shapes

ROOT = Path(__file__).resolve().parents[2]
#: Rounds of the race; each introduces one new column in both processes at once.
ROUNDS = 30


def start_writer(store: Path, shape: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.monitoring.shape_child", str(store), shape],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line == "ready\n", child.stderr.read() if child.stderr else line
    return child


def race(children: list[subprocess.Popen[str]], column: str) -> None:
    """Send ``column`` to every child first, then wait for each to have written it."""
    for child in children:
        assert child.stdin is not None
        child.stdin.write(f"{column}\n")
        child.stdin.flush()
    for child in children:
        assert child.stdout is not None
        line = child.stdout.readline()
        assert line == f"done {column}\n", child.stderr.read() if child.stderr else line


def finish(child: subprocess.Popen[str]) -> int:
    """End of input: the child closes its writer and exits (killed if it hangs)."""
    assert child.stdin is not None
    child.stdin.close()
    try:
        return child.wait(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        return child.wait()


def test_two_processes_introducing_a_column_in_two_shapes_at_once_keep_the_views(
    store: Path,
) -> None:
    children = [start_writer(store, "scalar"), start_writer(store, "list")]
    try:
        for n in range(ROUNDS):
            race(children, f"c{n}")
    finally:
        codes = [finish(child) for child in children]
    assert codes == [0, 0]

    result = run_sql(store, "SELECT * FROM predictions")  # fails if a column has two shapes
    assert len(result.rows) == 2 * ROUNDS
    registered = ShapeRegistry(store).load()
    for name, shapes in segment_shapes(store).items():
        # One shape per column: the registered one (or a less specific, all-null one).
        assert all(fits(shape, registered[name]) for shape in shapes), (name, shapes)
    rows = {row["request_id"]: row for row in as_dicts(result)}
    for n in range(ROUNDS):
        scalar = stored_values(rows[f"scalar-c{n}"], f"in_c{n}")
        listed = stored_values(rows[f"list-c{n}"], f"in_c{n}")
        assert list(scalar.values()) == [1.5] and list(listed.values()) == [[1.5, 2.5]]
        assert sorted([*scalar, *listed]) in (
            [f"in_c{n}", f"in_c{n}__list"],  # the scalar writer registered it first
            [f"in_c{n}", f"in_c{n}__scalar"],
        )


def as_dicts(result: SqlResult) -> list[dict[str, Any]]:
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def stored_values(row: dict[str, Any], column: str) -> dict[str, Any]:
    """The non-null values of ``column`` and of its renamed variants in one row."""
    return {
        name: value
        for name, value in row.items()
        if value is not None and (name == column or name.startswith(f"{column}__"))
    }
