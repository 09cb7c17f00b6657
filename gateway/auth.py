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
Key files and JWKS URLs are read by ``gateway.jwks`` and re-read every ``jwks_refresh_s`` by
``gateway.key_refresh``. See docs/auth.md.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

import jwt

from gateway.jwks import (
    KeyMaterialError,
    KeyRing,
    check_jwks_url,
    load_key_ring,
    load_signing_key,
)

ALGORITHMS: Final = ("HS256", "HS384", "HS512", "RS256", "ES256")
SCOPES: Final = ("predict", "admin", "read:logs", "feedback")
REALM: Final = "driftgate"
MAX_TOKEN_CHARS: Final = 8192
# RFC 7518 section 3.2: an HMAC key must be at least as long as the hash output.
HMAC_MIN_BYTES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}
#: Bounds of ``jwks_refresh_s``: not a hammer on the identity provider, not a day stale.
MIN_REFRESH_S: Final = 10.0
MAX_REFRESH_S: Final = 86400.0


class AuthConfigError(ValueError):
    """An ``auth:`` section that cannot be used; the message names the key."""


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
class AuthConfig:
    """The ``auth:`` section of gateway.yaml; build it with ``from_dict``."""

    enabled: bool = True
    algorithm: str = "HS256"
    secret: bytes | None = field(default=None, repr=False)
    public_key_file: Path | None = None
    jwks_file: Path | None = None
    jwks_url: str | None = None
    #: Seconds between re-reads of public_key_file, jwks_file or jwks_url (key rotation).
    jwks_refresh_s: float = 300.0
    private_key_file: Path | None = None
    issuer: str | None = None
    audience: str | None = None
    leeway_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.enabled:
            return
        alg = self.algorithm
        if alg not in ALGORITHMS:
            raise AuthConfigError(
                f"auth.algorithm: must be one of {', '.join(ALGORITHMS)}, got {alg!r}"
            )
        files: dict[str, object] = {
            "public_key_file": self.public_key_file,
            "jwks_file": self.jwks_file,
            "jwks_url": self.jwks_url,
        }
        if alg in HMAC_MIN_BYTES:
            for key, value in {**files, "private_key_file": self.private_key_file}.items():
                if value is not None:
                    raise AuthConfigError(f"auth.{key}: {alg} uses a shared secret, not key files")
            _check_secret(alg, self.secret)
        else:
            if self.secret is not None:
                raise AuthConfigError(
                    f"auth.secret: {alg} verifies with a public key; a shared secret here is "
                    "how HS/RS algorithm confusion starts. Remove secret/secret_env"
                )
            if sum(v is not None for v in files.values()) != 1:
                raise AuthConfigError(
                    f"auth: {alg} needs exactly one of public_key_file, jwks_file, jwks_url"
                )
            if self.jwks_url is not None:
                try:
                    check_jwks_url(self.jwks_url)
                except KeyMaterialError as exc:
                    raise AuthConfigError(f"auth.jwks_url: {exc}") from None
        if not MIN_REFRESH_S <= self.jwks_refresh_s <= MAX_REFRESH_S:
            raise AuthConfigError(
                f"auth.jwks_refresh_s: must be {MIN_REFRESH_S:g} to {MAX_REFRESH_S:g} seconds, "
                f"got {self.jwks_refresh_s:g}"
            )
        if not 0 <= self.leeway_s <= 300:
            raise AuthConfigError(f"auth.leeway_s: must be 0 to 300 seconds, got {self.leeway_s}")

    @classmethod
    def from_dict(
        cls,
        raw: Mapping[str, Any],
        *,
        base_dir: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> AuthConfig:
        """Parse the section; relative paths are taken from ``base_dir`` (gateway.yaml's folder)."""
        unknown = [key for key in raw if key not in _KEYS]
        if unknown:
            hint = difflib.get_close_matches(str(unknown[0]), _KEYS, n=1)
            raise AuthConfigError(
                f"auth: unknown key {unknown[0]!r}"
                + (f"; did you mean {hint[0]!r}?" if hint else "")
            )
        enabled = raw.get("enabled", True)
        if not isinstance(enabled, bool):
            raise AuthConfigError(f"auth.enabled: must be true or false, got {enabled!r}")
        numbers = ("leeway_s", "jwks_refresh_s")
        strings = {k: _optional_str(raw, k) for k in _KEYS if k not in ("enabled", *numbers)}
        leeway = _seconds(raw, "leeway_s", 30.0)
        refresh = _seconds(raw, "jwks_refresh_s", 300.0)
        if strings["secret"] is not None and strings["secret_env"] is not None:
            raise AuthConfigError(
                "auth: set secret or secret_env, not both (secret_env is preferred)"
            )
        secret = strings["secret"]
        if enabled and strings["secret_env"] is not None:
            env = os.environ if environ is None else environ
            secret = env.get(strings["secret_env"])
            if not secret:
                raise AuthConfigError(
                    f"auth.secret_env: environment variable {strings['secret_env']} is not set"
                )

        def path(key: str) -> Path | None:
            value = strings[key]
            return None if value is None else (base_dir or Path()) / Path(value).expanduser()

        return cls(
            enabled=enabled,
            algorithm=strings["algorithm"] or "HS256",
            secret=None if secret is None else secret.encode(),
            public_key_file=path("public_key_file"),
            jwks_file=path("jwks_file"),
            jwks_url=strings["jwks_url"],
            jwks_refresh_s=refresh,
            private_key_file=path("private_key_file"),
            issuer=strings["issuer"],
            audience=strings["audience"],
            leeway_s=leeway,
        )

    @property
    def key_source(self) -> str | None:
        """Where the public keys come from (a file or URL), or None for a shared secret."""
        source = self.jwks_url or self.jwks_file or self.public_key_file
        return None if source is None or self.algorithm in HMAC_MIN_BYTES else str(source)


_KEYS: Final = (*(f.name for f in fields(AuthConfig)), "secret_env")


def _seconds(raw: Mapping[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise AuthConfigError(f"auth.{key}: must be a number of seconds, got {value!r}")
    return float(value)


def _optional_str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise AuthConfigError(f"auth.{key}: must be a non-empty string, got {value!r}")
    return value


def _check_secret(alg: str, secret: bytes | None) -> None:
    if secret is None:
        raise AuthConfigError(f"auth.secret_env: {alg} needs a shared secret (or auth.secret)")
    if len(secret) < HMAC_MIN_BYTES[alg]:
        raise AuthConfigError(
            f"auth.secret: {len(secret)} bytes is too short; RFC 7518 section 3.2 requires "
            f"at least {HMAC_MIN_BYTES[alg]} bytes for {alg} (openssl rand -base64 48)"
        )
    if b"-----BEGIN" in secret or secret.startswith(b"ssh-"):
        raise AuthConfigError(
            "auth.secret: looks like a PEM/SSH key; an HMAC secret is random bytes"
        )


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
        self._ring = _verification_keys(config)
        self._verified: OrderedDict[str, Principal] = OrderedDict()
        #: Called (on the verifying thread) when a token names a kid the keys lack: the
        #: identity provider may have rotated its keys (``gateway.key_refresh`` listens).
        self.on_unknown_kid: Callable[[], None] | None = None

    def load_keys(self) -> KeyRing | None:
        """Read the configured key file or URL afresh; touches no state (any thread)."""
        return _verification_keys(self.config)

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


def _verification_keys(config: AuthConfig) -> KeyRing | None:
    try:
        return load_key_ring(
            config.algorithm,
            jwks_file=config.jwks_file,
            public_key_file=config.public_key_file,
            jwks_url=config.jwks_url,
        )
    except KeyMaterialError as exc:
        raise AuthConfigError(str(exc)) from None


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


def parse_ttl(text: str) -> int:
    """Seconds from ``"3600"``, ``"90s"``, ``"30m"``, ``"1h"``, ``"7d"`` or ``"1h30m"``."""
    value = text.strip().lower()
    if value.isascii() and value.isdigit():
        seconds = int(value)
    elif re.fullmatch(r"(\d+[smhd])+", value):
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        seconds = sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([smhd])", value))
    else:
        raise ValueError(f"TTL {text!r}: use seconds or a duration such as 90s, 30m, 1h, 7d, 1h30m")
    if seconds <= 0:
        raise ValueError(f"TTL {text!r}: must be more than 0 seconds")
    return seconds


_MINTED_CLAIMS: Final = frozenset({"sub", "scope", "iat", "nbf", "exp", "iss", "aud", "jti"})


def mint_token(
    config: AuthConfig,
    subject: str,
    scopes: Iterable[str],
    ttl_s: int,
    *,
    now: float | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """A token that ``TokenVerifier(config)`` accepts, for ``driftgate token create``."""
    scopes = list(scopes)
    if not subject:
        raise ValueError("subject must not be empty")
    for scope in scopes:
        base, _, model = scope.rpartition(":")
        if scope not in SCOPES and not (base in SCOPES and model):
            raise ValueError(f"unknown scope {scope!r}; use {', '.join(SCOPES)} or predict:<model>")
    if ttl_s <= 0:
        raise ValueError(f"ttl_s must be more than 0, got {ttl_s}")
    clash = sorted(_MINTED_CLAIMS & set(extra_claims or {}))
    if clash:
        raise ValueError(f"extra_claims may not set {', '.join(clash)}: mint_token sets them")
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        **(extra_claims or {}),
        "sub": subject,
        "scope": " ".join(scopes),
        "iat": issued,
        "nbf": issued,
        "exp": issued + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    claims.update({k: v for k, v in (("iss", config.issuer), ("aud", config.audience)) if v})
    key, kid = _signing_key(config)
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, key, algorithm=config.algorithm, headers=headers)


def _signing_key(config: AuthConfig) -> tuple[Any, str | None]:
    if not config.enabled:
        raise AuthConfigError("auth.enabled is false: there is no key to sign tokens with")
    if config.algorithm in HMAC_MIN_BYTES:
        return config.secret, None
    if config.private_key_file is None:
        raise AuthConfigError(f"auth.private_key_file: needed to mint {config.algorithm} tokens")
    ring = _verification_keys(config)
    assert ring is not None  # an asymmetric config always names its public key file
    try:
        return load_signing_key(config.algorithm, config.private_key_file, ring)
    except KeyMaterialError as exc:
        raise AuthConfigError(str(exc)) from None
