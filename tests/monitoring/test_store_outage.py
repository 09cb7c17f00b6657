"""The writer through a store outage: its mount dropping, writes refused, and the end of it.

Each failed write is counted like any other (``driftgate_log_write_errors_total``, records
dropped as ``write_failed``), logged in full once, and the first flush that writes again
says how long writing failed and what it cost.
"""

from __future__ import annotations

import errno
import logging
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from monitoring.prediction_log import LogSettings, PredictionLogWriter
from monitoring.prediction_log.outage import WriteOutage
from tests.monitoring.builders import block_partition, log_records, predictions, query, sample

WRITER_LOG = "monitoring.prediction_log.writer"


def parquet_files(folder: Path) -> list[Path]:
    return list(folder.rglob("*.parquet"))


@pytest.mark.parametrize(
    ("replaced", "says"),
    [
        (True, "is no longer the one the writer opened (device/inode changed): a mount dropped"),
        (False, "is gone (the writer opened it at start): a mount dropped?"),
    ],
)
def test_a_store_whose_mount_dropped_is_not_written_until_it_is_back(
    writer: PredictionLogWriter,
    store: Path,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
    *,
    replaced: bool,
    says: str,
) -> None:
    """``umount -l`` of the store's volume: the writer went on writing segments into the
    empty folder underneath, where no reader looks, with no error and no metric. (The
    store folder did not exist before the writer started: creating it is not a change.)"""
    writer.submit(predictions(2, prefix="before"))
    writer.flush()
    mounted = store.with_name("volume")
    store.rename(mounted)  # the mount goes ...
    if replaced:
        store.mkdir()  # ... and the folder it covered shows

    with caplog.at_level(logging.ERROR, logger=WRITER_LOG):
        writer.submit(predictions(3, prefix="during"))
        writer.flush()

    assert log_records(registry, "predictions", "dropped", "write_failed") == 3
    assert sample(registry, "driftgate_log_write_errors_total") == 3  # each attempt
    if replaced:
        assert list(store.iterdir()) == []  # nothing written underneath
    else:
        assert not store.exists()  # not created again either
    errors = [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"the store folder {store} {says}")
    assert "Nothing is written" in errors[0]

    if replaced:
        store.rmdir()
    mounted.rename(store)  # the mount is back
    writer.submit(predictions(4, prefix="after"))
    writer.flush()
    assert query(store, "SELECT count(*) FROM predictions") == [(6,)]


