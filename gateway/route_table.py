"""The live set of route policies: read by every request, replaced by the admin API.

Reads are a dict lookup on an immutable snapshot; a replacement validates first (the
caller parses with ``gateway.policy.parse_route``), writes the YAML file atomically, then
swaps the snapshot, so a request sees either the old policy or the new one, never a mix,
and a restart keeps what the admin API set. Files in ``routes_dir`` override the routes
of gateway.yaml at start.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import yaml

from gateway.policy import PolicyError, RoutePolicy, default_route, parse_route, route_to_dict

log = logging.getLogger("driftgate.gateway.routes")
_MAX_CACHED_DEFAULTS = 1024


class RouteTable:
    def __init__(self, configured: Mapping[str, RoutePolicy], routes_dir: Path | None) -> None:
        self._routes_dir = routes_dir
        routes = dict(configured)
        routes.update(self._load_persisted())
        self._routes: Mapping[str, RoutePolicy] = MappingProxyType(routes)
        self._defaults: dict[str, RoutePolicy] = {}  # validated once, not per request

    def get(self, name: str) -> RoutePolicy:
        """The route's policy; a model without one gets the default (its latest version)."""
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

    def replace(self, name: str, policy: RoutePolicy) -> None:
        self._persist(name, policy)
        routes = dict(self._routes)
        routes[name] = policy
        self._routes = MappingProxyType(routes)
        log.info("route %s replaced: %s", name, route_to_dict(policy))

    def _persist(self, name: str, policy: RoutePolicy) -> None:
        if self._routes_dir is None:
            return
        self._routes_dir.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump(route_to_dict(policy), sort_keys=False)
        handle, temporary = tempfile.mkstemp(dir=self._routes_dir, prefix=".", suffix=".tmp")
        with os.fdopen(handle, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self._routes_dir / f"{name}.yaml")

    def _load_persisted(self) -> dict[str, RoutePolicy]:
        if self._routes_dir is None or not self._routes_dir.is_dir():
            return {}
        loaded = {}
        for path in sorted(self._routes_dir.glob("*.yaml")):
            try:
                loaded[path.stem] = parse_route(path.stem, yaml.safe_load(path.read_text()))
            except (PolicyError, yaml.YAMLError) as exc:
                log.error("ignoring persisted route %s: %s", path, exc)
        return loaded
