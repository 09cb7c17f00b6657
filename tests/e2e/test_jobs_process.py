"""``driftgate jobs`` as a process: it stops cleanly on SIGTERM, however many arrive.

When ``driftgate up`` dies, the kernel signals its children (PR_SET_PDEATHSIG) and a
supervisor or an operator may signal them again: a jobs process that deadlocked in its
own signal handler on the second SIGTERM once outlived a test run. It must exit, with 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import free_port

pytestmark = pytest.mark.e2e


def test_repeated_sigterms_stop_the_jobs_process(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("auth: {enabled: false}\nlog: {store: store}\ndrift: {interval_s: 0.2}\n")
    (tmp_path / "models").mkdir()  # the drift job's repository must exist
    port = free_port()
    command = [sys.executable, "-m", "driftgate", "jobs", "--config", str(config)]
    with (tmp_path / "jobs.log").open("wb") as log_file:
        process = subprocess.Popen(
            # Another loopback address than the default: the flag decides where it listens.
            [*command, "--metrics-port", str(port), "--metrics-host", "127.0.0.2"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.2:{port}/metrics", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        metrics = httpx.get(f"http://127.0.0.2:{port}/metrics", timeout=5).text
        assert "driftgate_job_runs_total" in metrics
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        for _ in range(5):
            os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) == 0, (tmp_path / "jobs.log").read_text()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)
    assert "stopping on SIGTERM" in (tmp_path / "jobs.log").read_text()
