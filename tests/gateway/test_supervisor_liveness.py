"""``driftgate up``'s supervisor kills a replica that hangs, so that it restarts
(gateway/supervisor.py), with real child processes on loopback ports: each stands in for a
runtime replica with a tiny HTTP server answering ``/v2/health/live``."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.supervisor import Replica, ReplicaSupervisor

#: A replica that answers liveness at once, or (``--silent``) listens and never answers.
STAND_IN = """
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Live(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[1])), Live).serve_forever()
"""


class StandInSupervisor(ReplicaSupervisor):
    def _runtime_command(self, port: int) -> list[str]:
        return [sys.executable, "-c", STAND_IN, str(port)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def eventually(condition: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def restarts() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def supervisor(tmp_path: Path, restarts: list[tuple[str, str]]) -> Iterator[ReplicaSupervisor]:
    running = StandInSupervisor(
        repository=tmp_path,
        ports=[free_port()],
        log_dir=tmp_path,
        max_backoff_s=0.5,
        liveness_interval_s=0.2,
        liveness_timeout_s=0.3,
        liveness_failures=2,
        on_restart=lambda child, reason: restarts.append((child, reason)),
    )
    running.start()
    yield running
    running.stop(grace_s=2)


def test_a_replica_that_hangs_is_killed_and_restarted(
    supervisor: ReplicaSupervisor, restarts: list[tuple[str, str]]
) -> None:
    """A stopped (or deadlocked) replica never exits, so only exits were restarted: it hung
    for good, out of rotation, until someone killed it by hand."""
    [replica] = supervisor.replicas
    hang_and_see_it_restarted(replica)
    assert restarts == [(f"runtime-{replica.port}", "hung")]


def hang_and_see_it_restarted(child: Replica) -> None:
    """Stop ``child`` once it has answered (SIGSTOP: alive, answering nothing), then see it
    killed and a new process answer."""
    assert eventually(lambda: child.answered)
    hung = child.process
    assert hung is not None
    os.kill(hung.pid, signal.SIGSTOP)

    assert eventually(lambda: child.process is not hung and child.answered)
    assert hung.wait(timeout=5) == -signal.SIGKILL


def test_a_replica_that_exits_is_restarted_as_exited(
    supervisor: ReplicaSupervisor, restarts: list[tuple[str, str]]
) -> None:
    [replica] = supervisor.replicas
    first = replica.process
    assert first is not None
    first.terminate()

    assert eventually(lambda: replica.process is not first)
    assert restarts == [(f"runtime-{replica.port}", "exited")]


def test_a_replica_still_starting_is_never_killed(tmp_path: Path) -> None:
    """Liveness is armed by a first answer: a replica that has not answered yet is loading
    its models (minutes for large ones), not hung."""

    class NeverAnswers(ReplicaSupervisor):
        def _runtime_command(self, port: int) -> list[str]:
            return [sys.executable, "-c", "import time; time.sleep(60)"]

    supervisor = NeverAnswers(
        repository=tmp_path,
        ports=[free_port()],
        log_dir=tmp_path,
        liveness_interval_s=0.1,
        liveness_timeout_s=0.1,
        liveness_failures=1,
    )
    supervisor.start()
    try:
        [replica] = supervisor.replicas
        time.sleep(1.0)  # ten checks, none answered
        assert replica.process is not None and replica.process.poll() is None
        assert replica.restarts == 0
    finally:
        supervisor.stop(grace_s=2)


def test_a_replica_is_not_killed_once_the_stop_has_begun_or_after_it_exited(
    supervisor: ReplicaSupervisor, restarts: list[tuple[str, str]]
) -> None:
    """A check that timed out as the stop began killed the replica its SIGTERM was draining;
    one that exited by itself meanwhile was restarted as hung."""
    [replica] = supervisor.replicas
    assert eventually(lambda: replica.answered)
    process = replica.process
    assert process is not None
    process.terminate()
    process.wait(timeout=5)
    supervisor._kill_hung(replica, process)  # the third miss, just after it exited
    assert replica.restart_reason == "exited"

    assert eventually(lambda: replica.process is not process and replica.answered)
    running = replica.process
    assert running is not None
    supervisor._stop.set()  # stop() has begun
    supervisor._kill_hung(replica, running)
    assert running.poll() is None
    assert restarts == [(f"runtime-{replica.port}", "exited")]


def test_a_jobs_process_that_hangs_is_killed_and_restarted_when_it_serves_metrics(
    tmp_path: Path, restarts: list[tuple[str, str]]
) -> None:
    """The jobs process was only restarted when it exited: a hung one ran no job until
    someone killed it by hand. Its ``/metrics`` (a thread of its own) is its liveness."""
    metrics_port = free_port()

    class StandInJobs(StandInSupervisor):
        def _jobs_command(self) -> list[str]:
            return [sys.executable, "-c", STAND_IN, str(metrics_port)]

    supervisor = StandInJobs(
        repository=tmp_path,
        ports=[],
        log_dir=tmp_path,
        jobs_args=[],
        jobs_liveness_url=f"http://127.0.0.1:{metrics_port}/metrics",
        max_backoff_s=0.5,
        liveness_interval_s=0.2,
        liveness_timeout_s=0.3,
        liveness_failures=2,
        on_restart=lambda child, reason: restarts.append((child, reason)),
    )
    supervisor.start()
    try:
        [jobs] = supervisor.children
        hang_and_see_it_restarted(jobs)
        assert restarts == [("jobs", "hung")]
    finally:
        supervisor.stop(grace_s=2)


def test_a_jobs_process_without_metrics_is_not_checked(tmp_path: Path) -> None:
    """Without a metrics port there is nothing to ask: it is never taken for hung."""

    class QuietJobs(StandInSupervisor):
        def _jobs_command(self) -> list[str]:
            return [sys.executable, "-c", "import time; time.sleep(60)"]

    supervisor = QuietJobs(
        repository=tmp_path,
        ports=[],
        log_dir=tmp_path,
        jobs_args=[],
        liveness_interval_s=0.1,
        liveness_timeout_s=0.1,
        liveness_failures=1,
    )
    supervisor.start()
    try:
        [jobs] = supervisor.children
        time.sleep(1.0)
        assert jobs.process is not None and jobs.process.poll() is None
        assert (jobs.answered, jobs.restarts) == (False, 0)
    finally:
        supervisor.stop(grace_s=2)
