"""The prediction-log lines docs/runbook.md tells on-call to look for are the lines the
writer logs: the writer is run through each failure the runbook describes, and every
line it quotes (``prediction log: ...``, ``the store folder ...``; ``N`` for a number,
``<store>`` or ``<path>`` for a path, ``...`` for the rest) must match one logged, and
every line that reports a loss must be quoted."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from monitoring.prediction_log import LogSettings, PredictionLogWriter, PredictionRecord
from monitoring.prediction_log.layout import partition_dir
from monitoring.prediction_log.segments import predictions_table
from tests.monitoring.builders import NOW, block_partition, predictions, query

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"
QUOTED = re.compile(r"`((?:prediction log: |the store folder )[^`]*)`")
PLACEHOLDER = re.compile(r"\\\.\\\.\\\.|<(?:store|path)>|\b[NSF]\b")


def quoted_lines() -> list[str]:
    return QUOTED.findall(" ".join(RUNBOOK.read_text().split()))


def as_pattern(quoted: str) -> re.Pattern[str]:
    """A quoted line, its placeholders standing for what the writer puts there."""
    stands_for = {r"\.\.\.": ".*", "<store>": r"\S+", "<path>": r"\S+"}
    return re.compile(
        PLACEHOLDER.sub(
            lambda found: stands_for.get(found.group(), r"\d+(?:\.\d+)?"), re.escape(quoted)
        )
    )


def run_through_failures(
    writer: PredictionLogWriter,
    store: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> list[logging.LogRecord]:
    """The writer through each failure the runbook describes; what it logged."""
    monkeypatch.setattr(writer._outage, "settle_s", 0.0)  # no wait for failures to stop
    with caplog.at_level(logging.INFO):
        blocker = block_partition(store)  # writes fail, then work again
        writer.submit(predictions(4, prefix="blocked"))
        writer.flush()
        blocker.unlink()
        writer.submit(predictions(2, prefix="unblocked"))
        writer.flush()

        mounted = store.with_name("volume")  # the mount drops, then comes back
        store.rename(mounted)
        store.mkdir()
        writer.submit(predictions(1, prefix="replaced"))
        writer.flush()
        store.rmdir()
        writer.submit(predictions(1, prefix="gone"))
        writer.flush()
        mounted.rename(store)

        def buggy(records: Sequence[PredictionRecord]) -> object:  # fails outside retries
            if len(records) > 1 and records[0].model == "broken":
                raise RuntimeError("a bug in the segment builder")
            return predictions_table(records)

        with monkeypatch.context() as patched:
            patched.setattr("monitoring.prediction_log.segment_writer.predictions_table", buggy)
            writer.submit(predictions(3, model="broken"))
            writer.flush()

        damaged = partition_dir(store, "predictions", "titanic", NOW.date()) / "torn.parquet"
        damaged.write_bytes(b"PAR1 cut short")
        query(store, "SELECT count(*) FROM predictions")  # sets it aside

        stopped = PredictionLogWriter(
            store.with_name("stopped"), LogSettings(), CollectorRegistry()
        )
        stopped.start()  # and stopped while its writes fail
        block_partition(stopped.root)
        stopped.submit(predictions(1, prefix="stopped"))
        stopped.close()

        late = store.with_name("late")  # a writer started before its store was mounted
        volume = shutil.copytree(store, store.with_name("late-volume"))
        started_early = PredictionLogWriter(late, LogSettings(), CollectorRegistry())
        started_early.start()
        try:
            shutil.rmtree(late)
            volume.rename(late)
            started_early.submit(predictions(1, prefix="late"))
            started_early.flush()
        finally:
            started_early.close()
    return caplog.records


def lines_of(records: list[logging.LogRecord]) -> list[str]:
    """Each record's message and, after a traceback, the error it ends with."""
    lines = [record.getMessage() for record in records]
    lines += [str(record.exc_info[1]) for record in records if record.exc_info]
    return lines


def test_every_log_line_the_runbook_quotes_is_logged(
    writer: PredictionLogWriter,
    store: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    logged = lines_of(run_through_failures(writer, store, caplog, monkeypatch))
    quoted = quoted_lines()
    assert len(quoted) >= 8, quoted
    for line in quoted:
        pattern = as_pattern(line)
        assert any(pattern.match(found) for found in logged), (line, logged)


def test_the_runbook_quotes_every_line_that_reports_lost_records(
    writer: PredictionLogWriter,
    store: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It told on-call to look for ``could not write a batch of N records``, a line the
    writer never logged, and quoted none of the lines that say records were dropped."""
    records = run_through_failures(writer, store, caplog, monkeypatch)
    writers = [r for r in records if r.name == "monitoring.prediction_log.writer"]
    reporting = [r.getMessage() for r in writers if r.levelno >= logging.WARNING]
    patterns = [as_pattern(line) for line in quoted_lines()]
    assert len(reporting) >= 5, reporting
    for line in reporting:
        assert any(pattern.match(line) for pattern in patterns), line
