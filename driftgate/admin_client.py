"""A client of the gateway's admin API for route policies (``driftgate routes`` uses it).

``AdminClient.get`` answers a :class:`Route` (the policy and its ETag), ``routes`` one for
each configured route; ``put`` sends a policy with ``If-Match`` when given one, and
``delete`` removes the policy the admin API set, answering the route as it is then. Every
failure is an :class:`AdminError` whose message is one line for the user: the gateway's
own reason for a 4xx or 5xx (with what to do for 401 and 403), or why it could not be
reached. A 412 is :class:`RouteChanged`,
carrying the ETag the route has now, so that a caller can read it again and retry. A 405
is :class:`MethodNotAllowed`: the server has no such method there, which a caller that
reached the admin API by another method can tell is a gateway too old for it.

    AdminError              one line; ``usage`` when the user can fix it before asking again
    ├── RouteChanged        412: the route changed since it was read
    └── MethodNotAllowed    405: not the admin API, or one from before the method
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

#: Seconds to wait for the gateway: a write may wait for another gateway's write.
TIMEOUT_S = 30.0
#: The most of a non-JSON answer quoted in an error.
_QUOTED_CHARS = 200
_ADMIN_TOKEN = "driftgate token create --sub NAME --scope admin"
#: How the admin API's own 404s begin (a name no route can have; nothing to delete).
_ADMIN_NOT_FOUND = ("unknown route: ", "route ")


class AdminError(Exception):
    """A request that failed, in one line; ``usage``: the user's mistake (exit status 2)."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


class RouteChanged(AdminError):
    """``PUT`` answered 412: the route is no longer the one read; ``etag`` is its ETag now."""

    def __init__(self, message: str, etag: str | None) -> None:
        super().__init__(message)
        self.etag = etag


class MethodNotAllowed(AdminError):
    """405, which the admin API never answers itself: what answered is no gateway, or one
    from before the method (``DELETE`` came after ``GET`` and ``PUT``)."""


@dataclass(frozen=True)
class Route:
    """A route as ``GET /admin/routes/{route}`` answers it (``etag`` None from a gateway
    from before ETags)."""

    name: str
    configured: bool
    policy: dict[str, Any]
    etag: str | None


class AdminClient:
    def __init__(
        self, url: str, token: str | None, transport: httpx.BaseTransport | None = None
    ) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.url = url
        self._client = httpx.Client(
            base_url=url, headers=headers, timeout=TIMEOUT_S, transport=transport
        )

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()

    def routes(self) -> dict[str, Route]:
        """Every configured route, by name, with its ETag."""
        answer = self._json(self._send("GET", "/admin/routes"))
        if not isinstance(answer, dict) or not all(isinstance(v, dict) for v in answer.values()):
            raise self._not_the_admin_api("GET /admin/routes")
        return {name: _listed(name, entry) for name, entry in answer.items()}

    def get(self, name: str) -> Route:
        return self._route(name, self._send("GET", _path(name)))

    def put(self, name: str, policy: dict[str, Any], if_match: str | None) -> Route:
        """Replace the route; with ``if_match``, only while it still has that ETag."""
        headers = {"if-match": if_match} if if_match else {}
        return self._route(name, self._send("PUT", _path(name), json=policy, headers=headers))

    def delete(self, name: str, if_match: str | None) -> Route:
        """Remove the policy the admin API set for the route; with ``if_match``, only while
        it still has that ETag. Answers the route as it is then."""
        headers = {"if-match": if_match} if if_match else {}
        return self._route(name, self._send("DELETE", _path(name), headers=headers))

    def _send(self, method: str, path: str, **options: Any) -> httpx.Response:
        try:
            response = self._client.request(method, path, **options)
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            raise AdminError(
                f"cannot reach the gateway at {self.url}: {reason} (is it running? --gateway "
                "or DRIFTGATE_GATEWAY_URL says where)",
                usage=True,
            ) from None
        if response.is_success:
            return response
        reason = _reason(response)
        asked = f"{method} {path}"
        if response.status_code in (404, 405) and not reason.startswith(_ADMIN_NOT_FOUND):
            # Not the admin API's own answer (a runtime replica's port, another server):
            # the request could not be asked where it was meant to go.
            error = MethodNotAllowed if response.status_code == 405 else AdminError
            raise error(
                f"{asked}: {self.url} did not answer as a driftgate gateway's admin API does "
                f"({response.status_code}: {reason}); --gateway or DRIFTGATE_GATEWAY_URL says "
                "where the gateway is",
                usage=True,
            )
        if response.status_code == 412:
            raise RouteChanged(f"{asked}: {reason}", response.headers.get("etag"))
        if response.status_code == 401:
            reason += f"; pass an admin token with --token or DRIFTGATE_TOKEN, from: {_ADMIN_TOKEN}"
        elif response.status_code == 403:
            reason += f"; mint one with: {_ADMIN_TOKEN}"
        raise AdminError(f"{asked} refused ({response.status_code}): {reason}")

    def _route(self, name: str, response: httpx.Response) -> Route:
        answer = self._json(response)
        if not isinstance(answer, dict) or not isinstance(answer.get("policy"), dict):
            raise self._not_the_admin_api(f"{response.request.method} {_path(name)}")
        etag = response.headers.get("etag")
        return Route(name, bool(answer.get("configured")), answer["policy"], etag)

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise self._not_the_admin_api(
                f"{response.request.method} {response.request.url.path}"
            ) from None

    def _not_the_admin_api(self, asked: str) -> AdminError:
        return AdminError(
            f"{asked}: {self.url} did not answer as a driftgate gateway's admin API does "
            "(--gateway or DRIFTGATE_GATEWAY_URL says where the gateway is)",
            usage=True,
        )


def _listed(name: str, entry: dict[str, Any]) -> Route:
    """A route of ``GET /admin/routes``: ``{"etag", "policy"}``, or the policy alone from a
    gateway from before ETags (a policy has no key ``policy``)."""
    policy = entry.get("policy")
    if isinstance(policy, dict):
        etag = entry.get("etag")
        return Route(name, True, policy, etag if isinstance(etag, str) else None)
    return Route(name, True, entry, None)


def _path(name: str) -> str:
    return f"/admin/routes/{quote(name, safe='')}"


def _reason(response: httpx.Response) -> str:
    """The gateway's ``{"error": ...}``, or the start of whatever else answered."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return " ".join(body["error"].split())
    text = " ".join(response.text.split())[:_QUOTED_CHARS]
    return text or response.reason_phrase
