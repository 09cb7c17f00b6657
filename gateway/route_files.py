"""Route files in ``routes_dir``: one ``<route>.yaml`` per route, as ``gateway.route_table``
reads, writes and watches them.

What a file is (its fingerprint: inode, size, modification time), how it is read (never
more than ``MAX_POLICY_BYTES``, parsed as a route policy), how it is written (a temporary
file, fsynced, renamed over the old one: a reader sees the old file or the new one, and
every write changes the fingerprint) and the lock that every gateway sharing the folder
writes under (an exclusive ``flock`` on ``<routes_dir>/.routes.lock``). All of it blocks:
``RouteTable`` calls it in a worker thread once the gateway runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from gateway.policy import (
    MAX_POLICY_BYTES,
    PolicyError,
    RoutePolicy,
    parse_route,
    route_to_dict,
    too_deep,
)
from gateway.settings import parse_yaml

log = logging.getLogger("driftgate.gateway.routes")

#: The lock every write to ``routes_dir`` holds, on every gateway sharing the folder.
WRITE_LOCK_NAME = ".routes.lock"

#: What identifies one version of a route file: (inode, size, modification time in ns).
Fingerprint = tuple[int, int, int]

#: What makes a route file unusable (unreadable, not UTF-8, not YAML, too large, an invalid
#: policy): it is logged, and the policy in use stays.
FILE_ERRORS = (OSError, ValueError, yaml.YAMLError)


def route_file(folder: Path, name: str) -> Path:
    return folder / f"{name}.yaml"


@contextlib.contextmanager
def folder_lock(routes_dir: Path) -> Iterator[None]:
    """The exclusive ``flock`` on ``<routes_dir>/.routes.lock`` (blocking). Where locks
    cannot be taken, the write goes ahead unserialised, with a warning."""
    routes_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(routes_dir / WRITE_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            log.warning("cannot lock %s, writing the route without it: %s", routes_dir, exc)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def read_route_file(folder: Path, name: str) -> RoutePolicy:
    """The policy in ``<name>.yaml``; raises one of ``FILE_ERRORS``."""
    path = route_file(folder, name)
    with path.open("rb") as file:
        data = file.read(MAX_POLICY_BYTES + 1)  # never more: the file may be anything
        if len(data) > MAX_POLICY_BYTES:
            size = os.fstat(file.fileno()).st_size
            raise PolicyError(
                f"{path.name}: {size} bytes exceeds the limit of {MAX_POLICY_BYTES} bytes"
            )
    try:
        raw = parse_yaml(data.decode())  # a key given twice is refused, as in gateway.yaml
    except RecursionError:  # PyYAML recurses: a document nested thousands deep
        raise too_deep(name) from None
    return parse_route(name, raw)


def write_route_file(folder: Path, name: str, policy: RoutePolicy) -> Fingerprint:
    """Write ``<name>.yaml`` atomically (under ``folder_lock``); its new fingerprint."""
    folder.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(route_to_dict(policy), sort_keys=False)
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=".", suffix=".tmp")
    target = route_file(folder, name)
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:  # disk full, a name too long: leave no temporary file behind
        Path(temporary).unlink(missing_ok=True)
        raise
    return fingerprint_of(os.stat(target))


def read_fingerprints(folder: Path) -> dict[str, Fingerprint]:
    """Every ``<route>.yaml`` of ``folder`` (temporary ``.*.tmp`` files are not routes)."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return {}
    found = {}
    for entry in sorted(entries, key=lambda e: e.name):
        if entry.name.endswith(".yaml") and not entry.name.startswith("."):
            try:
                found[entry.name.removesuffix(".yaml")] = fingerprint_of(entry.stat())
            except FileNotFoundError:
                continue  # removed while listed
    return found


def fingerprint_of(stat: os.stat_result) -> Fingerprint:
    return stat.st_ino, stat.st_size, stat.st_mtime_ns
