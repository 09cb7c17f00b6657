"""One decider among the gateways that share a ``routes_dir``: the holder of a file lock.

Canary decisions change routes, and the routes are shared through ``routes_dir`` (see
``gateway.route_table``); two gateways deciding at once could undo each other (one rolls
a canary back while another advances it). So only the gateway holding an exclusive
``flock`` on ``<routes_dir>/.canary.lock`` decides; the others keep measuring and pick the
decisions up from the folder. A gateway that dies releases the lock with its process (on
a network file system, when the server notices: NFSv4 and CephFS do), and another one
takes it at its next try. Without ``routes_dir`` nothing is shared and every gateway
decides for itself.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

log = logging.getLogger("driftgate.gateway.lease")

LOCK_NAME = ".canary.lock"


class FileLease:
    """``held()`` tries to take the lock (never waits) and says whether this process has it."""

    def __init__(self, folder: Path | None) -> None:
        self.path = folder / LOCK_NAME if folder is not None else None
        self._fd: int | None = None

    def held(self) -> bool:
        """Blocking I/O on a network file system: call it from a worker thread."""
        if self.path is None or self._fd is not None:
            return True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.error("cannot open the canary lock %s: %s", self.path, exc)
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another gateway holds it (BlockingIOError), or locks fail here
            os.close(fd)
            return False
        self._fd = fd
        log.info("this gateway now makes the canary decisions (it holds %s)", self.path)
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None
