"""The ``auth:`` section of gateway.yaml, checked as it is built, and the keys it names.

``AuthConfig.from_dict`` parses the section; every ``AuthConfig`` checks itself, and
refuses with :class:`AuthConfigError` (the message names the key) what cannot be used or
would weaken verification: an algorithm outside :data:`ALGORITHMS`, an HMAC secret shorter
than RFC 7518 requires, a shared secret next to an asymmetric algorithm (HS/RS confusion),
anything but exactly one source of public keys. :func:`load_verification_keys` reads the
public keys the section names (``gateway.jwks``): ``gateway.auth`` verifies tokens with
them, ``gateway.token_minting`` checks its signing key against them.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from gateway.jwks import KeyMaterialError, KeyRing, check_jwks_url, load_key_ring

ALGORITHMS: Final = ("HS256", "HS384", "HS512", "RS256", "ES256")
# RFC 7518 section 3.2: an HMAC key must be at least as long as the hash output.
HMAC_MIN_BYTES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}
#: Bounds of ``jwks_refresh_s``: not a hammer on the identity provider, not a day stale.
MIN_REFRESH_S: Final = 10.0
MAX_REFRESH_S: Final = 86400.0


class AuthConfigError(ValueError):
    """An ``auth:`` section that cannot be used; the message names the key."""


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


def load_verification_keys(config: AuthConfig) -> KeyRing | None:
    """The public keys ``config`` names (None for a shared secret), read afresh."""
    try:
        return load_key_ring(
            config.algorithm,
            jwks_file=config.jwks_file,
            public_key_file=config.public_key_file,
            jwks_url=config.jwks_url,
        )
    except KeyMaterialError as exc:
        raise AuthConfigError(str(exc)) from None
