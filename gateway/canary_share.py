"""Canary measurements shared by the gateways of one ``routes_dir``, so that the gateway
that decides (``gateway.lease``) judges all the traffic, not only the share it answers.

Every tick each gateway writes what it measured for its progressing canaries to
``<routes_dir>/.canary/<gateway id>.json`` (staged, then renamed): per route, a digest of
the policy it measured under, and per arm the requests, the failures and the most recent
latencies (at most ``SHARED_LATENCIES``). The decider reads the other gateways' files
and adds to its own windows those that are fresh (written in the last ``STALE_S``
seconds: a gateway that stopped no longer counts) and measured under the same policy (a
gateway that has not yet seen the latest step does not count for it). Files older than
``FORGET_S`` are removed. Unreadable files are skipped: a decision may be made on less
traffic, never on wrong traffic.

A file's age is read on this gateway's clock: from the time the file says it was written,
or, when that is later (its writer's clock runs ahead), from the time this gateway first
read that date. So a gateway whose clock is ahead still counts while it rewrites its file,
and goes stale ``STALE_S`` after it stops, as any other: taken at its word, its file was
fresh for as long as its clock was ahead. A file dated more than ``AHEAD_WARN_S`` ahead is
logged once, naming the file: the clocks want syncing.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import msgspec

from gateway.canary_window import ArmWindow
from gateway.policy import RoutePolicy, route_to_dict

log = logging.getLogger("driftgate.gateway.canary")

FOLDER_NAME = ".canary"
#: Latencies each gateway shares per arm (the most recent): enough for a p90.
SHARED_LATENCIES = 1000
#: A file not rewritten for this long is a gateway that stopped: it no longer counts.
STALE_S = 30.0
#: ... and after this long it is removed.
FORGET_S = 600.0
#: A file dated further ahead of this gateway's clock than this is logged (once per file).
AHEAD_WARN_S = 5.0

#: Per route: the policy's digest and each arm's window.
Measured = Mapping[str, tuple[str, Mapping[str, ArmWindow]]]
#: (route, policy digest) -> arm -> the other gateways' windows, added up.
Gathered = dict[tuple[str, str], dict[str, ArmWindow]]


class _SharedArm(msgspec.Struct):
    requests: int
    failures: int
    latencies: list[float]


class _SharedRoute(msgspec.Struct):
    policy: str
    arms: dict[str, _SharedArm]


class _SharedFile(msgspec.Struct):
    written_at: float
    routes: dict[str, _SharedRoute]


def policy_digest(policy: RoutePolicy) -> str:
    """Equal for equal policies, in every gateway process."""
    encoded = msgspec.json.encode(route_to_dict(policy), order="sorted")
    return hashlib.sha256(encoded).hexdigest()[:16]


class SharedWindows:
    """Publishes this gateway's measurements and gathers the others' (blocking file I/O:
    call both from a worker thread). Without a folder both do nothing."""

    def __init__(
        self,
        routes_dir: Path | None,
        gateway_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.folder = routes_dir / FOLDER_NAME if routes_dir is not None else None
        self.gateway_id = gateway_id or f"{socket.gethostname()}-{os.getpid()}"
        self.clock = clock
        # A publish still running in its thread when the gateway stops (its task was
        # cancelled, the thread was not) must not write the file again after ``withdraw``.
        self._writing = threading.Lock()
        self._withdrawn = False
        #: Per other gateway's file: the date it says it was written, and when this gateway
        #: first read that date (on its own clock).
        self._first_read: dict[str, tuple[float, float]] = {}
        self._ahead_logged: set[str] = set()

    @property
    def _own(self) -> Path | None:
        return self.folder / f"{self.gateway_id}.json" if self.folder is not None else None

    def publish(self, measured: Measured) -> None:
        with self._writing:
            if not self._withdrawn:
                self._write(measured)

    def _write(self, measured: Measured) -> None:
        own = self._own
        if own is None or self.folder is None:
            return
        if not measured:
            with contextlib.suppress(FileNotFoundError):
                own.unlink()
            return
        shared = _SharedFile(
            written_at=self.clock(),
            routes={
                route: _SharedRoute(
                    policy=digest,
                    arms={
                        arm: _SharedArm(
                            window.requests,
                            window.failures,
                            list(window.latencies)[-SHARED_LATENCIES:],
                        )
                        for arm, window in arms.items()
                    },
                )
                for route, (digest, arms) in measured.items()
            },
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        staged = self.folder / f".{self.gateway_id}.tmp"
        staged.write_bytes(msgspec.json.encode(shared))
        os.replace(staged, own)

    def gather(self) -> Gathered:
        if self.folder is None or not self.folder.is_dir():
            return {}
        now = self.clock()
        gathered: Gathered = {}
        paths = [path for path in sorted(self.folder.glob("*.json")) if path != self._own]
        for name in self._first_read.keys() - {path.name for path in paths}:
            del self._first_read[name]
        for path in paths:
            try:
                shared = msgspec.json.decode(path.read_bytes(), type=_SharedFile)
            except (OSError, msgspec.DecodeError) as exc:
                log.warning("skipping canary measurements %s: %s", path.name, exc)
                continue
            age = self._age(path.name, shared.written_at, now)
            if age > FORGET_S:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            if age > STALE_S:
                continue
            for route, measured in shared.routes.items():
                arms = gathered.setdefault((route, measured.policy), {})
                for arm, window in measured.arms.items():
                    total = arms.setdefault(arm, ArmWindow.unbounded())
                    total.requests += window.requests
                    total.failures += window.failures
                    total.latencies.extend(window.latencies)
        return gathered

    def _age(self, name: str, written_at: float, now: float) -> float:
        """Seconds since the file was written, on this gateway's clock: from its date, or
        from when this gateway first read that date, whichever is earlier."""
        first = self._first_read.get(name)
        if first is None or first[0] != written_at:
            first = self._first_read[name] = (written_at, now)
        ahead = written_at - now
        if ahead > AHEAD_WARN_S and name not in self._ahead_logged:
            self._ahead_logged.add(name)
            log.warning(
                "canary measurements %s are dated %.0f s ahead of this gateway's clock: "
                "their gateway's clock (or this one's) is wrong; they count while it rewrites "
                "them, not longer. Sync the clocks (NTP)",
                name,
                ahead,
            )
        return now - min(written_at, first[1])

    def withdraw(self) -> None:
        """This gateway stops: its measurements no longer count, and it publishes no more."""
        with self._writing:
            self._withdrawn = True
            self._write({})
