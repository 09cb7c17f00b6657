"""The store's layout: where files live, and the staging folder's leftovers."""

from __future__ import annotations

import os
import time
from pathlib import Path

from monitoring.prediction_log.layout import remove_stale_staging, staging_dir


def test_a_staged_file_from_the_future_is_stale_too(tmp_path: Path) -> None:
    """A leftover whose time a wrong clock set years ahead was never removed: only files
    older than an hour were."""
    staging = staging_dir(tmp_path)
    staging.mkdir()
    now = time.time()
    ages = {
        "future.parquet.tmp": -10 * 365 * 86400,
        "skewed.parquet.tmp": -60,
        "ahead.parquet.tmp": -360,  # an NFS server's clock 6 minutes ahead: a write under way
        "recent.parquet.tmp": 60,
        "old.parquet.tmp": 2 * 3600,
    }
    for name, age_s in ages.items():
        (staging / name).write_bytes(b"x")
        os.utime(staging / name, (now - age_s, now - age_s))

    assert remove_stale_staging(tmp_path) == 2
    assert sorted(p.name for p in staging.iterdir()) == [
        "ahead.parquet.tmp",
        "recent.parquet.tmp",
        "skewed.parquet.tmp",
    ]
