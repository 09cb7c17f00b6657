"""On SIGTERM the runtime waits for its requests in flight for at most
``--shutdown-timeout`` / ``DRIFTGATE_SHUTDOWN_TIMEOUT_S`` seconds (default 20), then cuts
off those still running, says how many, and exits (``runtime.draining``).

The real-process tests run ``driftgate runtime`` with one more format, ``sleep``
(tests/runtime/slow_model.py): a model that takes ``x[0]`` seconds.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from logging.handlers import QueueHandler, QueueListener
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

import runtime.heap
from driftgate.cli import build_parser, main
from monitoring.log_queue import flush_queued_logs
from runtime.draining import DEFAULT_SHUTDOWN_TIMEOUT_S
from runtime.settings import RuntimeSettings, RuntimeSettingsError
from tests.e2e.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
#: ``driftgate`` as its console script runs it, with the ``sleep`` format registered first.
LAUNCH = (
    "import sys, runtime.backends; "
    "runtime.backends.FORMATS['sleep'] = 'tests.runtime.slow_model:SleepBackend'; "
    "from driftgate.cli import main; sys.exit(main(sys.argv[1:]))"
)
EVAL = "/v1/models/sleepy/versions/1/eval"


# --- the setting --------------------------------------------------------------------------


def test_the_default_leaves_room_in_kubernetes_default_grace_period(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DRIFTGATE_SHUTDOWN_TIMEOUT_S", raising=False)
    assert RuntimeSettings(repository=tmp_path).shutdown_timeout_s == DEFAULT_SHUTDOWN_TIMEOUT_S
    assert 0 < DEFAULT_SHUTDOWN_TIMEOUT_S <= 20  # terminationGracePeriodSeconds is 30


def test_the_runtime_pods_grace_period_covers_the_prestop_sleep_and_the_shutdown_timeout() -> None:
    deployment = yaml.safe_load((ROOT / "deploy" / "runtime-deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    sleep = int(container["lifecycle"]["preStop"]["exec"]["command"][1])
    assert "--shutdown-timeout" not in container.get("args", [])  # the default applies
    assert sleep + DEFAULT_SHUTDOWN_TIMEOUT_S + 5 <= pod["terminationGracePeriodSeconds"]


@pytest.mark.parametrize("text", ["abc", "-1", "2.5", "nan"])
def test_an_unusable_shutdown_timeout_variable_is_refused_by_name(
    text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFTGATE_SHUTDOWN_TIMEOUT_S", text)
    with pytest.raises(RuntimeSettingsError, match="DRIFTGATE_SHUTDOWN_TIMEOUT_S"):
        RuntimeSettings(repository=tmp_path)


def test_an_unusable_shutdown_timeout_flag_is_refused() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["runtime", "--repository", "m", "--shutdown-timeout", "-1"])


@pytest.mark.parametrize(
    ("argv", "variable", "expected"),
    [
        ([], None, DEFAULT_SHUTDOWN_TIMEOUT_S),
        ([], "7", 7),
        (["--shutdown-timeout", "3"], "7", 3),  # the flag wins
        (["--shutdown-timeout", "0"], None, 0),  # cut off at once
    ],
)
def test_uvicorn_gets_the_shutdown_timeout(
    argv: list[str],
    variable: str | None,
    expected: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if variable is None:
        monkeypatch.delenv("DRIFTGATE_SHUTDOWN_TIMEOUT_S", raising=False)
    else:
        monkeypatch.setenv("DRIFTGATE_SHUTDOWN_TIMEOUT_S", variable)
    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options))
    monkeypatch.setattr(runtime.heap, "enable", lambda: None)

    assert main(["runtime", "--repository", str(tmp_path), *argv]) == 0

    assert served["timeout_graceful_shutdown"] == expected


def test_the_shutdown_waits_for_the_log_records_still_queued() -> None:
    """Litestar logs through a queue; uvicorn's SIGTERM ends the process right after the
    lifespan, so the lifespan waits for the queue, or its last lines would be lost."""
    written: list[str] = []

    class SlowHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            time.sleep(0.05)
            written.append(record.getMessage())

    records: queue.Queue[logging.LogRecord] = queue.Queue()
    handler, listener = QueueHandler(records), QueueListener(records, SlowHandler())
    logging.getLogger().addHandler(handler)
    listener.start()
    try:
        for line in range(5):
            logging.getLogger("driftgate.runtime").warning("line %d", line)
        asyncio.run(flush_queued_logs())
        assert written == [f"line {line}" for line in range(5)]
    finally:
        logging.getLogger().removeHandler(handler)
        listener.stop()


# --- a real process -----------------------------------------------------------------------


class Runtime:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path, started: Path):
        self.process, self.port, self.log_path, self.started = process, port, log, started

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def send(self, seconds: float) -> socket.socket:
        """A model call that takes ``seconds``, once it is running in a worker thread."""
        body = json.dumps({"x": [seconds]}).encode()
        connection = socket.create_connection(("127.0.0.1", self.port))
        connection.sendall(
            f"POST {EVAL} HTTP/1.1\r\nHost: runtime\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        deadline = time.monotonic() + 10
        while not (self.started.exists() and self.started.read_text()):
            assert time.monotonic() < deadline, f"the call never started:\n{self.log()}"
            time.sleep(0.02)
        return connection

    def stop(self) -> float:
        """SIGTERM; the seconds until the process has exited (at most 15: then it fails)."""
        sent = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the runtime was still running 15 s after SIGTERM:\n{self.log()}")
        return time.monotonic() - sent


@pytest.fixture
def sleepy_runtime(tmp_path: Path) -> Iterator[Any]:
    """Starts ``driftgate runtime ARGS`` on the ``sleepy`` model; always stops it."""
    started = tmp_path / "started.txt"
    (tmp_path / "models" / "sleepy" / "1").mkdir(parents=True)
    (tmp_path / "models" / "sleepy" / "1" / "model.txt").write_text("sleep\n")
    (tmp_path / "models" / "sleepy" / "config.yaml").write_text(
        f"format: sleep\nbackend: {{started: {json.dumps(str(started))}}}\n"
    )
    processes: list[subprocess.Popen[bytes]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Runtime:
        port = free_port()
        log = tmp_path / "runtime.log"
        argv = ["runtime", "--repository", str(tmp_path / "models"), "--port", str(port)]
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-c", LAUNCH, *argv, "--poll-interval", "0", *args],
                cwd=ROOT,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env={**os.environ, "DRIFTGATE_INLINE_INFERENCE_MAX_MS": "0", **(env or {})},
                start_new_session=True,
            )
        processes.append(process)
        running = Runtime(process, port, log, started)
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, f"the runtime exited:\n{running.log()}"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200:
                    return running
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"the runtime never became ready:\n{running.log()}"
            time.sleep(0.1)

    yield start
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@pytest.mark.e2e
def test_sigterm_cuts_off_a_hung_call_after_the_timeout_and_says_so(sleepy_runtime: Any) -> None:
    served: Runtime = sleepy_runtime("--shutdown-timeout", "1")
    hung = served.send(600)

    took = served.stop()

    assert took < 6, f"exited {took:.1f} s after SIGTERM with a 1 s timeout"
    log = served.log()
    assert "shutdown: 1 request was cut off unanswered" in log, log
    assert "1 s grace period" in log
    # The cut-off request still held its version: never unloaded under its running thread.
    assert "model sleepy version 1 unloaded" not in log
    hung.settimeout(5)
    answer = http.client.HTTPResponse(hung)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        answer.begin()  # the connection closed without an answer
    hung.close()


@pytest.mark.e2e
def test_sigterm_waits_for_a_call_that_ends_within_the_timeout(sleepy_runtime: Any) -> None:
    served: Runtime = sleepy_runtime(env={"DRIFTGATE_SHUTDOWN_TIMEOUT_S": "10"})
    slow = served.send(1.5)

    took = served.stop()

    slow.settimeout(5)
    answer = http.client.HTTPResponse(slow)
    answer.begin()
    assert answer.status == 200
    assert json.loads(answer.read())["outputs"] == {"y": [1.5]}
    slow.close()
    assert took < 8
    log = served.log()
    assert "cut off" not in log
    assert "model sleepy version 1 unloaded" in log  # once its call was done
