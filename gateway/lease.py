"""One decider among the gateways that share a ``routes_dir``: the holder of a file lock.

Canary decisions change routes, and the routes are shared through ``routes_dir`` (see
``gateway.route_table``); two gateways deciding at once could undo each other (one rolls
a canary back while another advances it). So only the gateway holding an exclusive
``flock`` on ``<routes_dir>/.canary.lock`` decides; the others keep measuring and pick the
decisions up from the folder. A gateway that dies releases the lock with its process (on
a network file system, when the server notices: NFSv4 and CephFS do), and another one
takes it at its next try. Without ``routes_dir`` nothing is shared and every gateway
decides for itself.

``held`` blocks (a network file system), so it runs in a worker thread, which a stopping
gateway cannot stop: ``close`` makes sure that a ``held`` still under way when the
gateway stops lets the lock go instead of keeping it for as long as the process lives.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path

log = logging.getLogger("driftgate.gateway.lease")

LOCK_NAME = ".canary.lock"


class FileLease:
    """``held()`` tries to take the lock (never waits) and says whether this process has it;
    ``release()`` gives it up (``held()`` may take it again), ``close()`` for good."""

    def __init__(self, folder: Path | None) -> None:
        self.path = folder / LOCK_NAME if folder is not None else None
        self._fd: int | None = None
        self._closed = False
        # ``_fd`` and ``_closed`` change under it: ``held`` runs in a worker thread, while
        # ``release`` and ``close`` run on the event loop.
        self._guard = threading.Lock()

    @property
    def holding(self) -> bool:
        """Whether this process holds the folder's lock (False without a folder: there is
        nothing to hand over)."""
        return self._fd is not None

    def held(self) -> bool:
        """Blocking I/O on a network file system: call it from a worker thread."""
        if self.path is None:
            return True
        with self._guard:
            if self._closed:
                return False
            if self._fd is not None:
                return True
        fd = self._take(self.path)
        if fd is None:
            return False
        with self._guard:
            kept = not self._closed
            if kept:
                self._fd = fd
        if not kept:  # closed while it was being taken: the gateway stopped meanwhile
            os.close(fd)
            return False
        log.info("this gateway now makes the canary decisions (it holds %s)", self.path)
        return True

    def release(self) -> None:
        """Give the lock up; another gateway (or this one, at a later ``held``) may take it."""
        with self._guard:
            fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the lock

    def close(self) -> None:
        """Give the lock up for good (the gateway stops): a ``held`` under way in a worker
        thread, or a later one, does not take it."""
        with self._guard:
            self._closed = True
        self.release()

    @staticmethod
    def _take(path: Path) -> int | None:
        """The lock's descriptor, locked; None when another gateway holds it or it cannot be
        opened."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            log.error("cannot open the canary lock %s: %s", path, exc)
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # another gateway holds it (BlockingIOError), or locks fail here
            os.close(fd)
            return None
        return fd
