"""Start real driftgate processes on free loopback ports, and always stop them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def activated_environment() -> dict[str, str]:
    """``os.environ`` as a reader has it after the README's ``. .venv/bin/activate``.

    This interpreter's bin folder, where ``pip install -e .`` put the ``driftgate``
    script, comes first on ``PATH`` (and ``VIRTUAL_ENV`` names the venv), so documented
    commands run as written and fail as a reader's would, with "command not found", when
    nothing on that ``PATH`` provides them.
    """
    bin_dir = Path(sys.executable).parent  # not resolved: a venv's python is a symlink
    if not (bin_dir / "driftgate").is_file():
        raise RuntimeError(
            f"no driftgate script in {bin_dir}: the documented commands need the project "
            "installed into this interpreter's environment (`make venv`, or `pip install -e .`)"
        )
    return {
        **os.environ,
        "PATH": os.pathsep.join([str(bin_dir), os.environ.get("PATH", os.defpath)]),
        "VIRTUAL_ENV": sys.prefix,
    }


@dataclass
class RunningProcess:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def driftgate_process(
    args: Sequence[str],
    port: int,
    *,
    log_path: Path,
    ready_path: str = "/v2/health/ready",
    timeout_s: float = 120.0,
    env: dict[str, str] | None = None,
) -> Iterator[RunningProcess]:
    """Run ``python -m driftgate ARGS`` until ``ready_path`` answers 200."""
    full_env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "1",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        **(env or {}),
    }
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "driftgate", *args],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
            start_new_session=True,
        )
    running = RunningProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        _wait_ready(running, ready_path, timeout_s)
        yield running
    finally:
        _stop(process)


def _wait_ready(running: RunningProcess, path: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if running.process.poll() is not None:
            raise RuntimeError(
                f"process exited with {running.process.returncode}:\n{running.log()}"
            )
        try:
            if httpx.get(running.url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"process not ready after {timeout_s}s:\n{running.log()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
