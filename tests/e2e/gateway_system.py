"""A real ``driftgate up`` on free loopback ports, for the end-to-end tests that need one.

``local_system(home, log_path)`` runs ``driftgate up --home HOME`` (the gateway in that
process, its runtime replicas supervised subprocesses) until every replica is healthy, and
on exit checks that SIGTERM stopped the replicas too. ``LocalSystem`` mints tokens for the
gateway's users and reads the replicas' state; ``wait_for`` polls a condition with a
deadline that names what it waited for.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from gateway.auth import AuthConfig, mint_token
from gateway.settings import GatewaySettings
from tests.e2e.processes import RunningProcess, driftgate_process, free_port

T = TypeVar("T")

_STARTED = re.compile(r"runtime replica on port (\d+) started \(pid (\d+)\)")


@dataclass
class LocalSystem:
    """A running ``driftgate up``: where it listens, its files, and its users' tokens."""

    process: RunningProcess
    home: Path
    runtime_ports: tuple[int, ...]
    auth: AuthConfig = field(repr=False)

    @property
    def url(self) -> str:
        return self.process.url

    def token(self, subject: str, *scopes: str) -> str:
        return mint_token(self.auth, subject, scopes, 600)

    def client(self, subject: str, *scopes: str) -> httpx.Client:
        token = self.token(subject, *scopes)
        headers = {"authorization": f"Bearer {token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=15)

    def replica_pids(self) -> dict[int, int]:
        """The latest pid per replica port, from the supervisor's log lines."""
        return {int(port): int(pid) for port, pid in _STARTED.findall(self.process.log())}

    def replicas(self, admin: httpx.Client) -> dict[int, dict[str, Any]]:
        """``GET /admin/replicas`` keyed by port."""
        response = admin.get("/admin/replicas")
        response.raise_for_status()
        return {httpx.URL(r["url"]).port or 0: r for r in response.json()["replicas"]}


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair() -> int:
    """A free port whose successor is free too: the replicas' ports of ``--replicas 2``."""
    for _ in range(50):
        port = free_port()
        if port < 65535 and _port_is_free(port + 1):
            return port
    raise RuntimeError("found no two consecutive free ports")


def is_runtime(pid: int, port: int) -> bool:
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"runtime" in command and str(port).encode() in command


def wait_for(check: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout_s:g}s: {what} (last seen: {last!r})")


@contextmanager
def local_system(home: Path, log_path: Path, replicas: int = 2) -> Iterator[LocalSystem]:
    """``driftgate up --home HOME`` on free ports, once every replica is healthy.

    ``HOME/models`` must hold a model repository (so nothing is built). On exit ``up`` gets
    SIGTERM and must stop its replicas: any it leaves behind are killed by pid, and fail
    the fixture's teardown.
    """
    port = free_port()
    runtime_port = free_port_pair()
    while port in (runtime_port, runtime_port + 1):
        port = free_port()
    args = ["up", "--home", str(home), "--replicas", str(replicas), "--port", str(port)]
    args += ["--runtime-port", str(runtime_port), "--jobs-metrics-port", str(free_port())]
    try:
        with driftgate_process(args, port, log_path=log_path, timeout_s=180) as running:
            system = LocalSystem(
                process=running,
                home=home,
                runtime_ports=tuple(runtime_port + i for i in range(replicas)),
                auth=GatewaySettings.from_file(home / "gateway.yaml").auth,
            )
            with system.client("fixture", "admin") as admin:
                wait_for(
                    lambda: all(r["healthy"] for r in system.replicas(admin).values()),
                    120,
                    "every runtime replica healthy",
                )
            yield system
    finally:
        started = _STARTED.findall(log_path.read_text(errors="replace"))
        left = [int(pid) for rport, pid in started if is_runtime(int(pid), int(rport))]
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert not left, f"`driftgate up` left runtime replicas running after SIGTERM: {left}"
