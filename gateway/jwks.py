"""Key material for JWT auth: PEM and JWKS files or a JWKS URL, checked against the pinned
algorithm.

``gateway.auth`` builds a ``KeyRing`` at start (and again on every refresh,
``gateway.key_refresh``) and asks it for the public key that a token's ``kid`` names.
Everything here fails early, at load time, with a ``KeyMaterialError`` that says what is
wrong with which file or URL and how to fix it; nothing in this module sees a token.

    load_key_ring(algorithm, jwks_file=, public_key_file=, jwks_url=)  what TokenVerifier uses
    load_pem_public_key(path, algorithm)   one key, tokens' kid ignored
    load_jwks(path, algorithm)             keys by kid (RFC 7517), all of the pinned type
    fetch_jwks(url, algorithm)             the same from an identity provider's JWKS URL;
                                           keys for other algorithms or uses are skipped
    load_signing_key(algorithm, path, ring)  private key and kid for ``driftgate token create``
    public_jwk(pem_file, kid, algorithm)   the JWKS entry for a PEM public key (key rotation)
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt import PyJWK, PyJWTError
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

MIN_RSA_BITS = 2048
#: Seconds one JWKS download may take; a slower identity provider fails the refresh.
JWKS_FETCH_TIMEOUT_S = 5.0
#: A JWKS document larger than this is refused (real ones are a few KiB).
JWKS_MAX_BYTES = 1 << 20


class KeyMaterialError(ValueError):
    """A key file that cannot be used with the configured algorithm."""


@dataclass(frozen=True, slots=True)
class KeyRing:
    """Public keys by ``kid``. A PEM file gives one key under ``None`` that any kid selects."""

    keys: Mapping[str | None, PublicKey]
    source: str

    def select(self, kid: str | None) -> PublicKey | None:
        """The key for a token's ``kid``, or None when the ring has no such key."""
        if None in self.keys:
            return self.keys[None]
        if kid is None:
            # A token without kid is only unambiguous against a one-key set.
            return next(iter(self.keys.values())) if len(self.keys) == 1 else None
        return self.keys.get(kid)


def load_key_ring(
    algorithm: str,
    *,
    jwks_file: Path | None,
    public_key_file: Path | None,
    jwks_url: str | None = None,
) -> KeyRing | None:
    """The configured public keys; None for HMAC algorithms, which use the shared secret."""
    if jwks_url is not None:
        try:
            return fetch_jwks(jwks_url, algorithm)
        except KeyMaterialError as exc:
            raise KeyMaterialError(f"auth.jwks_url: {exc}") from None
    try:
        if jwks_file is not None:
            return load_jwks(jwks_file, algorithm)
        if public_key_file is not None:
            return load_pem_public_key(public_key_file, algorithm)
    except KeyMaterialError as exc:
        key = "jwks_file" if jwks_file is not None else "public_key_file"
        raise KeyMaterialError(f"auth.{key}: {exc}") from None
    return None


def load_signing_key(algorithm: str, path: Path, ring: KeyRing) -> tuple[PrivateKey, str | None]:
    """The private key and the kid to put in tokens; refuses a key ``ring`` cannot verify."""
    try:
        private_key = load_private_key(path, algorithm)
        return private_key, kid_for(private_key, ring)
    except KeyMaterialError as exc:
        raise KeyMaterialError(f"auth.private_key_file: {exc}") from None


def check_key_fits(key: object, algorithm: str, where: str) -> None:
    """Refuse a key of the wrong type or strength for ``algorithm`` (RS256 or ES256)."""
    if algorithm == "RS256":
        if not isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
            raise KeyMaterialError(f"{where}: RS256 needs an RSA key, got {_kind(key)}")
        if key.key_size < MIN_RSA_BITS:
            raise KeyMaterialError(
                f"{where}: RSA key has {key.key_size} bits; RS256 needs at least {MIN_RSA_BITS}"
            )
    elif algorithm == "ES256":
        if not isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
            raise KeyMaterialError(f"{where}: ES256 needs an EC P-256 key, got {_kind(key)}")
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyMaterialError(f"{where}: ES256 needs the P-256 curve, got {key.curve.name}")
    else:
        raise KeyMaterialError(f"{where}: {algorithm} does not use a public key")


def load_pem_public_key(path: Path, algorithm: str) -> KeyRing:
    """One public key from a PEM file (``PUBLIC KEY`` or an X.509 ``CERTIFICATE``)."""
    data = _read(path)
    if b"PRIVATE KEY-----" in data:
        raise KeyMaterialError(
            f"{path}: this is a private key; give the public half "
            f"(openssl pkey -in {path.name} -pubout -out pub.pem)"
        )
    key: object
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise KeyMaterialError(f"{path}: not a PEM public key or certificate ({exc})") from None
    check_key_fits(key, algorithm, str(path))
    assert isinstance(key, PublicKey)  # check_key_fits narrowed it
    return KeyRing({None: key}, str(path))


def load_jwks(path: Path, algorithm: str) -> KeyRing:
    """Every key of a JWKS file; each needs a unique ``kid`` and must fit ``algorithm``."""
    return parse_jwks(_read(path), algorithm, str(path))


