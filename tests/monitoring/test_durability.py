"""Loss bounds, tested on real processes: SIGTERM (close) loses nothing; SIGKILL loses at
most what arrived within the last flush interval; a killed writer never leaves a torn file
where readers look."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.monitoring.builders import query

ROOT = Path(__file__).resolve().parents[2]
INTERVAL_S = 0.2


def start_child(store: Path, interval_s: float, *args: str) -> subprocess.Popen[str]:
    """Run ``log_child`` and wait for its ``submitted`` line."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.monitoring.log_child", str(store), str(interval_s), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line.startswith("submitted"), child.stderr.read() if child.stderr else line
    return child


def stop(child: subprocess.Popen[str], signum: int) -> int:
    child.send_signal(signum)
    return child.wait(timeout=30)


def logged(store: Path) -> int:
    count: int = query(store, "SELECT count(*) FROM predictions")[0][0]
    return count


def test_sigkill_two_intervals_after_submitting_loses_nothing(store: Path) -> None:
    child = start_child(store, INTERVAL_S, "1", "2000")
    time.sleep(2 * INTERVAL_S)
    assert stop(child, signal.SIGKILL) == -signal.SIGKILL
    assert logged(store) >= 2000


def test_sigkill_right_after_submitting_loses_at_most_the_last_interval(store: Path) -> None:
    # Three batches of 1000, two intervals apart; killed as soon as the third is submitted.
    child = start_child(store, INTERVAL_S, "3", "1000")
    assert stop(child, signal.SIGKILL) == -signal.SIGKILL
    found = logged(store)
    assert 2000 <= found <= 3000, f"{found} records on disk"
    staged = list((store / ".staging").iterdir())
    assert all(not p.name.endswith(".parquet") for p in staged)  # never in a view's glob


def test_sigterm_with_close_loses_nothing(store: Path) -> None:
    # A long interval: nothing would be on disk yet without close().
    child = start_child(store, 60, "1", "5000", "--on-sigterm-close")
    assert stop(child, signal.SIGTERM) == 0
    assert logged(store) == 5000
