"""Tokens signed with the gateway's own keys, for ``driftgate token create`` and tests.

:func:`mint_token` signs a token that ``gateway.auth.TokenVerifier`` accepts under the same
``AuthConfig``: the shared secret for HS*, the ``private_key_file`` (with the ``kid`` of
its public key) for RS256/ES256. :func:`parse_ttl` reads the ``--ttl`` of the command.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Final

import jwt

from gateway.auth_config import (
    HMAC_MIN_BYTES,
    AuthConfig,
    AuthConfigError,
    load_verification_keys,
)
from gateway.jwks import KeyMaterialError, load_signing_key

#: The scopes the gateway's endpoints require; a minted token may also name
#: ``<scope>:<model>`` for one of them.
SCOPES: Final = ("predict", "admin", "read:logs", "feedback")


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
    ring = load_verification_keys(config)
    assert ring is not None  # an asymmetric config always names its public key file
    try:
        return load_signing_key(config.algorithm, config.private_key_file, ring)
    except KeyMaterialError as exc:
        raise AuthConfigError(str(exc)) from None
