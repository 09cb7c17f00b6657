"""JWT bearer authentication and scope authorization for the gateway, free of any framework.

The gateway calls ``check_one_authorization(scope["headers"])`` as a request arrives
(``gateway.inference``), ``TokenVerifier.verify(request.headers.get("authorization"))`` on
every request and ``require(principal, "predict", model)`` once it knows the route; one
exception handler turns an ``AuthError`` into its status and ``WWW-Authenticate`` header
(RFC 6750)::

    AuthError                  status_code, www_authenticate
    ├── InvalidRequest   400   more than one Authorization header (error="invalid_request")
    ├── Unauthenticated  401   no, malformed, unsigned, forged, expired or foreign token
    └── Forbidden        403   a valid token without the scope (error="insufficient_scope")
    AuthConfigError            the ``auth:`` section of gateway.yaml cannot be used

The algorithm is pinned by configuration and never taken from a token: pyjwt is called with
``algorithms=[pinned]``, and a token announcing another ``alg`` is refused before any key is
touched. The time claims (``exp``, ``nbf``, ``iat``) are checked here rather than by pyjwt,
which takes ``"exp": "1796627000"`` or ``"exp": true`` for a date: RFC 7519 makes them JSON
numbers, and a verified token is remembered with its ``exp`` compared on every later use.

The ``auth:`` section is parsed by ``gateway.auth_config`` (``AuthConfig``); tokens are
signed by ``gateway.token_minting`` (``mint_token``). Both names are importable from here.
Key files and JWKS URLs are read by ``gateway.jwks`` and re-read every ``jwks_refresh_s`` by
``gateway.key_refresh``. See docs/auth.md.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import jwt

from gateway.auth_config import AuthConfig, AuthConfigError, load_verification_keys
from gateway.jwks import KeyRing
from gateway.token_minting import mint_token, parse_ttl

REALM: Final = "driftgate"
MAX_TOKEN_CHARS: Final = 8192

#: This module's names, and the configuration and minting names callers import from here.
__all__ = [
    "MAX_TOKEN_CHARS",
    "REALM",
    "VERIFIED_TOKENS_KEPT",
    "AuthConfig",
    "AuthConfigError",
    "AuthError",
    "Forbidden",
    "InvalidRequest",
    "Principal",
    "TokenVerifier",
    "Unauthenticated",
    "check_one_authorization",
    "mint_token",
    "parse_ttl",
    "require",
]


class AuthError(Exception):
    """A request the gateway refuses; carries the HTTP status and the challenge header."""

    status_code = 401
    error: str | None = "invalid_token"

    def __init__(self, message: str, *, scope: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.scope = scope

    @property
    def www_authenticate(self) -> str:
        """The ``WWW-Authenticate`` value (RFC 6750 section 3)."""
        parts = [f'Bearer realm="{REALM}"']
        if self.error:
            parts.append(f'error="{self.error}"')
            parts.append(f'error_description="{_header_safe(self.message)}"')
        if self.scope:
            parts.append(f'scope="{_header_safe(self.scope)}"')
        return ", ".join(parts)


class InvalidRequest(AuthError):
    """A request that is malformed as a whole (RFC 6750 section 3.1), such as two credentials."""

    status_code = 400
    error = "invalid_request"


class Unauthenticated(AuthError):
    status_code = 401

    @classmethod
    def no_credentials(cls, message: str) -> Unauthenticated:
        """No bearer token at all: RFC 6750 says to challenge without an error code."""
        exc = cls(message)
        exc.error = None
        return exc


class Forbidden(AuthError):
    status_code = 403
    error = "insufficient_scope"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who sent a verified token, and what its scopes allow."""

    subject: str
    scopes: frozenset[str]
    claims: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def allows(self, scope: str, model: str | None = None) -> bool:
        """``scope`` itself grants every model; ``scope:<model>`` grants that model only."""
        return scope in self.scopes or (bool(model) and f"{scope}:{model}" in self.scopes)


def require(principal: Principal, scope: str, model: str | None = None) -> None:
    """Raise ``Forbidden`` (403) unless ``principal`` holds ``scope`` (for ``model``)."""
    if principal.allows(scope, model):
        return
    needed = f"{scope}:{model}" if model else scope
    held = " ".join(sorted(principal.scopes)) or "none"
    raise Forbidden(
        f"token for {principal.subject!r} lacks scope {needed!r}"
        + (f" (or {scope!r})" if model else "")
        + f"; it has: {held}",
        scope=needed,
    )


