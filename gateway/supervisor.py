"""Runtime replicas (and the jobs process) as supervised subprocesses, for ``driftgate up``.

Each replica is ``python -m driftgate runtime --repository R --port P``; the optional
jobs process is ``python -m driftgate jobs --config C``. A watcher thread restarts a
child that exits (crash, OOM kill, ``kill -9``) with a capped exponential backoff, so the
gateway's health checks see a replica come back and rejoin. A child that hangs (stopped,
deadlocked, swapping) does not exit: a liveness thread asks each replica's
``/v2/health/live`` (and the jobs process's ``/metrics``, when it serves them:
``jobs_liveness_url``) every ``liveness_interval_s``, and one that has answered since it
started and then leaves ``liveness_failures`` checks in a row unanswered is killed
(SIGKILL), so that the watcher restarts it. A child still starting is never killed: its
first answer arms the check (the runtime answers liveness while it loads its models). The
jobs' ``/metrics`` is served by a thread of its own, so a long job run does not stop it
answering; a process that no longer answers it runs no job either.
``on_restart`` hears of every restart and why (``exited`` or ``hung``). On ``stop`` every child gets
SIGTERM, then SIGKILL after a grace period. Children also get SIGTERM from the kernel
when ``driftgate up`` itself dies (``PR_SET_PDEATHSIG``), so a ``kill -9`` of it leaves
no orphans behind. On Kubernetes none of this runs: replicas are a Deployment and the
jobs a CronJob (DESIGN.md section 9).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("driftgate.supervisor")


_PR_SET_PDEATHSIG = 1
#: Seconds a child has to exit after SIGTERM before SIGKILL.
STOP_GRACE_S = 10.0


def _die_with_parent() -> None:  # runs in the child between fork and exec
    # Not Linux (no prctl): a SIGTERM of `up` still stops the children.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Replica:
    """One supervised child: a runtime replica (with a port) or the jobs process."""

    port: int
    command: list[str] = field(default_factory=list)
    name: str = ""
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    #: Liveness of the current process: it has answered once, and checks missed since.
    answered: bool = False
    missed_checks: int = 0
    #: Why the current process is being restarted: "exited", or "hung" once killed for it.
    restart_reason: str = "exited"
    #: What the liveness check asks ("": not checked).
    liveness_url: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def label(self) -> str:
        """Its short name, for its log file and metric labels: ``runtime-8001``, ``jobs``."""
        return f"runtime-{self.port}" if self.port else self.name


@dataclass
class ReplicaSupervisor:
    repository: Path
    ports: list[int]
    log_dir: Path
    poll_interval_s: float = 2.0
    max_backoff_s: float = 10.0
    #: Extra arguments of ``python -m driftgate`` for the jobs process (None: no jobs).
    jobs_args: list[str] | None = None
    #: The jobs process's ``/metrics`` URL, checked for liveness ("": not checked).
    jobs_liveness_url: str = ""
    #: A replica is killed after this many liveness checks in a row go unanswered, each
    #: waiting ``liveness_timeout_s``, one every ``liveness_interval_s`` (about 25 s).
    liveness_interval_s: float = 5.0
    liveness_timeout_s: float = 5.0
    liveness_failures: int = 3
    #: Told of each restart: the child's label (``runtime-8001``) and why ("exited", "hung").
    on_restart: Callable[[str, str], None] = lambda name, reason: None
    replicas: list[Replica] = field(default_factory=list)
    children: list[Replica] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.replicas = [
            Replica(port, self._runtime_command(port), f"runtime replica on port {port}")
            for port in self.ports
        ]
        for replica in self.replicas:
            replica.liveness_url = replica.url + "/v2/health/live"
        self.children = list(self.replicas)
        if self.jobs_args is not None:
            jobs = Replica(0, self._jobs_command(), "jobs", liveness_url=self.jobs_liveness_url)
            self.children.append(jobs)
        for child in self.children:
            self._spawn(child)
        self._watcher = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._watcher.start()
        self._liveness = threading.Thread(target=self._check_liveness, name="liveness", daemon=True)
        self._liveness.start()

    @property
    def urls(self) -> list[str]:
        return [replica.url for replica in self.replicas]

    def _runtime_command(self, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "driftgate",
            "runtime",
            "--repository",
            str(self.repository),
            "--port",
            str(port),
            "--poll-interval",
            str(self.poll_interval_s),
            # Requests in flight get less than stop()'s grace before SIGKILL, so that a
            # replica's own shutdown (its log line for requests cut off) still runs.
            "--shutdown-timeout",
            str(int(STOP_GRACE_S) - 2),
        ]

    def _jobs_command(self) -> list[str]:
        return [sys.executable, "-m", "driftgate", "jobs", *(self.jobs_args or [])]

    def _spawn(self, replica: Replica) -> None:
        log_file = (self.log_dir / f"{replica.label}.log").open("ab")
        replica.process = subprocess.Popen(
            replica.command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ},
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (no threads run user code here)
        )
        log_file.close()
        replica.answered, replica.missed_checks, replica.restart_reason = False, 0, "exited"
        log.info("%s started (pid %d)", replica.name, replica.process.pid)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            for replica in self.children:
                process = replica.process
                if process is None or process.poll() is None:
                    continue
                now = time.monotonic()
                if replica.next_start == 0.0:
                    backoff = min(self.max_backoff_s, 0.5 * 2 ** min(replica.restarts, 5))
                    replica.next_start = now + backoff
                    log.warning(
                        "%s exited with %s; restarting in %.1fs",
                        replica.name,
                        process.returncode,
                        backoff,
                    )
                elif now >= replica.next_start and not self._stop.is_set():
                    replica.restarts += 1
                    replica.next_start = 0.0
                    self.on_restart(replica.label, replica.restart_reason)
                    self._spawn(replica)

    def _check_liveness(self) -> None:
        while not self._stop.wait(self.liveness_interval_s):
            for replica in self.children:
                process = replica.process
                if not replica.liveness_url or process is None or process.poll() is not None:
                    continue
                if self._stop.is_set():
                    return
                if self._answers(replica):
                    replica.answered, replica.missed_checks = True, 0
                elif replica.answered:
                    replica.missed_checks += 1
                    if replica.missed_checks >= self.liveness_failures:
                        self._kill_hung(replica, process)

    def _answers(self, replica: Replica) -> bool:
        try:
            with urllib.request.urlopen(
                replica.liveness_url, timeout=self.liveness_timeout_s
            ) as answer:
                return bool(answer.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def _kill_hung(self, replica: Replica, process: subprocess.Popen[bytes]) -> None:
        # Not during a stop (its SIGTERM lets the replica drain), nor one that exited by
        # itself meanwhile (an exit, not a hang, restarts it).
        if self._stop.is_set() or process.poll() is not None:
            return
        log.warning(
            "%s (pid %d) has not answered %s %d times in a row (%g s each): "
            "it hangs; killing it so that it restarts",
            replica.name,
            process.pid,
            replica.liveness_url,
            replica.missed_checks,
            self.liveness_timeout_s,
        )
        replica.restart_reason = "hung"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=2)
        for replica in self.children:
            if replica.process is not None and replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for replica in self.children:
            if replica.process is None:
                continue
            try:
                replica.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(replica.process.pid, signal.SIGKILL)
                replica.process.wait(timeout=5)
