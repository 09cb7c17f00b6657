"""The live set of route policies: read by every request, replaced by the admin API.

Reads are a dict lookup on an immutable snapshot; a replacement validates first (the
caller parses with ``gateway.policy.parse_route``), writes the YAML file atomically, then
swaps the snapshot, so a request sees either the old policy or the new one, never a mix,
and a restart keeps what the admin API set. Files in ``routes_dir`` override the routes
of gateway.yaml at start.

While the gateway runs, ``routes_dir`` is also read back (``scan`` reads and parses in a
worker thread, ``apply`` swaps on the event loop; ``gateway.route_watch`` does both on an
interval), so that a change written there by another gateway sharing the folder, or by an
operator, applies here too:

- a file that is new or changed (another inode, size or modification time: every write
  is a rename of a new file) is parsed; a valid policy that differs from the one in use
  replaces it, an invalid one (or one over ``MAX_POLICY_BYTES``) is refused and the policy
  in use stays;
- a file that is removed gives the route back to gateway.yaml's policy, or to the
  default when gateway.yaml has none.

An admin ``DELETE`` (``remove``) removes what the admin API set: the route's file (or,
without ``routes_dir``, the policy kept in memory), so that gateway.yaml's policy serves
again, or the default when gateway.yaml has none. A route only gateway.yaml configures
cannot be removed this way (:class:`RouteNotRemovable`): that is the file to change. The
file is removed under the same lock as every write, with the same ``If-Match`` check, so a
``PUT`` racing it is either refused (its ETag is stale), written before (and removed) or
written after (and kept): never half of each. The table marks the file as removed here
as it removes it (under the lock of its state, which a scan's ``apply`` takes too), so
that a scan begun before the removal does not bring the route back, and no scan takes
the removal for another gateway's. A file removed between a scan's listing and its
reading is taken as not listed: the next scan says what became of it.

Writes to ``routes_dir`` take an exclusive ``flock`` on ``<routes_dir>/.routes.lock``, so
that the gateways sharing the folder write one at a time (the files themselves, how they
are read, written and locked, are ``gateway.route_files``). An admin ``PUT`` replaces the
route whatever it was (``replace``). A canary decision was measured on the policy this
gateway last read, up to a poll old: ``replace_if_unchanged`` checks the file under the
lock first, and drops the decision when another gateway (or an operator) has written
another policy since, instead of overwriting it with one derived from the older policy.

A ``PUT`` with ``If-Match`` or ``If-None-Match`` is the same guard for operators: ``replace``
checks the route's ETag (``gateway.route_conditions.policy_etag``: equal for equal policies
in every gateway) and
whether it is configured, as the folder has them now, under the lock (both conditions at
once: no write slips in between), and raises :class:`RouteChanged` or :class:`RouteMatched`
instead of writing.

Writes block (a lock another gateway may hold, then an fsync): the admin API calls
``replace``, and the canary ``replace_if_unchanged``, in a worker thread. ``_state`` keeps
that thread's swap and the event loop's ``apply`` from interleaving.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from gateway.policy import RoutePolicy, default_route, route_to_dict
from gateway.route_conditions import (
    IfMatch,
    RouteChanged,
    RouteMatched,
    RouteNotRemovable,
    policy_etag,
)
from gateway.route_files import (
    FILE_ERRORS,
    Fingerprint,
    fingerprint_of,
    folder_lock,
    read_fingerprints,
    read_route_file,
    route_file,
    write_route_file,
)

log = logging.getLogger("driftgate.gateway.routes")
_MAX_CACHED_DEFAULTS = 1024
#: What ``_files`` holds for a file this table removed, until a scan sees it gone: not
#: None, so that a scan begun before the removal (which knew no file) does not apply it.
_REMOVED: Fingerprint = (-1, -1, -1)


@dataclass(frozen=True)
class FileScan:
    """What ``routes_dir`` holds now, read in a worker thread: the fingerprint of every
    route file, and the policy (or why it was refused) of those that changed since the last
    ``apply``; ``known`` is what this table had read or written when the scan began."""

    fingerprints: Mapping[str, Fingerprint]
    policies: Mapping[str, RoutePolicy | Exception]
    known: Mapping[str, Fingerprint]


@dataclass(frozen=True)
class FileChange:
    """A route file's change, as ``apply`` took it."""

    route: str
    outcome: Literal["applied", "rejected", "removed"]
    error: str = ""


