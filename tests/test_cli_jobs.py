"""``driftgate jobs``: what it refuses before running anything, and its exit status.

``--once`` (a Kubernetes CronJob) must fail when a job failed for every model version it
tried; it must not make a prediction log store where ``log.store`` points when there is
none (a typo would otherwise report an empty store as all clear).
"""

from __future__ import annotations

import logging
import socket
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from driftgate.cli import main
from monitoring.prediction_log import LogSettings, PredictionLogWriter
from tests.catalog_holder import catalog_held_read_write
from tests.cli_logging import root_logging  # noqa: F401  (an autouse fixture)
from tests.monitoring.builders import predictions


def write_config(folder: Path, extra: str = "") -> Path:
    config = folder / "gateway.yaml"
    config.write_text(f"auth: {{enabled: false}}\nlog: {{store: store}}\n{extra}")
    return config


def unused_port() -> int:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port: int = listener.getsockname()[1]
    return port


@pytest.fixture
def logged(tmp_path: Path) -> Path:
    """A store with recent traffic of titanic/1 (with inputs) and titanic/2 (without)."""
    store = tmp_path / "store"
    writer = PredictionLogWriter(store, LogSettings(flush_interval_s=0.1), CollectorRegistry())
    writer.start()
    now = datetime.now(UTC)
    writer.submit(predictions(5, "a", timestamp=now))
    writer.submit(predictions(5, "b", timestamp=now, version="2", inputs={}))
    writer.close()
    (tmp_path / "models").mkdir()
    return store


def test_once_fails_when_explain_failed_for_every_version_it_tried(
    logged: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(logged.parent, "explain: {min_rows: 2, rows: 2}\n")
    replica = f"http://127.0.0.1:{unused_port()}"  # nothing listens: every call fails
    caplog.set_level(logging.INFO)

    status = main(
        ["jobs", "--once", "--config", str(config), "--job", "explain", "--replica", replica]
    )

    assert status == 1
    assert "every model version tried failed: titanic/1" in caplog.text
    assert "skipped" not in caplog.text.split("every model version tried failed")[1]


def test_once_refuses_a_folder_that_is_not_a_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path)
    (tmp_path / "models").mkdir()

    assert main(["jobs", "--once", "--config", str(config)]) == 2

    assert f"log.store: no prediction log store at {tmp_path / 'store'}" in caplog.text
    assert not (tmp_path / "store").exists()  # nothing made where the typo points


def test_a_store_path_that_cannot_be_a_folder_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "file").write_text("x")
    config = tmp_path / "gateway.yaml"
    config.write_text("auth: {enabled: false}\nlog: {store: file/store}\n")

    assert main(["jobs", "--config", str(config)]) == 2

    assert f"log.store: cannot create {tmp_path / 'file' / 'store'}" in caplog.text


def test_a_missing_model_repository_is_named(
    logged: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(logged.parent, "drift: {models: modles}\n")

    assert main(["jobs", "--once", "--config", str(config), "--job", "drift"]) == 2

    assert f"drift.models: no model repository at {logged.parent / 'modles'}" in caplog.text


def test_a_metrics_port_in_use_is_one_line(logged: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = write_config(logged.parent)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status = main(["jobs", "--config", str(config), "--metrics-port", str(port)])

    assert status == 2
    assert f"cannot serve /metrics on 127.0.0.1 port {port}" in caplog.text


@pytest.mark.skipif(sys.platform != "linux", reason="file locks as on Linux")
@pytest.mark.parametrize("job", ["drift", "explain"])
def test_a_catalog_held_read_write_elsewhere_fails_the_run_in_one_line(
    logged: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, job: str
) -> None:
    """It failed with a 36-line traceback of ``CatalogBusy``."""
    config = write_config(logged.parent, "explain: {min_rows: 2, rows: 2}\n")
    replica = f"http://127.0.0.1:{unused_port()}"
    with catalog_held_read_write(logged, monkeypatch) as pid:
        status = main(
            ["jobs", "--once", "--config", str(config), "--job", job, "--replica", replica]
        )

    assert status == 1
    [failure] = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert failure.exc_info is None
    assert failure.getMessage().startswith(f"job {job} failed: cannot open {logged}")
    assert f"(PID {pid})" in failure.getMessage()
    assert "Traceback" not in caplog.text
