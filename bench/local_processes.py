"""The processes a gateway bench runs: started in their own session with their output in a
log file, always stopped, waited on until ready, optionally pinned to CPUs (``Placement``);
plus the ``driftgate`` command line, the demo repository they serve, and a gateway config.

Used by gateway_overhead.py, batching.py and log_overhead.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Placement:
    """Which CPUs the runtime and the front (gateways and wrk) may use; None: any."""

    runtime: frozenset[int] | None = None
    front: frozenset[int] | None = None

    @classmethod
    def split(cls) -> Placement:
        """The runtime on the first half of this process's CPUs, the front on the rest."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise SystemExit("--placement split needs at least 2 CPUs")
        half = len(cpus) // 2
        return cls(frozenset(cpus[:half]), frozenset(cpus[half:]))

    def describe(self) -> str:
        if self.runtime is None or self.front is None:
            return "processes free to run on any CPU"
        return (
            f"the runtime pinned to CPU {_cpu_list(self.runtime)}, the gateways and wrk to "
            f"CPU {_cpu_list(self.front)} (as on separate nodes or pods)"
        )


def _cpu_list(cpus: frozenset[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def pinned_to(cpus: frozenset[int] | None) -> list[str]:
    """The command prefix that pins a child, and every thread it starts, to ``cpus``
    (``taskset`` execs the command: the pid is the command's own)."""
    return [] if cpus is None else ["taskset", "-c", _cpu_list(cpus)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@contextmanager
def started(
    name: str,
    argv: Sequence[str],
    port: int,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    *,
    cpus: frozenset[int] | None = None,
) -> Iterator[Process]:
    """Run ``argv`` (its own session, log to a file) and always stop it afterwards."""
    log_path = workdir / f"{name}.log"
    # No span exporter unless ``env`` names one (spans still get their ids and sampling, as
    # `driftgate up` runs); not OTEL_SDK_DISABLED, which would swap in a no-op tracer and
    # drop the trace ids too; the default sampler unless ``env`` names one.
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name
        not in (
            "OTEL_SDK_DISABLED",
            "OTEL_TRACES_EXPORTER",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_TRACES_SAMPLER",
            "OTEL_TRACES_SAMPLER_ARG",
        )
    }
    full_env = {
        **inherited,
        "TF_CPP_MIN_LOG_LEVEL": "1",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        **(env or {}),
    }
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            [*pinned_to(cpus), *argv],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=ROOT,
            start_new_session=True,
        )
    process = Process(name, popen, f"http://127.0.0.1:{port}", log_path)
    try:
        yield process
    finally:
        stop(popen)


def stop(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is not None:
        return
    popen.send_signal(signal.SIGTERM)
    try:
        popen.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(timeout=5)


def wait_ready(process: Process, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(
                f"{process.name} exited with {process.popen.returncode}:\n{process.log_tail()}"
            )
        try:
            if httpx.get(process.url + "/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{process.name} not ready after {timeout_s:g}s:\n{process.log_tail()}")


def driftgate(*args: str) -> list[str]:
    return [sys.executable, "-m", "driftgate", "--log-level", "WARNING", *args]


def build_demo(repository: Path) -> Path:
    """``driftgate demo build`` into ``repository`` (about half a minute)."""
    print(f"building the demo repository in {repository} ...", flush=True)
    subprocess.run(
        driftgate("demo", "build", str(repository)),
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "1", "TF_ENABLE_ONEDNN_OPTS": "0"},
    )
    return repository


def gateway_yaml(path: Path, port: int, replica: str, auth: Mapping[str, object]) -> Path:
    config = {"listen": {"host": "127.0.0.1", "port": port}, "replicas": [replica], "auth": auth}
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    return path