#: Tokens remembered after their signature and claims checked out, so that a client sending
#: the same token on every request pays for one signature check (measured: HS256 added
#: ~0.3 ms of gateway CPU per request). Each hit re-checks ``exp``.
VERIFIED_TOKENS_KEPT = 4096


class TokenVerifier:
    """Checks ``Authorization: Bearer`` headers against the configured key and claims."""

    def __init__(self, config: AuthConfig) -> None:
        if not config.enabled:
            raise AuthConfigError("auth.enabled is false: there is nothing to verify tokens with")
        self.config = config
        self._ring = load_verification_keys(config)
        self._verified: OrderedDict[str, Principal] = OrderedDict()
        #: Called (on the verifying thread) when a token names a kid the keys lack: the
        #: identity provider may have rotated its keys (``gateway.key_refresh`` listens).
        self.on_unknown_kid: Callable[[], None] | None = None

    def load_keys(self) -> KeyRing | None:
        """Read the configured key file or URL afresh; touches no state (any thread)."""
        return load_verification_keys(self.config)

    def use_keys(self, ring: KeyRing | None) -> bool:
        """Verify with ``ring`` from now on; True when it differs from the keys in use.

        A change forgets the tokens verified so far: a key taken out of the set must stop
        working at once.
        """
        if _same_keys(ring, self._ring):
            return False
        self._ring = ring
        self._verified.clear()
        return True

    def reload_keys(self) -> None:
        """Re-read the keys now (after a rotation); the old keys stay on failure."""
        self._ring = self.load_keys()
        self._verified.clear()

    def verify(self, authorization: str | None) -> Principal:
        """The principal of a valid token; ``Unauthenticated`` for anything else."""
        token = _bearer_token(authorization)
        known = self._verified.get(token)
        if known is not None and not _expired(known.claims, time.time(), self.config.leeway_s):
            self._verified.move_to_end(token)
            return known
        principal = self._check(token)
        self._verified[token] = principal
        if len(self._verified) > VERIFIED_TOKENS_KEPT:
            self._verified.popitem(last=False)
        return principal

    def _check(self, token: str) -> Principal:
        """Header, signature and claims of ``token``, checked in full."""
        cfg = self.config
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise Unauthenticated(f"malformed token: {exc}") from None
        alg = header.get("alg")
        if isinstance(alg, str) and alg.lower() == "none":
            raise Unauthenticated(f"unsigned tokens (alg {_short(alg)}) are not accepted")
        if alg != cfg.algorithm:
            raise Unauthenticated(f"token alg {_short(alg)} is not the configured {cfg.algorithm}")
        kid = header.get("kid")
        key: Any = cfg.secret
        if self._ring is not None:
            key = self._ring.select(kid if isinstance(kid, str) else None)
            if key is None:
                if self.on_unknown_kid is not None:
                    self.on_unknown_kid()
                # The key file's path is the operator's business, not the client's.
                raise Unauthenticated(f"unknown key id (kid) {_short(kid)}: not a configured key")
        require_claims = ["exp", "sub"] + [
            name for name, v in (("iss", cfg.issuer), ("aud", cfg.audience)) if v
        ]
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[cfg.algorithm],
                audience=cfg.audience,
                issuer=cfg.issuer,
                leeway=cfg.leeway_s,
                # _check_times, not pyjwt, checks exp, nbf and iat: see the module docstring.
                options={
                    "require": require_claims,
                    "enforce_minimum_key_length": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise Unauthenticated(_describe(exc, cfg)) from None
        _check_times(claims, cfg.leeway_s)
        if not claims["sub"]:
            raise Unauthenticated("token 'sub' claim is empty")
        return Principal(claims["sub"], _scopes(claims), claims)


def _same_keys(a: KeyRing | None, b: KeyRing | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.keys.keys() == b.keys.keys() and all(
        a.keys[kid].public_numbers() == b.keys[kid].public_numbers() for kid in a.keys
    )


def check_one_authorization(raw_headers: Iterable[tuple[bytes, bytes]]) -> None:
    """Refuse a request that carries more than one ``Authorization`` header (400).

    Which one counts would depend on who reads them (a dict keeps the last, Litestar the
    first); RFC 6750 section 3.1 calls two credentials an ``invalid_request``.
    """
    count = sum(1 for name, _ in raw_headers if name.lower() == b"authorization")
    if count > 1:
        raise InvalidRequest(
            f"request has {count} Authorization headers; send exactly one "
            "('Authorization: Bearer <token>')"
        )


def _bearer_token(authorization: str | None) -> str:
    value = (authorization or "").strip()
    if not value:
        raise Unauthenticated.no_credentials(
            "missing Authorization header; send 'Authorization: Bearer <token>'"
        )
    # Any whitespace after the scheme: "Bearer<TAB>token" is a Bearer token, not a scheme.
    scheme, *rest = value.split(maxsplit=1)
    if scheme.lower() != "bearer":
        raise Unauthenticated.no_credentials(
            f"Authorization scheme {_short(scheme)} is not supported; use 'Bearer <token>'"
        )
    token = rest[0] if rest else ""
    if not token:
        raise Unauthenticated("Authorization header has 'Bearer' but no token")
    if len(token) > MAX_TOKEN_CHARS:
        raise Unauthenticated(f"malformed token: too long (over {MAX_TOKEN_CHARS} characters)")
    if any(c.isspace() for c in token):
        raise Unauthenticated("malformed token: contains spaces")
    if token.count(".") != 2:
        raise Unauthenticated(
            f"malformed token: a JWT is three dot-separated parts, this has {token.count('.') + 1}"
        )
    return token


#: RFC 7519 section 2: NumericDate, seconds since the epoch as a JSON number.
_TIME_CLAIMS: Final = ("exp", "nbf", "iat")


def _check_times(claims: Mapping[str, Any], leeway_s: float) -> None:
    """``exp``, ``nbf`` and ``iat`` are numbers, and now lies between them (with leeway)."""
    for name in _TIME_CLAIMS:
        if name in claims and not _is_numeric_date(claims[name]):
            raise Unauthenticated(
                f"token {name!r} claim must be a number of seconds since the epoch "
                f"(RFC 7519 NumericDate), got {_short(claims[name])}"
            )
    skew = f"beyond {leeway_s:g} s of allowed clock skew"
    now = time.time()
    if _expired(claims, now, leeway_s):
        raise Unauthenticated(f"token has expired (exp is past, {skew})")
    for name in ("nbf", "iat"):
        if name in claims and claims[name] > now + leeway_s:
            raise Unauthenticated(f"token is not yet valid ({name} is in the future, {skew})")


def _is_numeric_date(value: object) -> bool:
    # bool is an int to Python, not a number to JSON; a float may be NaN or infinite.
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _expired(claims: Mapping[str, Any], now: float, leeway_s: float) -> bool:
    # exp is compared, never added to: an int past the float range is a valid NumericDate.
    expires: int | float = claims["exp"]
    return expires <= now - leeway_s


def _describe(exc: Exception, cfg: AuthConfig) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token is missing the required {exc.claim!r} claim"
    if isinstance(exc, jwt.InvalidAudienceError):
        return f"token audience (aud) is wrong: expected {cfg.audience!r}"
    if isinstance(exc, jwt.InvalidIssuerError):
        return f"token issuer (iss) is wrong: expected {cfg.issuer!r}"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "token signature does not verify (signed with another key, or altered)"
    if isinstance(exc, jwt.DecodeError):
        return f"malformed token: {exc}"
    return f"invalid token: {exc}"


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    scopes: set[str] = set()
    for name in ("scope", "scp", "scopes"):
        value = claims.get(name)
        if isinstance(value, str):
            scopes.update(value.split())
        elif isinstance(value, list) and all(isinstance(s, str) for s in value):
            scopes.update(value)
        elif value is not None:
            raise Unauthenticated(f"token {name!r} claim must be a string or a list of strings")
    return frozenset(scopes)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _header_safe(text: str) -> str:
    # RFC 6750 section 3: error_description is printable ASCII without '"' and '\'.
    text = text.replace('"', "'").replace("\\", "/")
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:300]
