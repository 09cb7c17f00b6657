"""The store folder the writer opened, and whether its path still leads to that folder.

A store on its own mount (a volume, an NFS export) can lose the mount while the gateway
runs (``umount -l``, an NFS mount dropping): its path then leads to the empty folder
underneath, and the writer went on writing new segments there without an error, where no
reader and no other gateway looks. ``StoreFolder.open`` creates the folder if need be and
records its identity (device and inode, one ``stat``); ``check`` compares the path's
identity with it before each segment write and raises ``StoreFolderChanged`` when the
folder is gone or another one, so that the write fails, and is retried and counted, like
any other failed write. Once the original folder is back, writes go on by themselves.

The other way round, a store mounted after the gateway started (an NFS ``bg`` mount, an
automount, a volume attached late) replaces the empty folder the writer opened: a folder
that held no table at ``open`` (no ``predictions/`` or ``feedback/``; the writer's own
catalog aside) gives way to the one now at the path, said once, when that one holds a
table (a store); one without could be the folder under a mount that dropped.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from monitoring.prediction_log.layout import FEEDBACK, PREDICTIONS

log = logging.getLogger("monitoring.prediction_log.writer")


class StoreFolderChanged(OSError):
    """The store's path no longer leads to the folder the writer opened."""


class StoreFolder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._identity: tuple[int, int] | None = None  # (st_dev, st_ino) once opened
        self._opened_empty = False

    def open(self) -> None:
        """Create the folder unless it exists, and remember which folder it is."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._identity = _identity(self.root)
        self._opened_empty = not _holds_tables(self.root)

    def check(self) -> None:
        """Raise ``StoreFolderChanged`` unless the path leads to the folder ``open`` found.

        A writer never opened (written by ``close`` without ``start``) checks nothing."""
        if self._identity is None:
            return
        try:
            now = _identity(self.root)
        except FileNotFoundError:
            raise StoreFolderChanged(
                f"the store folder {self.root} is gone (the writer opened it at start): "
                "a mount dropped? Nothing is written until it is back; or restart the "
                "gateway to create a new store there"
            ) from None
        if now == self._identity:
            if self._opened_empty and _holds_tables(self.root):
                self._opened_empty = False  # it is the store now: never given up for another
            return
        if self._opened_empty and _holds_tables(self.root):
            log.warning(
                "prediction log: the store folder %s is another folder than at start, one "
                "that holds a store's tables (mounted since): writing into it",
                self.root,
            )
            self._identity, self._opened_empty = now, False
            return
        raise StoreFolderChanged(
            f"the store folder {self.root} is no longer the one the writer opened "
            "(device/inode changed): a mount dropped, or an empty volume was mounted? "
            "Nothing is written there until the original is back (remount it); or "
            "restart the gateway to write into the folder now at that path"
        )


def _identity(path: Path) -> tuple[int, int]:
    found = os.stat(path)
    return found.st_dev, found.st_ino


def _holds_tables(path: Path) -> bool:
    """Whether the folder holds a table of the log: a store, not a folder just made."""
    return (path / PREDICTIONS).is_dir() or (path / FEEDBACK).is_dir()