class RouteTable:
    def __init__(self, configured: Mapping[str, RoutePolicy], routes_dir: Path | None) -> None:
        self._routes_dir = routes_dir
        self._configured = dict(configured)  # what a route whose file goes comes back to
        self._files: dict[str, Fingerprint] = {}  # the route files as last read
        routes = dict(configured)
        routes.update(self._load_persisted())
        self._routes: Mapping[str, RoutePolicy] = MappingProxyType(routes)
        self._defaults: dict[str, RoutePolicy] = {}  # validated once, not per request
        self._writing = threading.Lock()  # one write at a time in this process
        self._state = threading.Lock()  # ``_routes`` and ``_files`` change under it
        #: Without ``routes_dir``: the routes whose policy the admin API (or a canary) set.
        self._set_in_memory: set[str] = set()

    @property
    def routes_dir(self) -> Path | None:
        return self._routes_dir

    def get(self, name: str) -> RoutePolicy:
        """The route's policy; a model without one gets the default (its latest version).

        Raises :class:`~gateway.policy.PolicyError` for a name no route can have: names come
        from clients, and that is their mistake.
        """
        policy = self._routes.get(name) or self._defaults.get(name)
        if policy is None:
            policy = default_route(name)
            if len(self._defaults) < _MAX_CACHED_DEFAULTS:  # names come from clients: bound it
                self._defaults[name] = policy
        return policy

    def configured(self) -> Mapping[str, RoutePolicy]:
        return self._routes

    def is_configured(self, name: str) -> bool:
        return name in self._routes

    def replace(
        self,
        name: str,
        policy: RoutePolicy,
        if_match: IfMatch | None = None,
        if_none_match: IfMatch | None = None,
    ) -> str:
        """Write and swap in ``policy``; returns its ETag. Blocking: call it in a thread.

        Checked on the route as ``routes_dir`` has it now, under the write lock, in RFC
        9110's order (13.2.2): ``if_match``, only if it is configured (``"*"``) or has one of
        those ETags, else :class:`RouteChanged`; ``if_none_match``, only if it is not (``"*"``)
        or has none of those (compared weakly), else :class:`RouteMatched`. Refused, nothing
        is written; without either, the last writer wins.
        """
        with self._write_lock():
            if if_match is not None or if_none_match is not None:
                self._check(name, if_match, if_none_match)
            self._swap(name, policy, self._persist(name, policy))
        return policy_etag(policy)

    def replace_if_unchanged(self, name: str, measured: RoutePolicy, policy: RoutePolicy) -> bool:
        """Replace the route with ``policy`` only if it is still ``measured``, here and in
        ``routes_dir``; False (nothing written) when another policy was written since.

        For decisions derived from the policy in use (canaries): the route file is checked
        under the folder's write lock, so a change another gateway wrote since this table
        last read the folder is never overwritten.

        Blocking: the canary calls it in a worker thread, while the event loop may ``apply``
        a scan. So the policy in use is compared again once the lock is held: a write by
        another gateway, read back while this one waited for the lock, is in use (and its
        file known) by then, and must not pass for ``measured``.
        """
        if self._routes.get(name) != measured:
            return False
        with self._write_lock():
            if self._routes.get(name) != measured or not self._unchanged_on_disk(name, measured):
                return False
            self._swap(name, policy, self._persist(name, policy))
        return True

    def remove(
        self,
        name: str,
        if_match: IfMatch | None = None,
        if_none_match: IfMatch | None = None,
    ) -> RoutePolicy | None:
        """Remove the policy the admin API set for the route; returns gateway.yaml's, which
        serves again, or None when the route is no longer configured. Blocking: call it in
        a thread. See ``remove_route``."""
        return self.remove_route(name, if_match, if_none_match)[1]

    def remove_route(
        self,
        name: str,
        if_match: IfMatch | None = None,
        if_none_match: IfMatch | None = None,
    ) -> tuple[RoutePolicy, RoutePolicy | None]:
        """Remove the policy the admin API set for the route; returns it, as ``routes_dir``
        had it under the write lock (a canary's latest step included), and gateway.yaml's,
        which serves again, or None when the route is no longer configured. Blocking: call
        it in a thread.

        Raises :class:`RouteNotRemovable` when the admin API set none (as ``routes_dir``
        has the route now, under the write lock), then checks ``if_match`` and
        ``if_none_match`` as ``replace`` does (an answer other than 2xx comes first, as RFC
        9110, 13.2.1, says).
        """
        with self._write_lock():
            if not self._set_through_api(name):
                raise RouteNotRemovable(name, in_gateway_yaml=name in self._configured)
            if if_match is not None or if_none_match is not None:
                self._check(name, if_match, if_none_match)
            removed = self._stored(name)[0]
            restored = self._configured.get(name)
            with self._state:
                if self._routes_dir is not None:
                    # Unlinked and marked at once, for a scan: one that lists the folder
                    # after the unlink is applied after the mark, which says whose it was.
                    route_file(self._routes_dir, name).unlink(missing_ok=True)
                    self._files[name] = _REMOVED
                self._set_in_memory.discard(name)
                routes = dict(self._routes)
                if restored is None:
                    routes.pop(name, None)
                else:
                    routes[name] = restored
                self._routes = MappingProxyType(routes)
        if restored is None:
            log.info("route %s removed: no longer configured (the default policy)", name)
        else:
            log.info("route %s removed: gateway.yaml's policy serves again", name)
        return removed, restored

    def _set_through_api(self, name: str) -> bool:
        """Whether the route has a policy the admin API (or a canary) set: a file in
        ``routes_dir`` (under the write lock: as every gateway sharing it will serve), or
        one in memory without a folder."""
        if self._routes_dir is None:
            return name in self._set_in_memory
        return route_file(self._routes_dir, name).is_file()

    def _swap(self, name: str, policy: RoutePolicy, written: Fingerprint | None) -> None:
        with self._state:
            if self._routes_dir is None:
                self._set_in_memory.add(name)
            if written is not None:
                self._files[name] = written
            routes = dict(self._routes)
            routes[name] = policy
            self._routes = MappingProxyType(routes)
        log.info("route %s replaced: %s", name, route_to_dict(policy))

    def _check(self, name: str, if_match: IfMatch | None, if_none_match: IfMatch | None) -> None:
        """Raise unless the stored route satisfies both conditions (see ``replace``)."""
        policy, configured = self._stored(name)
        etag = policy_etag(policy)
        if if_match is not None and not (configured if if_match == "*" else etag in if_match):
            raise RouteChanged(name, etag, configured)
        if if_none_match == "*":
            if configured:
                raise RouteMatched(name, etag, configured, star=True)
        elif if_none_match is not None and etag in {t.removeprefix("W/") for t in if_none_match}:
            raise RouteMatched(name, etag, configured, star=False)

    def _stored(self, name: str) -> tuple[RoutePolicy, bool]:
        """The route's policy as ``routes_dir`` has it now (under the write lock, so no
        other gateway is writing it), and whether it is configured (a file or gateway.yaml):
        what every gateway sharing the folder serves once it has read the folder again."""
        if self._routes_dir is None:
            in_use = self._routes.get(name)
            return (in_use, True) if in_use is not None else (self.get(name), False)
        try:
            fingerprint = fingerprint_of(os.stat(route_file(self._routes_dir, name)))
        except FileNotFoundError:  # never written, or removed: gateway.yaml's, or the default
            configured = self._configured.get(name)
            return (configured, True) if configured is not None else (self.get(name), False)
        in_use = self._routes.get(name)
        if in_use is not None and fingerprint == self._files.get(name):
            return in_use, True  # the file this table last read or wrote
        try:
            return read_route_file(self._routes_dir, name), True
        except FILE_ERRORS:  # refused when read: the policy in use stays
            return (in_use if in_use is not None else self.get(name)), True

    def _unchanged_on_disk(self, name: str, measured: RoutePolicy) -> bool:
        """Whether the route's file is the one this table last read or wrote, or holds
        ``measured`` all the same. A file removed since is a change (the route goes back to
        gateway.yaml's policy); an unreadable new one too, until the next scan refuses it."""
        if self._routes_dir is None:
            return True
        try:
            fingerprint: Fingerprint | None = fingerprint_of(
                os.stat(route_file(self._routes_dir, name))
            )
        except FileNotFoundError:
            fingerprint = None
        known = self._files.get(name)
        if fingerprint == (None if known == _REMOVED else known):
            return True
        if fingerprint is None:
            return False
        try:
            return read_route_file(self._routes_dir, name) == measured
        except FILE_ERRORS:
            return False

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        """Exclusive across the gateways sharing ``routes_dir`` (blocking, held for one
        write). Where locks cannot be taken, writes go ahead unserialised, with a warning."""
        with self._writing:
            if self._routes_dir is None:
                yield
                return
            with folder_lock(self._routes_dir):
                yield

    def scan(self) -> FileScan:
        """Read and parse ``routes_dir`` (blocking, and YAML is slow: in a worker thread)."""
        if self._routes_dir is None:
            return FileScan({}, {}, {})
        with self._state:
            known = dict(self._files)  # a snapshot: ``replace`` may write meanwhile
        fingerprints = read_fingerprints(self._routes_dir)
        policies: dict[str, RoutePolicy | Exception] = {}
        for name, fingerprint in list(fingerprints.items()):
            if known.get(name) != fingerprint:
                try:
                    policies[name] = read_route_file(self._routes_dir, name)
                except FileNotFoundError:  # removed since listed (a DELETE): not listed
                    del fingerprints[name]
                except FILE_ERRORS as exc:  # unreadable or invalid
                    policies[name] = exc
        return FileScan(fingerprints, policies, known)

    def apply(self, scan: FileScan) -> list[FileChange]:
        """Take the changes ``scan`` found (on the event loop)."""
        with self._state:
            return self._apply(scan)

    def _apply(self, scan: FileScan) -> list[FileChange]:
        changes: list[FileChange] = []
        routes = dict(self._routes)
        for name, policy in scan.policies.items():
            if self._files.get(name) != scan.known.get(name):
                continue  # ``replace`` wrote it during the scan: the next scan will tell
            self._files[name] = scan.fingerprints[name]
            if isinstance(policy, Exception):
                log.error("route file %s.yaml refused, the policy in use stays: %s", name, policy)
                changes.append(FileChange(name, "rejected", str(policy)))
                continue
            if routes.get(name) != policy:
                routes[name] = policy
                log.info("route %s changed on disk: %s", name, route_to_dict(policy))
                changes.append(FileChange(name, "applied"))
        gone = [name for name in scan.known if name not in scan.fingerprints]
        for name in gone:
            if self._files.get(name) != scan.known[name]:
                continue  # written again during the scan
            del self._files[name]
            if scan.known[name] == _REMOVED:
                continue  # removed by ``remove`` here, which swapped already
            configured = self._configured.get(name)
            if configured is not None:
                routes[name] = configured
                log.info("route file %s.yaml removed: back to gateway.yaml's policy", name)
            else:
                routes.pop(name, None)
                log.info(
                    "route file %s.yaml removed: %s is no longer configured (the default policy)",
                    name,
                    name,
                )
            changes.append(FileChange(name, "removed"))
        if any(change.outcome != "rejected" for change in changes):
            self._routes = MappingProxyType(routes)
        return changes

    def _persist(self, name: str, policy: RoutePolicy) -> Fingerprint | None:
        """Write the route's file (under the write lock); its fingerprint, None without a
        folder."""
        if self._routes_dir is None:
            return None
        return write_route_file(self._routes_dir, name, policy)

    def _load_persisted(self) -> dict[str, RoutePolicy]:
        if self._routes_dir is None or not self._routes_dir.is_dir():
            return {}
        loaded = {}
        for name, fingerprint in read_fingerprints(self._routes_dir).items():
            self._files[name] = fingerprint
            try:
                loaded[name] = read_route_file(self._routes_dir, name)
            except FILE_ERRORS as exc:
                log.error(
                    "ignoring persisted route %s: %s", route_file(self._routes_dir, name), exc
                )
        return loaded