def parse_jwks(data: bytes, algorithm: str, source: str, *, lenient: bool = False) -> KeyRing:
    """The keys of a JWK Set document. Strict (a file the operator wrote): every entry must be
    a public signature key for ``algorithm``. Lenient (an identity provider's set, which also
    lists keys for other algorithms and for encryption): entries that do not fit are skipped,
    and the set is refused only when no key fits."""
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise KeyMaterialError(f"{source}: not valid JSON ({exc})") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise KeyMaterialError(
            f'{source}: expected a JWK Set, {{"keys": [...]}}, with one key or more'
        )
    keys: dict[str | None, PublicKey] = {}
    skipped: list[str] = []
    for index, entry in enumerate(entries):
        where = f"{source}: keys[{index}]"
        try:
            parsed = _parse_jwk(entry, algorithm, where, several=len(entries) > 1)
        except KeyMaterialError as exc:
            if not lenient:
                raise
            skipped.append(str(exc).removeprefix(f"{source}: "))
            continue
        if set(parsed) & set(keys):
            raise KeyMaterialError(f"{where}: kid {entry.get('kid')!r} is used twice")
        keys.update(parsed)
    if not keys:
        raise KeyMaterialError(
            f"{source}: no key of the set fits {algorithm} ({'; '.join(skipped)})"
        )
    return KeyRing(keys, source)


def check_jwks_url(url: str) -> str:
    """``url`` if keys may be fetched from it: https, or http to this machine only (a key
    fetched over plain HTTP from elsewhere could have been swapped on the way)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise KeyMaterialError(f"{url!r} is not an http(s) URL")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise KeyMaterialError(
            f"{url!r}: keys must be fetched over https (plain http only from localhost)"
        )
    return url


def fetch_jwks(url: str, algorithm: str, timeout_s: float = JWKS_FETCH_TIMEOUT_S) -> KeyRing:
    """The keys for ``algorithm`` published at ``url`` (lenient: see ``parse_jwks``)."""
    check_jwks_url(url)
    try:
        response = httpx.get(url, timeout=timeout_s, headers={"accept": "application/json"})
    except httpx.HTTPError as exc:
        raise KeyMaterialError(f"{url}: cannot fetch ({type(exc).__name__}: {exc})") from None
    if response.status_code != 200:
        raise KeyMaterialError(f"{url}: answered HTTP {response.status_code}, expected 200")
    if len(response.content) > JWKS_MAX_BYTES:
        raise KeyMaterialError(
            f"{url}: {len(response.content)} bytes is too large for a JWK Set "
            f"(at most {JWKS_MAX_BYTES})"
        )
    return parse_jwks(response.content, algorithm, url, lenient=True)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_jwk(
    entry: Any, algorithm: str, where: str, *, several: bool
) -> dict[str | None, PublicKey]:
    if not isinstance(entry, dict):
        raise KeyMaterialError(f"{where}: a JWK must be a JSON object")
    kid = entry.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise KeyMaterialError(f"{where}: kid must be a string")
    if several and not kid:
        raise KeyMaterialError(f"{where}: every key of a set with several keys needs a kid")
    where = f"{where} (kid {kid!r})"
    if entry.get("alg", algorithm) != algorithm:
        raise KeyMaterialError(f"{where}: alg {entry['alg']!r} differs from the pinned {algorithm}")
    if entry.get("use", "sig") != "sig":
        raise KeyMaterialError(f"{where}: use {entry['use']!r}; signature keys have use 'sig'")
    if "d" in entry:
        raise KeyMaterialError(f"{where}: holds a private key ('d'); publish public keys only")
    try:
        key = PyJWK(entry, algorithm).key
    except PyJWTError as exc:
        raise KeyMaterialError(f"{where}: not a usable {algorithm} key ({exc})") from None
    check_key_fits(key, algorithm, where)
    assert isinstance(key, PublicKey)
    return {kid: key}


def load_private_key(path: Path, algorithm: str) -> PrivateKey:
    """The PEM private key (unencrypted PKCS#8 or traditional) that signs minted tokens."""
    try:
        key = serialization.load_pem_private_key(_read(path), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyMaterialError(
            f"{path}: not an unencrypted PEM private key ({exc}); "
            f"decrypt it with: openssl pkey -in {path.name} -out key.pem"
        ) from None
    check_key_fits(key, algorithm, str(path))
    assert isinstance(key, PrivateKey)
    return key


def kid_for(private_key: PrivateKey, ring: KeyRing) -> str | None:
    """The kid of the ring's key that pairs with ``private_key``; refuses an unpaired key."""
    wanted = _spki(private_key.public_key())
    for kid, public_key in ring.keys.items():
        if _spki(public_key) == wanted:
            return kid
    raise KeyMaterialError(
        f"the private key matches no public key in {ring.source}: "
        "tokens it signs would be rejected; publish its public key first"
    )


def public_jwk(pem_file: Path, kid: str, algorithm: str) -> dict[str, Any]:
    """The JWKS entry for a PEM public key, to add to ``jwks_file`` when rotating keys."""
    key = load_pem_public_key(pem_file, algorithm).keys[None]
    if isinstance(key, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(key, as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key, as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", "alg": algorithm}


def _spki(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"{path}: cannot read ({exc.strerror})") from None


def _kind(key: object) -> str:
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"an EC {key.curve.name} key"
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "an RSA key"
    return f"a {type(key).__name__.lstrip('_')}"
