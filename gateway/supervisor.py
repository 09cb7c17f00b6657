"""Runtime replicas as supervised subprocesses, for ``driftgate up``.

Each replica is ``python -m driftgate runtime --repository R --port P``. A watcher
thread restarts a replica that exits (crash, OOM kill, ``kill -9``) with a capped
exponential backoff, so the gateway's health checks see it come back and rejoin. On
``stop`` every replica gets SIGTERM, then SIGKILL after a grace period.
On Kubernetes none of this runs: replicas are a Deployment (DESIGN.md section 9).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("driftgate.supervisor")


@dataclass
class Replica:
    port: int
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class ReplicaSupervisor:
    repository: Path
    ports: list[int]
    log_dir: Path
    poll_interval_s: float = 2.0
    max_backoff_s: float = 10.0
    replicas: list[Replica] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _watcher: threading.Thread | None = None

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.replicas = [Replica(port) for port in self.ports]
        for replica in self.replicas:
            self._spawn(replica)
        self._watcher = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._watcher.start()

    @property
    def urls(self) -> list[str]:
        return [replica.url for replica in self.replicas]

    def _spawn(self, replica: Replica) -> None:
        log_file = (self.log_dir / f"runtime-{replica.port}.log").open("ab")
        command = [
            sys.executable,
            "-m",
            "driftgate",
            "runtime",
            "--repository",
            str(self.repository),
            "--port",
            str(replica.port),
            "--poll-interval",
            str(self.poll_interval_s),
        ]
        replica.process = subprocess.Popen(
            command,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ},
            start_new_session=True,
        )
        log_file.close()
        log.info("runtime replica on port %d started (pid %d)", replica.port, replica.process.pid)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            for replica in self.replicas:
                process = replica.process
                if process is None or process.poll() is None:
                    continue
                now = time.monotonic()
                if replica.next_start == 0.0:
                    backoff = min(self.max_backoff_s, 0.5 * 2 ** min(replica.restarts, 5))
                    replica.next_start = now + backoff
                    log.warning(
                        "runtime replica on port %d exited with %s; restarting in %.1fs",
                        replica.port,
                        process.returncode,
                        backoff,
                    )
                elif now >= replica.next_start and not self._stop.is_set():
                    replica.restarts += 1
                    replica.next_start = 0.0
                    self._spawn(replica)

    def stop(self, grace_s: float = 10.0) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=2)
        for replica in self.replicas:
            if replica.process is not None and replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for replica in self.replicas:
            if replica.process is None:
                continue
            try:
                replica.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(replica.process.pid, signal.SIGKILL)
                replica.process.wait(timeout=5)
