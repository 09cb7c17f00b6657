"""``driftgate jobs`` as a process: it stops cleanly on SIGTERM, however many arrive and
whichever of its threads the kernel hands them to.

When ``driftgate up`` dies, the kernel signals its children (PR_SET_PDEATHSIG) and a
supervisor or an operator may signal them again: a jobs process that deadlocked in its
own signal handler on the second SIGTERM once outlived a test run. It must exit, with 0.
A later version blocked the signals in its Python threads only, and died of a SIGTERM
the kernel gave to OpenBLAS's native thread (exit -15, once in CI).
"""

from __future__ import annotations

import ctypes
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import free_port

pytestmark = pytest.mark.e2e


# tgkill(2), which signals one thread of a process; os.kill lets the kernel choose.
TGKILL_SYSCALL = {"x86_64": 234, "aarch64": 131}.get(platform.machine())


def start_jobs(tmp_path: Path, *extra: str) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``driftgate jobs`` with a fast drift job; return it and its /metrics port once
    /metrics answers on 127.0.0.2."""
    config = tmp_path / "gateway.yaml"
    config.write_text("auth: {enabled: false}\nlog: {store: store}\ndrift: {interval_s: 0.2}\n")
    (tmp_path / "models").mkdir()  # the drift job's repository must exist
    port = free_port()
    command = [sys.executable, "-m", "driftgate", "jobs", "--config", str(config)]
    with (tmp_path / "jobs.log").open("wb") as log_file:
        process = subprocess.Popen(
            # Another loopback address than the default: the flag decides where it listens.
            [*command, "--metrics-port", str(port), "--metrics-host", "127.0.0.2", *extra],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.2:{port}/metrics", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    # Not some other process on a port taken since free_port() looked (it would answer).
    assert process.poll() is None, (tmp_path / "jobs.log").read_text()
    return process, port


def threads_taking_sigterm(pid: int) -> list[int]:
    """The ids of the process's threads that do not block SIGTERM, in creation order."""
    takers = []
    for tid in sorted(int(name) for name in os.listdir(f"/proc/{pid}/task")):
        status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        blocked = int(
            next(line for line in status.splitlines() if line.startswith("SigBlk:"))[7:], 16
        )
        if not blocked & (1 << (signal.SIGTERM - 1)):
            takers.append(tid)
    return takers


def stop_for_good(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def test_repeated_sigterms_stop_the_jobs_process(tmp_path: Path) -> None:
    process, port = start_jobs(tmp_path)
    try:
        metrics = httpx.get(f"http://127.0.0.2:{port}/metrics", timeout=5).text
        assert "driftgate_job_runs_total" in metrics
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
        for _ in range(5):
            os.kill(process.pid, signal.SIGTERM)
        assert process.wait(timeout=30) == 0, (tmp_path / "jobs.log").read_text()
    finally:
        stop_for_good(process)
    assert "stopping on SIGTERM" in (tmp_path / "jobs.log").read_text()


@pytest.mark.skipif(TGKILL_SYSCALL is None, reason=f"no tgkill number for {platform.machine()}")
def test_a_sigterm_given_to_any_thread_stops_the_jobs_process(tmp_path: Path) -> None:
    process, _ = start_jobs(tmp_path)
    try:
        # The kernel may hand a process-directed SIGTERM to any thread that does not block
        # it (jemalloc's background thread blocks all): signal the first such other thread.
        takers = [tid for tid in threads_taking_sigterm(process.pid) if tid != process.pid]
        assert takers, "the jobs process runs threads (scheduler, /metrics, OpenBLAS)"
        libc = ctypes.CDLL(None, use_errno=True)
        assert libc.syscall(TGKILL_SYSCALL, process.pid, takers[0], signal.SIGTERM) == 0
        assert process.wait(timeout=30) == 0, (tmp_path / "jobs.log").read_text()
    finally:
        stop_for_good(process)
    assert "stopping on SIGTERM" in (tmp_path / "jobs.log").read_text()


def test_stop_signals_after_the_first_are_ignored_through_interpreter_shutdown() -> None:
    """Python's shutdown resets signals that have a Python handler to the default action
    (terminate); ignored ones stay ignored, so a late SIGTERM cannot turn a clean stop
    into exit -15."""
    script = (
        "import os, signal\n"
        "from driftgate.jobs import StopSignals\n"
        "stop = StopSignals()\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
        "print(stop.wait().name)\n"
        "print(signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)\n"
        "print(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)\n"
        "os.kill(os.getpid(), signal.SIGTERM)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["SIGTERM", "True", "True"]