def test_a_store_mounted_after_start_is_written_into(
    store: Path, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """An NFS ``bg`` mount or a volume attached late covers the empty folder the writer
    opened: the new folder holds the store, and the writer goes on there (it refused every
    write until a restart)."""
    volume = store.with_name("volume")
    earlier = PredictionLogWriter(volume, LogSettings(), CollectorRegistry())
    earlier.start()
    earlier.submit(predictions(2, prefix="earlier"))  # the store on the volume
    earlier.close()
    writer = PredictionLogWriter(store, LogSettings(flush_interval_s=0.1), registry)
    writer.start()  # before the mount: the folder under it, without tables
    try:
        shutil.rmtree(store)
        volume.rename(store)  # mounted
        with caplog.at_level(logging.WARNING, logger=WRITER_LOG):
            writer.submit(predictions(3, prefix="after"))
            writer.flush()
    finally:
        writer.close()

    assert log_records(registry, "predictions", "dropped", "write_failed") == 0
    assert query(store, "SELECT count(*) FROM predictions") == [(5,)]
    [said] = [
        r.getMessage()
        for r in caplog.records
        if r.name == WRITER_LOG and r.levelno >= logging.WARNING
    ]
    assert said == (
        f"prediction log: the store folder {store} is another folder than at start, one "
        "that holds a store's tables (mounted since): writing into it"
    )


def test_an_empty_folder_in_place_of_a_store_that_had_tables_is_not_written(
    writer: PredictionLogWriter, store: Path, registry: CollectorRegistry
) -> None:
    """Once the folder the writer opened holds tables, no other folder takes its place,
    whatever it holds: a mount that dropped shows the folder it covered."""
    writer.submit(predictions(2, prefix="before"))
    writer.flush()
    store.rename(store.with_name("volume"))
    (store / "predictions").mkdir(parents=True)  # an old store under the mount point

    writer.submit(predictions(3, prefix="during"))
    writer.flush()

    assert log_records(registry, "predictions", "dropped", "write_failed") == 3


def test_a_store_refusing_permission_logs_one_traceback_whatever_file_each_attempt_names(
    writer: PredictionLogWriter,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """EACCES (or EROFS) names the fresh staging file it could not create: each attempt
    looked like a new error, 36 tracebacks and 902 log lines in 6 s."""

    def refused(table: Any, where: Any, **options: Any) -> None:
        raise PermissionError(
            errno.EACCES,
            f"Failed to open local file '{where}'. Detail: [errno 13] Permission denied",
        )

    monkeypatch.setattr("monitoring.prediction_log.layout.pq.write_table", refused)
    with caplog.at_level(logging.ERROR, logger=WRITER_LOG):
        for n in range(4):
            writer.submit(predictions(2, prefix=f"try{n}"))
            writer.flush()

    assert sample(registry, "driftgate_log_write_errors_total") == 12
    errors = [str(r.exc_info[1]) for r in caplog.records if r.exc_info]
    assert len(errors) == 1
    assert ".staging/" in errors[0]  # the first one in full


def test_writing_again_after_failures_says_how_long_and_how_much_was_lost(
    writer: PredictionLogWriter,
    store: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After an outage the log read "dropped 4 predictions records after 3 failed attempts"
    (once a minute) where far more had been dropped, and nothing said it was over."""
    monkeypatch.setattr(writer._outage, "settle_s", 0.0)  # no wait for failures to stop
    blocker = block_partition(store)
    with caplog.at_level(logging.INFO, logger=WRITER_LOG):
        for n in range(3):
            writer.submit(predictions(4, prefix=f"lost{n}"))
            writer.flush()
        blocker.unlink()
        for n in range(2):
            writer.submit(predictions(2, prefix=f"back{n}"))
            writer.flush()

    ends = [r for r in caplog.records if "works again" in r.getMessage()]
    assert len(ends) == 1 and ends[0].levelname == "WARNING"
    assert re.fullmatch(
        r"prediction log: writing works again after \d+\.\d s of failures \(failed flushes: 3, "
        r"records dropped: 12, reason write_failed or flush_failed\)",
        ends[0].getMessage(),
    )


def test_an_outage_counts_only_flushes_that_lost_records_to_a_failed_write() -> None:
    outage = WriteOutage(settle_s=30.0)
    assert outage.recovered(started=5.0) is None  # nothing failed: nothing to say
    outage.failed(started=10.0, dropped=20)
    outage.failed(started=11.0, dropped=780)
    assert outage.recovered(started=52.5) == (
        "prediction log: writing works again after 42.5 s of failures (failed flushes: 2, "
        "records dropped: 800, reason write_failed or flush_failed)"
    )
    assert outage.recovered(started=53.0) is None  # said once


def test_an_outage_ends_only_once_failures_stopped_for_a_while() -> None:
    """One partition refusing writes and the others taking them ended and began an outage
    every other flush, a line each time (10 lines in 20 flushes)."""
    outage = WriteOutage(settle_s=30.0)
    said = []
    for second in range(0, 40, 2):  # a failed flush, then a good one, and again
        outage.failed(started=float(second), dropped=1)
        said.append(outage.recovered(started=second + 1.0))
    assert said == [None] * 20
    assert outage.recovered(started=68.0) is not None  # 30 s after the last failure


def test_a_writer_closed_during_an_outage_says_so(
    store: Path, registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """The restart a dropped mount's message advises ended the outage without a word."""
    writer = PredictionLogWriter(store, LogSettings(flush_interval_s=0.1), registry)
    writer.start()
    block_partition(store)
    writer.submit(predictions(4, prefix="lost"))
    with caplog.at_level(logging.WARNING, logger=WRITER_LOG):
        writer.close()

    [line] = [r.getMessage() for r in caplog.records if "stopping while" in r.getMessage()]
    assert re.fullmatch(
        r"prediction log: stopping while writes fail, for \d+\.\d s \(failed flushes: 1, "
        r"records dropped: 4, reason write_failed or flush_failed\)",
        line,
    )
