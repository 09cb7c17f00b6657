"""The conditions of the admin API's route writes: ETags and the refusals they give.

A route's ETag (``policy_etag``) is a hash of its policy, equal for equal policies in every
gateway process, so that an operator's ``If-Match`` holds whichever gateway answers; the
list of routes has one too (``routes_etag``). ``gateway.route_table`` checks them under its
write lock and raises :class:`RouteChanged` (``If-Match`` failed), :class:`RouteMatched`
(``If-None-Match`` matched) or :class:`RouteNotRemovable` (a ``DELETE`` of a route the
admin API did not set); ``gateway.admin`` turns them into ``412`` and ``409``/``404``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Literal

import msgspec

from gateway.policy import RoutePolicy, route_to_dict

#: What a conditional write expects: the route is configured (``"*"``), or its policy has
#: one of these ETags.
IfMatch = frozenset[str] | Literal["*"]


def policy_etag(policy: RoutePolicy) -> str:
    """A strong entity tag of ``policy``, quoted as in an ``ETag`` header: equal for equal
    policies, in every gateway process (the policy's keys sorted, hashed)."""
    encoded = msgspec.json.encode(route_to_dict(policy), order="sorted")
    return f'"{hashlib.sha256(encoded).hexdigest()[:32]}"'


def routes_etag(etags: Mapping[str, str]) -> str:
    """A strong entity tag of the configured routes, from each one's ``policy_etag``: it
    changes whenever a route is added, replaced or removed, and is equal in every gateway
    serving the same routes (the (route, ETag) pairs sorted, hashed)."""
    encoded = msgspec.json.encode(sorted(etags.items()))
    return f'"{hashlib.sha256(encoded).hexdigest()[:32]}"'


class RouteChanged(Exception):
    """A conditional write refused: the route is not what the writer read. ``etag`` is its
    policy's ETag now, ``configured`` whether it is in gateway.yaml or ``routes_dir``."""

    def __init__(self, route: str, etag: str, configured: bool) -> None:
        super().__init__(f"route {route} is now {etag}")
        self.route = route
        self.etag = etag
        self.configured = configured


class RouteNotRemovable(Exception):
    """A ``remove`` refused before any precondition: the admin API set no policy for the
    route. ``in_gateway_yaml``: gateway.yaml configures it (else it is not configured)."""

    def __init__(self, route: str, *, in_gateway_yaml: bool) -> None:
        super().__init__(route)
        self.route = route
        self.in_gateway_yaml = in_gateway_yaml


class RouteMatched(RouteChanged):
    """A write refused by ``If-None-Match``: the route is configured (``star``: ``*`` was
    sent) or has one of the ETags listed."""

    def __init__(self, route: str, etag: str, configured: bool, *, star: bool) -> None:
        super().__init__(route, etag, configured)
        self.star = star
