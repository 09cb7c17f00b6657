"""JWT auth: every attack a test, each asserting the status and what the message says."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import random
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from gateway.auth import (
    AuthConfig,
    AuthConfigError,
    AuthError,
    Forbidden,
    InvalidRequest,
    Principal,
    TokenVerifier,
    Unauthenticated,
    check_one_authorization,
    mint_token,
    parse_ttl,
    require,
)

SECRET = "s3cret-" + "x" * 40  # 47 bytes: enough for HS256 and HS384, not for HS512
DOCS = Path(__file__).parents[2] / "docs" / "auth.md"


# --- helpers and keys -----------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A token built by hand, as an attacker would, signed by ``sign(signing_input)``."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{_b64(signature)}"


def _claims(**overrides: Any) -> dict[str, Any]:
    # Built when tests are collected: valid for longer than the whole suite takes to run.
    now = int(time.time())
    claims = {"sub": "app1", "scope": "predict", "iat": now, "exp": now + 3 * 3600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _pem_public(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _pem_private(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    """The public JWK of ``key`` (pyjwt leaves ``alg`` out; the verifier pins it)."""
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def _hs(**overrides: Any) -> AuthConfig:
    return AuthConfig.from_dict({"algorithm": "HS256", "secret": SECRET, **overrides})


def _rsa_config(tmp_path: Path, key: rsa.RSAPrivateKey, **overrides: Any) -> AuthConfig:
    _write(tmp_path / "pub.pem", _pem_public(key))
    _write(tmp_path / "key.pem", _pem_private(key))
    raw = {"algorithm": "RS256", "public_key_file": "pub.pem", "private_key_file": "key.pem"}
    return AuthConfig.from_dict({**raw, **overrides}, base_dir=tmp_path)


def _refused(verifier: TokenVerifier, header: str | None) -> Unauthenticated:
    with pytest.raises(Unauthenticated) as caught:
        verifier.verify(header)
    assert caught.value.status_code == 401
    return caught.value


# --- the happy paths ------------------------------------------------------------------------


def test_minted_hs256_token_round_trips() -> None:
    config = _hs(issuer="driftgate", audience="driftgate")
    token = mint_token(config, "app1", ["predict:titanic", "feedback"], 3600, extra_claims={"t": 1})
    principal = TokenVerifier(config).verify(f"Bearer {token}")
    assert principal.subject == "app1"
    assert principal.scopes == {"predict:titanic", "feedback"}
    assert principal.claims["iss"] == "driftgate"
    assert principal.claims["t"] == 1
    assert principal.claims["exp"] - principal.claims["iat"] == 3600


def test_bearer_scheme_is_case_insensitive() -> None:
    config = _hs()
    token = mint_token(config, "app1", ["predict"], 60)
    assert TokenVerifier(config).verify(f"bearer  {token} ").subject == "app1"


def test_any_whitespace_separates_the_scheme_from_the_token() -> None:
    config = _hs()
    token = mint_token(config, "app1", ["predict"], 60)
    assert TokenVerifier(config).verify(f"Bearer\t{token}").subject == "app1"


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
@pytest.mark.parametrize("source", ["pem", "certificate", "jwks"])
def test_asymmetric_keys_round_trip(tmp_path: Path, rsa_key, ec_key, alg: str, source: str) -> None:
    key = rsa_key if alg == "RS256" else ec_key
    _write(tmp_path / "key.pem", _pem_private(key))
    raw: dict[str, Any] = {"algorithm": alg, "private_key_file": "key.pem"}
    if source == "pem":
        raw["public_key_file"] = str(_write(tmp_path / "pub.pem", _pem_public(key)))
    elif source == "certificate":
        raw["public_key_file"] = str(_write(tmp_path / "cert.pem", _certificate(key)))
    else:
        jwks = {"keys": [{**_jwk(key, "k1"), "alg": alg}]}
        raw["jwks_file"] = str(_write(tmp_path / "jwks.json", json.dumps(jwks)))
    config = AuthConfig.from_dict(raw, base_dir=tmp_path)
    token = mint_token(config, "app1", ["predict"], 60)
    assert jwt.get_unverified_header(token)["alg"] == alg
    assert TokenVerifier(config).verify(f"Bearer {token}").allows("predict", "titanic")


def _certificate(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "driftgate")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


# --- attacks: signatures and algorithms ------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
def test_unsigned_alg_none_token_is_refused(alg: str) -> None:
    token = _forge({"alg": alg, "typ": "JWT"}, _claims())
    error = _refused(TokenVerifier(_hs()), f"Bearer {token}")
    assert "unsigned" in error.message
    assert 'error="invalid_token"' in error.www_authenticate


def test_token_signed_with_another_secret_is_refused() -> None:
    token = jwt.encode(_claims(), "another-secret-" + "y" * 40, algorithm="HS256")
    error = _refused(TokenVerifier(_hs()), f"Bearer {token}")
    assert "signature does not verify" in error.message


def test_tampered_claims_are_refused() -> None:
    header, _, signature = mint_token(_hs(), "app1", ["predict"], 60).split(".")
    forged_claims = _b64(json.dumps(_claims(scope="admin")).encode())
    error = _refused(TokenVerifier(_hs()), f"Bearer {header}.{forged_claims}.{signature}")
    assert "signature does not verify" in error.message


def test_rsa_token_signed_with_another_private_key_is_refused(
    tmp_path: Path, rsa_key, other_rsa_key
) -> None:
    token = jwt.encode(_claims(), other_rsa_key, algorithm="RS256")
    error = _refused(TokenVerifier(_rsa_config(tmp_path, rsa_key)), f"Bearer {token}")
    assert "signature does not verify" in error.message


def test_hs256_token_keyed_with_the_rsa_public_pem_is_refused(tmp_path: Path, rsa_key) -> None:
    """The classic confusion attack: HMAC over the public key an RS256 server verifies with."""
    public_pem = _pem_public(rsa_key)
    verifier = TokenVerifier(_rsa_config(tmp_path, rsa_key))

    def hmac_with_pem(data: bytes) -> bytes:
        return hmac.new(public_pem, data, hashlib.sha256).digest()

    token = _forge({"alg": "HS256", "typ": "JWT"}, _claims(), hmac_with_pem)
    error = _refused(verifier, f"Bearer {token}")
    assert "'HS256'" in error.message
    assert "RS256" in error.message
    # Relabelled as RS256, the HMAC is just a bad RSA signature.
    relabelled = _forge({"alg": "RS256", "typ": "JWT"}, _claims(), hmac_with_pem)
    assert "signature does not verify" in _refused(verifier, f"Bearer {relabelled}").message


def test_token_with_another_hs_algorithm_is_refused() -> None:
    token = jwt.encode(_claims(), SECRET * 2, algorithm="HS384")
    error = _refused(TokenVerifier(_hs()), f"Bearer {token}")
    assert "'HS384' is not the configured HS256" in error.message


# --- attacks: claims ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "config", "message"),
    [
        (_claims(exp=int(time.time()) - 3600), {}, "token has expired"),
        (_claims(nbf=int(time.time()) + 3600), {}, "not yet valid (nbf is in the future"),
        (_claims(iat=int(time.time()) + 3600), {}, "not yet valid (iat is in the future"),
        (_claims(exp=None), {}, "missing the required 'exp' claim"),
        (_claims(sub=None), {}, "missing the required 'sub' claim"),
        (_claims(sub=""), {}, "'sub' claim is empty"),
        (_claims(aud="someone-else"), {"audience": "driftgate"}, "audience (aud) is wrong"),
        (_claims(), {"audience": "driftgate"}, "missing the required 'aud' claim"),
        (_claims(aud="driftgate"), {}, "audience (aud) is wrong"),
        (_claims(iss="evil"), {"issuer": "driftgate"}, "issuer (iss) is wrong"),
        (_claims(), {"issuer": "driftgate"}, "missing the required 'iss' claim"),
        (_claims(exp="tomorrow"), {}, "exp"),
        (_claims(scope={"predict": True}), {}, "'scope' claim must be a string or a list"),
        (_claims(scp=[1, 2]), {}, "'scp' claim must be a string or a list"),
    ],
)
def test_bad_claims_are_refused(claims: dict[str, Any], config: dict[str, Any], message: str):
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    error = _refused(TokenVerifier(_hs(**config)), f"Bearer {token}")
    assert message in error.message


_IN_AN_HOUR = int(time.time()) + 3600


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        pytest.param(
            _claims(exp=str(_IN_AN_HOUR)),
            "'exp' claim must be a number of seconds since the epoch "
            f"(RFC 7519 NumericDate), got '{_IN_AN_HOUR}'",
            id="exp-digits-in-a-string",
        ),
        pytest.param(
            _claims(exp=f" {_IN_AN_HOUR}"), "'exp' claim must be a number", id="exp-padded-string"
        ),
        pytest.param(
            _claims(exp=True),
            "'exp' claim must be a number of seconds since the epoch "
            "(RFC 7519 NumericDate), got True",
            id="exp-true",
        ),
        pytest.param(_claims(exp=float("nan")), "'exp' claim must be a number", id="exp-nan"),
        pytest.param(_claims(exp=[_IN_AN_HOUR]), "'exp' claim must be a number", id="exp-list"),
        pytest.param(_claims(nbf="x"), "'nbf' claim must be a number", id="nbf-string"),
        pytest.param(_claims(iat="x"), "'iat' claim must be a number", id="iat-string"),
        pytest.param(_claims(nbf=True), "'nbf' claim must be a number", id="nbf-true"),
        pytest.param(
            _claims(iat=str(int(time.time()))),
            "'iat' claim must be a number",
            id="iat-digits-in-a-string",
        ),
        pytest.param({**_claims(), "nbf": None}, "'nbf' claim must be a number", id="nbf-null"),
    ],
)
def test_time_claims_must_be_json_numbers(claims: dict[str, Any], message: str) -> None:
    """RFC 7519 NumericDate: pyjwt alone takes "1796627000" and true; the gateway does not."""
    verifier = TokenVerifier(_hs())
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    for _ in range(2):  # refused every time: never remembered, never a TypeError
        error = _refused(verifier, f"Bearer {token}")
        assert message in error.message
        assert error.www_authenticate.startswith('Bearer realm="driftgate", error="invalid_token"')


def test_a_fractional_or_far_future_exp_is_a_date_that_is_remembered() -> None:
    verifier = TokenVerifier(_hs())
    for exp in (_IN_AN_HOUR + 0.5, 10**400):  # 10**400 + leeway would not fit a float
        token = jwt.encode(_claims(exp=exp), SECRET, algorithm="HS256")
        assert verifier.verify(f"Bearer {token}").subject == "app1"
        assert verifier.verify(f"Bearer {token}").subject == "app1"


def test_audience_may_be_a_list_containing_ours() -> None:
    token = jwt.encode(_claims(aud=["other", "driftgate"]), SECRET, algorithm="HS256")
    assert TokenVerifier(_hs(audience="driftgate")).verify(f"Bearer {token}").subject == "app1"


def test_leeway_is_honoured() -> None:
    config, strict = _hs(leeway_s=30), _hs(leeway_s=0)
    now = time.time()
    expired_10s_ago = mint_token(config, "app1", ["predict"], 60, now=now - 70)
    valid_in_10s = mint_token(config, "app1", ["predict"], 60, now=now + 10)
    expired_60s_ago = mint_token(config, "app1", ["predict"], 60, now=now - 120)
    valid_in_60s = mint_token(config, "app1", ["predict"], 600, now=now + 60)
    for token in (expired_10s_ago, valid_in_10s):
        assert TokenVerifier(config).verify(f"Bearer {token}").subject == "app1"
        _refused(TokenVerifier(strict), f"Bearer {token}")
    assert (
        "beyond 30 s of allowed clock skew"
        in _refused(TokenVerifier(config), f"Bearer {expired_60s_ago}").message
    )
    assert "not yet valid" in _refused(TokenVerifier(config), f"Bearer {valid_in_60s}").message


# --- attacks: the header itself -------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "challenge_error", "message"),
    [
        (None, None, "missing Authorization header"),
        ("", None, "missing Authorization header"),
        ("   ", None, "missing Authorization header"),
        ("Basic xyz", None, "scheme 'Basic' is not supported"),
        ("garbage", None, "scheme 'garbage' is not supported"),
        ("Bearer", "invalid_token", "'Bearer' but no token"),
        ("Bearer   ", "invalid_token", "'Bearer' but no token"),
        ("Bearer a.b", "invalid_token", "malformed token"),
        ("Bearer a.b.c", "invalid_token", "malformed token"),
        ("Bearer a.b.c.d.e", "invalid_token", "malformed token"),
        ("Bearer a.b.c.d", "invalid_token", "three dot-separated parts, this has 4"),
        ("Bearer ...", "invalid_token", "malformed token"),
        ("Bearer @@@.@@@.@@@", "invalid_token", "malformed token"),
        ("Bearer a b", "invalid_token", "contains spaces"),
        ("Bearer " + "a" * 9000, "invalid_token", "too long"),
        (f"Bearer {_b64(b'not json')}.{_b64(b'{}')}.", "invalid_token", "malformed token"),
        (f"Bearer {_b64(b'[1]')}.{_b64(b'{}')}.", "invalid_token", "malformed token"),
        (f"Bearer {_b64(b'{}')}.{_b64(b'{}')}.", "invalid_token", "alg None is not"),
        ("Bearer ünï.cödé.✓", "invalid_token", "malformed token"),
    ],
)
def test_malformed_headers_answer_401(header: str | None, challenge_error, message: str) -> None:
    error = _refused(TokenVerifier(_hs()), header)
    assert message in error.message
    if challenge_error is None:
        assert error.www_authenticate == 'Bearer realm="driftgate"'
    else:
        assert error.www_authenticate.startswith(
            f'Bearer realm="driftgate", error="{challenge_error}"'
        )


def test_two_authorization_headers_are_an_invalid_request() -> None:
    token = mint_token(_hs(), "app1", ["predict"], 60)
    one = [(b"host", b"x"), (b"authorization", f"Bearer {token}".encode())]
    check_one_authorization(one)
    with pytest.raises(InvalidRequest) as caught:
        check_one_authorization([*one, (b"Authorization", b"Bearer garbage")])
    error = caught.value
    assert error.status_code == 400
    assert error.message == (
        "request has 2 Authorization headers; send exactly one ('Authorization: Bearer <token>')"
    )
    assert error.www_authenticate.startswith('Bearer realm="driftgate", error="invalid_request"')


def test_hmac_signed_token_with_non_json_payload_is_refused() -> None:
    def sign(data: bytes) -> bytes:
        return hmac.new(SECRET.encode(), data, hashlib.sha256).digest()

    header = _b64(json.dumps({"alg": "HS256"}).encode())
    signing_input = f"{header}.{_b64(b'[not json')}"
    token = f"{signing_input}.{_b64(sign(signing_input.encode()))}"
    assert "malformed token" in _refused(TokenVerifier(_hs()), f"Bearer {token}").message


def test_random_tokens_only_ever_raise_unauthenticated() -> None:
    """Odd JSON types in every header field and claim, bad segments, stray bytes: all 401."""
    rng = random.Random(20250601)
    odd = [None, 0, 2**70, 1.5, "", "x", "none", "HS256", [], ["a"], {}, {"a": 1}, True, "\x00"]
    header_keys = ["alg", "kid", "typ", "crit", "b64", "jku", "cty"]
    claim_keys = ["sub", "exp", "nbf", "iat", "aud", "iss", "scope", "scp", "scopes", "jti"]
    verifier = TokenVerifier(_hs(issuer="driftgate", audience="driftgate"))
    for _ in range(1500):
        header = {k: rng.choice(odd) for k in rng.sample(header_keys, rng.randint(0, 4))}
        header.setdefault("alg", "HS256")
        claims = {k: rng.choice(odd) for k in rng.sample(claim_keys, rng.randint(0, 8))}
        sign = (
            (lambda d: hmac.new(SECRET.encode(), d, hashlib.sha256).digest())
            if rng.random() < 0.5
            else None
        )
        segments = _forge(header, claims, sign).split(".")
        token = ".".join(segments[: rng.choice([1, 2, 3, 3, 3, 4])] + ["x"] * rng.randint(0, 1))
        with pytest.raises(Unauthenticated):
            verifier.verify(f"Bearer {token}")


def test_token_text_cannot_inject_into_the_challenge_header() -> None:
    token = _forge({"alg": 'HS256"\r\nSet-Cookie: x=1\\', "typ": "JWT"}, _claims())
    challenge = _refused(TokenVerifier(_hs()), f"Bearer {token}").www_authenticate
    assert "\r" not in challenge and "\n" not in challenge
    assert re.fullmatch(
        r'Bearer realm="driftgate", error="invalid_token", error_description="[^"\\]*"', challenge
    )


# --- JWKS: kid selection and rotation -------------------------------------------------------


def test_jwks_picks_the_key_named_by_kid_and_rotates(tmp_path: Path, rsa_key, other_rsa_key):
    jwks = tmp_path / "jwks.json"
    _write(
        jwks,
        json.dumps({"keys": [_jwk(rsa_key, "old"), _jwk(other_rsa_key, "new")]}),
    )
    verifier = TokenVerifier(AuthConfig.from_dict({"algorithm": "RS256", "jwks_file": str(jwks)}))
    old = jwt.encode(_claims(sub="a"), rsa_key, algorithm="RS256", headers={"kid": "old"})
    new = jwt.encode(_claims(sub="b"), other_rsa_key, algorithm="RS256", headers={"kid": "new"})
    assert verifier.verify(f"Bearer {old}").subject == "a"
    assert verifier.verify(f"Bearer {new}").subject == "b"

    # A kid naming the wrong key of the set is just a bad signature.
    swapped = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "new"})
    assert "signature does not verify" in _refused(verifier, f"Bearer {swapped}").message
    unknown = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "nope"})
    assert "unknown key id (kid) 'nope'" in _refused(verifier, f"Bearer {unknown}").message
    no_kid = jwt.encode(_claims(), rsa_key, algorithm="RS256")
    assert "unknown key id (kid) None" in _refused(verifier, f"Bearer {no_kid}").message

    _write(jwks, json.dumps({"keys": [_jwk(other_rsa_key, "new")]}))
    verifier.reload_keys()
    assert "unknown key id (kid) 'old'" in _refused(verifier, f"Bearer {old}").message
    assert verifier.verify(f"Bearer {new}").subject == "b"

    _write(jwks, "{broken")
    with pytest.raises(AuthConfigError, match=r"auth\.jwks_file: .*not valid JSON"):
        verifier.reload_keys()
    assert verifier.verify(f"Bearer {new}").subject == "b"  # the old keys stay


def test_minting_with_jwks_uses_the_kid_of_the_private_key(tmp_path: Path, rsa_key, other_rsa_key):
    jwks = {"keys": [_jwk(rsa_key, "old"), _jwk(other_rsa_key, "new")]}
    _write(tmp_path / "jwks.json", json.dumps(jwks))
    _write(tmp_path / "key.pem", _pem_private(other_rsa_key))
    config = AuthConfig.from_dict(
        {"algorithm": "RS256", "jwks_file": "jwks.json", "private_key_file": "key.pem"},
        base_dir=tmp_path,
    )
    token = mint_token(config, "app1", ["admin"], 60)
    assert jwt.get_unverified_header(token)["kid"] == "new"
    assert TokenVerifier(config).verify(f"Bearer {token}").scopes == {"admin"}


# --- scopes and 403 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "scopes"),
    [
        ({"scope": "predict:titanic  read:logs"}, {"predict:titanic", "read:logs"}),
        ({"scope": None, "scp": ["admin"]}, {"admin"}),
        ({"scopes": ["feedback"], "scope": "predict"}, {"feedback", "predict"}),
        ({"scope": None}, set()),
    ],
)
def test_scopes_come_from_scope_scp_or_scopes(claims: dict[str, Any], scopes: set[str]) -> None:
    token = jwt.encode(_claims(**claims), SECRET, algorithm="HS256")
    assert TokenVerifier(_hs()).verify(f"Bearer {token}").scopes == scopes


def _principal(*scopes: str) -> Principal:
    return Principal("app1", frozenset(scopes), {})


def test_predict_on_one_model_allows_that_model_only() -> None:
    require(_principal("predict:titanic"), "predict", model="titanic")
    with pytest.raises(Forbidden) as caught:
        require(_principal("predict:iris"), "predict", model="titanic")
    error = caught.value
    assert isinstance(error, AuthError) and error.status_code == 403
    assert "lacks scope 'predict:titanic' (or 'predict'); it has: predict:iris" in error.message
    assert error.www_authenticate.startswith(
        'Bearer realm="driftgate", error="insufficient_scope", error_description="token for '
    )
    assert error.www_authenticate.endswith(', scope="predict:titanic"')


def test_scope_rules() -> None:
    assert _principal("predict").allows("predict", "titanic")
    assert _principal("predict").allows("predict")
    assert not _principal("predict:titanic").allows("predict")  # not every model
    assert not _principal("admin").allows("predict", "titanic")  # scopes imply nothing
    assert _principal("read:logs").allows("read:logs")
    assert _principal("feedback:titanic").allows("feedback", "titanic")
    with pytest.raises(Forbidden, match="lacks scope 'admin'; it has: none"):
        require(_principal(), "admin")


def test_a_verified_token_without_the_scope_is_403() -> None:
    config = _hs()
    principal = TokenVerifier(config).verify(
        f"Bearer {mint_token(config, 'app1', ['read:logs'], 60)}"
    )
    with pytest.raises(Forbidden) as caught:
        require(principal, "predict", "titanic")
    assert caught.value.status_code == 403


# --- configuration --------------------------------------------------------------------------


def test_secret_comes_from_the_environment_and_stays_out_of_repr() -> None:
    config = AuthConfig.from_dict(
        {"secret_env": "DRIFTGATE_JWT_SECRET", "issuer": "driftgate", "leeway_s": 5},
        environ={"DRIFTGATE_JWT_SECRET": SECRET},
    )
    assert config.secret == SECRET.encode()
    assert config.algorithm == "HS256" and config.leeway_s == 5.0 and config.enabled
    assert SECRET not in repr(config)


def test_disabled_auth_needs_nothing_else() -> None:
    config = AuthConfig.from_dict({"enabled": False})
    assert config.enabled is False
    with pytest.raises(AuthConfigError, match=r"auth\.enabled is false"):
        TokenVerifier(config)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"algorithm": "none", "secret": SECRET}, "auth.algorithm: must be one of HS256, HS384"),
        ({"algorithm": "HS256"}, "HS256 needs a shared secret"),
        ({"secret": "short"}, "5 bytes is too short; RFC 7518 section 3.2 requires at least 32"),
        ({"algorithm": "HS512", "secret": SECRET}, "requires at least 64 bytes for HS512"),
        ({"secret": "-----BEGIN PUBLIC KEY-----" + "A" * 40}, "looks like a PEM/SSH key"),
        (
            {"algorithm": "RS256", "secret": SECRET, "public_key_file": "p"},
            "HS/RS algorithm confusion",
        ),
        ({"algorithm": "RS256"}, "RS256 needs exactly one of public_key_file, jwks_file"),
        ({"algorithm": "ES256", "public_key_file": "a", "jwks_file": "b"}, "exactly one of"),
        (
            {"secret": SECRET, "public_key_file": "p.pem"},
            "auth.public_key_file: HS256 uses a shared",
        ),
        ({"secret": SECRET, "secret_env": "X"}, "set secret or secret_env, not both"),
        ({"secret_env": "DRIFTGATE_UNSET_VARIABLE"}, "DRIFTGATE_UNSET_VARIABLE is not set"),
        ({"secret": SECRET, "secrte": 1}, "unknown key 'secrte'; did you mean 'secret'?"),
        ({"secret": SECRET, "enabled": "yes"}, "auth.enabled: must be true or false"),
        ({"secret": SECRET, "leeway_s": "30s"}, "auth.leeway_s: must be a number"),
        ({"secret": SECRET, "leeway_s": -1}, "auth.leeway_s: must be 0 to 300"),
        ({"secret": SECRET, "issuer": 7}, "auth.issuer: must be a non-empty string"),
    ],
)
def test_bad_config_is_refused_with_the_key_named(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(AuthConfigError) as caught:
        AuthConfig.from_dict(raw, environ={})
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("alg", "content", "message"),
    [
        ("RS256", None, "auth.public_key_file: "),
        ("RS256", "rsa-private", "this is a private key; give the public half"),
        ("ES256", "rsa-public", "needs an EC P-256 key, got an RSA key"),
        ("RS256", "rsa-1024", "1024 bits; RS256 needs at least 2048"),
        ("RS256", "garbage", "not a PEM public key"),
    ],
)
def test_pem_files_that_do_not_fit_are_refused(tmp_path: Path, rsa_key, alg, content, message):
    pem: dict[str, Callable[[], bytes]] = {
        "rsa-private": lambda: _pem_private(rsa_key),
        "rsa-public": lambda: _pem_public(rsa_key),
        "rsa-1024": lambda: _pem_public(rsa.generate_private_key(65537, key_size=1024)),
        "garbage": lambda: b"garbage",
    }
    if content is not None:
        _write(tmp_path / "pub.pem", pem[content]())
    config = AuthConfig.from_dict(
        {"algorithm": alg, "public_key_file": "pub.pem"}, base_dir=tmp_path
    )
    with pytest.raises(AuthConfigError) as caught:
        TokenVerifier(config)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("alg", "keys", "message"),
    [
        ("ES256", lambda k: [{**k, "alg": "ES384"}], "alg 'ES384' differs from the pinned ES256"),
        ("ES256", lambda k: [k, k], "kid 'k' is used twice"),
        ("ES256", lambda k: [{**k, "kid": None}] * 2, "every key of a set with several keys needs"),
        ("ES256", lambda k: [], "expected a JWK Set"),
        ("RS256", lambda k: [k], "not a usable RS256 key"),
        ("ES256", lambda k: [{**k, "use": "enc"}], "use 'enc'; signature keys have use 'sig'"),
        ("ES256", lambda k: [{**k, "d": "AAAA"}], "holds a private key ('d')"),
    ],
)
def test_jwks_files_that_do_not_fit_are_refused(tmp_path: Path, ec_key, alg, keys, message):
    _write(tmp_path / "jwks.json", json.dumps({"keys": keys(_jwk(ec_key, "k"))}))
    config = AuthConfig.from_dict({"algorithm": alg, "jwks_file": "jwks.json"}, base_dir=tmp_path)
    with pytest.raises(AuthConfigError) as caught:
        TokenVerifier(config)
    assert str(caught.value).startswith("auth.jwks_file: ")
    assert message in str(caught.value)


def test_relative_paths_are_taken_from_base_dir(tmp_path: Path) -> None:
    config = AuthConfig.from_dict(
        {"algorithm": "ES256", "jwks_file": "keys/jwks.json"}, base_dir=tmp_path
    )
    assert config.jwks_file == tmp_path / "keys" / "jwks.json"


# --- minting --------------------------------------------------------------------------------


def test_minting_refuses_what_would_not_verify(tmp_path: Path, rsa_key, other_rsa_key) -> None:
    with pytest.raises(ValueError, match="unknown scope 'predcit'"):
        mint_token(_hs(), "app1", ["predcit"], 60)
    with pytest.raises(ValueError, match="ttl_s must be more than 0"):
        mint_token(_hs(), "app1", ["predict"], 0)
    with pytest.raises(ValueError, match="extra_claims may not set exp, sub"):
        mint_token(_hs(), "app1", ["predict"], 60, extra_claims={"sub": "x", "exp": 1})
    without_private = AuthConfig.from_dict(
        {
            "algorithm": "RS256",
            "public_key_file": str(_write(tmp_path / "pub.pem", _pem_public(rsa_key))),
        }
    )
    with pytest.raises(AuthConfigError, match=r"auth\.private_key_file: needed to mint RS256"):
        mint_token(without_private, "app1", ["predict"], 60)
    config = _rsa_config(tmp_path, rsa_key)
    _write(tmp_path / "key.pem", _pem_private(other_rsa_key))
    with pytest.raises(AuthConfigError, match=r"auth\.private_key_file: .*matches no public key"):
        mint_token(config, "app1", ["predict"], 60)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("3600", 3600),
        ("90s", 90),
        ("30m", 1800),
        ("1h", 3600),
        ("7d", 604800),
        ("1h30m", 5400),
        (" 2H ", 7200),
    ],
)
def test_parse_ttl(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0s", "1x", "h", "-5", "1.5h", "1 h"])
def test_parse_ttl_refuses_nonsense(text: str) -> None:
    with pytest.raises(ValueError, match="TTL"):
        parse_ttl(text)


# --- the docs -------------------------------------------------------------------------------


def test_configuration_examples_in_the_docs_parse(tmp_path: Path, ec_key) -> None:
    blocks = _doc_blocks("yaml")
    assert len(blocks) == 3  # the third, jwks_url: tests/gateway/test_key_refresh.py
    hs = yaml.safe_load(blocks[0])["auth"]
    config = AuthConfig.from_dict(hs, environ={"DRIFTGATE_JWT_SECRET": SECRET})
    assert (config.algorithm, config.issuer, config.audience) == ("HS256", "driftgate", "driftgate")
    (tmp_path / "keys").mkdir()
    _write(tmp_path / "keys" / "jwks.json", json.dumps({"keys": [_jwk(ec_key, "2025-06")]}))
    _write(tmp_path / "keys" / "key.pem", _pem_private(ec_key))
    es = AuthConfig.from_dict(yaml.safe_load(blocks[1])["auth"], base_dir=tmp_path)
    token = mint_token(es, "app1", ["predict:titanic"], parse_ttl("1h"))
    assert TokenVerifier(es).verify(f"Bearer {token}").allows("predict", "titanic")


def _doc_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), flags=re.S)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_commands_in_the_docs_make_keys_that_work(tmp_path: Path) -> None:
    hs_block, *key_blocks = [block for block in _doc_blocks("sh") if "openssl" in block]
    shown = subprocess.run(
        ["bash", "-c", f'{hs_block}\nprintf %s "$DRIFTGATE_JWT_SECRET"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    hs512 = AuthConfig.from_dict(
        {"algorithm": "HS512", "secret_env": "DRIFTGATE_JWT_SECRET"},
        environ={"DRIFTGATE_JWT_SECRET": shown},
    )
    assert len(hs512.secret or b"") == 64
    (tmp_path / "keys").mkdir()
    for block, prefix, alg in zip(key_blocks, ("rsa", "ec"), ("RS256", "ES256"), strict=True):
        subprocess.run(["bash", "-e", "-c", block], cwd=tmp_path, check=True, capture_output=True)
        raw = {
            "algorithm": alg,
            "public_key_file": f"keys/{prefix}-pub.pem",
            "private_key_file": f"keys/{prefix}-key.pem",
        }
        config = AuthConfig.from_dict(raw, base_dir=tmp_path)
        token = mint_token(config, "app1", ["admin"], 60)
        assert TokenVerifier(config).verify(f"Bearer {token}").scopes == {"admin"}


def test_python_examples_in_the_docs_run(tmp_path: Path, monkeypatch) -> None:
    scopes_example, minting_example, _ = _doc_blocks("python")
    config = _hs()
    token = mint_token(config, "app1", ["predict:titanic"], 60)
    request = SimpleNamespace(headers={"authorization": f"Bearer {token}"})
    exec(scopes_example, {"config": config, "request": request})

    gateway_yaml = tmp_path / "gateway.yaml"
    gateway_yaml.write_text(_doc_blocks("yaml")[0].replace("secret_env: ", "secret_env: X_"))
    namespace: dict[str, Any] = {"config_path": gateway_yaml}
    monkeypatch.setenv("X_DRIFTGATE_JWT_SECRET", SECRET)
    exec(minting_example, namespace)
    principal = TokenVerifier(namespace["config"]).verify(f"Bearer {namespace['token']}")
    assert principal.allows("predict", "titanic")


def test_rotation_example_in_the_docs_adds_a_working_key(
    tmp_path: Path, monkeypatch, ec_key
) -> None:
    *_, rotation_example = _doc_blocks("python")
    old_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "keys").mkdir()
    _write(tmp_path / "keys" / "jwks.json", json.dumps({"keys": [_jwk(old_key, "2025-06")]}))
    _write(tmp_path / "keys" / "ec-pub.pem", _pem_public(ec_key))
    _write(tmp_path / "keys" / "ec-key.pem", _pem_private(ec_key))
    monkeypatch.chdir(tmp_path)
    exec(rotation_example, {})
    raw = {
        "algorithm": "ES256",
        "jwks_file": "keys/jwks.json",
        "private_key_file": "keys/ec-key.pem",
    }
    config = AuthConfig.from_dict(raw, base_dir=tmp_path)
    token = mint_token(config, "app1", ["predict"], 60)
    assert jwt.get_unverified_header(token)["kid"] == "2025-12"
    verifier = TokenVerifier(config)
    assert verifier.verify(f"Bearer {token}").subject == "app1"
    old_token = jwt.encode(_claims(), old_key, algorithm="ES256", headers={"kid": "2025-06"})
    assert verifier.verify(f"Bearer {old_token}").subject == "app1"


def test_refusals_shown_in_the_docs_are_what_the_code_says() -> None:
    text = DOCS.read_text()
    expired = mint_token(_hs(), "app1", ["predict"], 60, now=time.time() - 3600)
    for error in (
        _refused(TokenVerifier(_hs()), None),
        _refused(TokenVerifier(_hs()), f"Bearer {expired}"),
    ):
        assert f"WWW-Authenticate: {error.www_authenticate}\n" in text
    with pytest.raises(Forbidden) as caught:
        require(_principal("predict:iris"), "predict", "titanic")
    assert f"WWW-Authenticate: {caught.value.www_authenticate}\n" in text
    with pytest.raises(InvalidRequest) as repeated:
        check_one_authorization([(b"authorization", b"Bearer a"), (b"authorization", b"Bearer b")])
    assert f"WWW-Authenticate: {repeated.value.www_authenticate}\n" in text
    string_exp = jwt.encode(_claims(exp="1796627000"), SECRET, algorithm="HS256")
    assert f"\n{_refused(TokenVerifier(_hs()), f'Bearer {string_exp}').message}\n" in text


# --- verified tokens remembered -------------------------------------------------------------


def _hs256(**claims: Any) -> str:
    return jwt.encode(_claims(**claims), SECRET, algorithm="HS256")


def test_a_token_is_checked_in_full_once_then_remembered(monkeypatch) -> None:
    verifier = TokenVerifier(AuthConfig.from_dict({"algorithm": "HS256", "secret": SECRET}))
    token = _hs256()
    decoded: list[str] = []
    real_decode = jwt.decode

    def counted_decode(encoded: str, *args: Any, **kwargs: Any) -> Any:
        decoded.append(encoded)
        return real_decode(encoded, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counted_decode)

    first = verifier.verify(f"Bearer {token}")
    again = verifier.verify(f"Bearer {token}")

    assert again == first and again.subject == "app1"
    assert decoded == [token]


def test_a_remembered_token_still_expires() -> None:
    config = AuthConfig.from_dict({"algorithm": "HS256", "secret": SECRET, "leeway_s": 0})
    verifier = TokenVerifier(config)
    expires = int(time.time()) + 1
    token = _hs256(iat=expires - 60, exp=expires)
    verifier.verify(f"Bearer {token}")

    time.sleep(max(expires + 1.1 - time.time(), 0))  # real time: PyJWT reads its own clock

    with pytest.raises(Unauthenticated, match="expired"):
        verifier.verify(f"Bearer {token}")


def test_reloading_the_keys_forgets_every_verified_token(tmp_path: Path, rsa_key) -> None:
    public = tmp_path / "public.pem"
    public.write_bytes(_pem_public(rsa_key))
    verifier = TokenVerifier(
        AuthConfig.from_dict({"algorithm": "RS256", "public_key_file": str(public)})
    )
    token = jwt.encode(_claims(), _pem_private(rsa_key), algorithm="RS256")
    verifier.verify(f"Bearer {token}")

    public.write_bytes(_pem_public(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    verifier.reload_keys()  # the key that signed the token is gone

    with pytest.raises(Unauthenticated):
        verifier.verify(f"Bearer {token}")


def test_a_forged_token_is_never_remembered_as_valid() -> None:
    verifier = TokenVerifier(AuthConfig.from_dict({"algorithm": "HS256", "secret": SECRET}))
    forged = jwt.encode(_claims(), "not-the-secret-" + "y" * 40, algorithm="HS256")

    for _ in range(2):
        with pytest.raises(Unauthenticated):
            verifier.verify(f"Bearer {forged}")
