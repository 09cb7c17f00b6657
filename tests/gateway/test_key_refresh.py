"""Verification keys from a JWKS URL, and keys that rotate while the gateway runs.

A real HTTP server on loopback plays the identity provider; the tests change what it
publishes and check what the verifier accepts (docs/auth.md, "Keys from a JWKS URL").
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from prometheus_client import CollectorRegistry

from gateway.auth import AuthConfig, AuthConfigError, TokenVerifier, Unauthenticated
from gateway.key_refresh import KeyRefresher
from monitoring.gateway_metrics import GatewayMetrics
from tests.gateway.fakes import FakeRuntime, eventually, gateway_factory
from tests.gateway.test_auth import _claims, _doc_blocks, _jwk, _pem_private


@dataclass
class Provider:
    """What the fake identity provider publishes, and how often it was asked."""

    url: str
    status: int = 200
    document: dict[str, Any] = field(default_factory=dict)
    hits: int = 0

    def publish(self, *entries: dict[str, Any]) -> None:
        self.document = {"keys": list(entries)}


@pytest.fixture
def provider() -> Iterator[Provider]:
    published = Provider(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            published.hits += 1
            body = json.dumps(published.document).encode()
            self.send_response(published.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    published.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield published
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def keys() -> dict[str, rsa.RSAPrivateKey]:
    return {kid: rsa.generate_private_key(public_exponent=65537, key_size=2048) for kid in "ab"}


def token(key: rsa.RSAPrivateKey, kid: str) -> str:
    return "Bearer " + jwt.encode(
        _claims(), _pem_private(key), algorithm="RS256", headers={"kid": kid}
    )


def url_config(url: str, **extra: Any) -> AuthConfig:
    return AuthConfig.from_dict({"algorithm": "RS256", "jwks_url": url, **extra})


def test_keys_come_from_the_jwks_url_and_foreign_keys_are_skipped(provider, keys) -> None:
    es_key = ec.generate_private_key(ec.SECP256R1())
    encryption_key = {**_jwk(keys["b"], "enc-1"), "use": "enc"}
    provider.publish(_jwk(keys["a"], "a"), _jwk(es_key, "es"), encryption_key)

    verifier = TokenVerifier(url_config(provider.url))

    assert verifier.verify(token(keys["a"], "a")).subject == "app1"
    with pytest.raises(Unauthenticated, match="unknown key id"):
        verifier.verify(token(keys["b"], "enc-1"))


def test_a_set_with_no_key_for_the_algorithm_is_refused_with_the_reasons(provider) -> None:
    provider.publish(_jwk(ec.generate_private_key(ec.SECP256R1()), "es"))
    with pytest.raises(AuthConfigError, match=r"auth\.jwks_url: .*no key of the set fits RS256"):
        TokenVerifier(url_config(provider.url))


def test_an_unreachable_or_failing_jwks_url_stops_the_start_naming_it(provider) -> None:
    provider.status = 503
    with pytest.raises(AuthConfigError, match=r"auth\.jwks_url: .*answered HTTP 503"):
        TokenVerifier(url_config(provider.url))
    nowhere = "http://127.0.0.1:9/jwks.json"  # the discard port: nothing listens
    with pytest.raises(AuthConfigError, match=r"auth\.jwks_url: http://127\.0\.0\.1:9/.*fetch"):
        TokenVerifier(url_config(nowhere))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://idp.example.com/jwks.json", "must be fetched over https"),
        ("ftp://idp.example.com/jwks.json", "not an http"),
        ("jwks.json", "not an http"),
    ],
)
def test_a_jwks_url_must_be_https_unless_on_this_machine(url: str, message: str) -> None:
    with pytest.raises(AuthConfigError, match=rf"auth\.jwks_url: .*{message}"):
        url_config(url)


def test_keys_come_from_exactly_one_place_and_refresh_within_bounds(tmp_path) -> None:
    with pytest.raises(AuthConfigError, match="exactly one of public_key_file, jwks_file"):
        AuthConfig.from_dict(
            {"algorithm": "RS256", "jwks_url": "https://idp/jwks", "jwks_file": "j.json"},
            base_dir=tmp_path,
        )
    with pytest.raises(AuthConfigError, match=r"auth\.jwks_refresh_s: must be 10 to 86400"):
        url_config("https://idp.example.com/jwks", jwks_refresh_s=1)


def refresher_for(verifier: TokenVerifier, min_gap_s: float) -> tuple[KeyRefresher, Any]:
    registry = CollectorRegistry()
    return KeyRefresher(verifier, GatewayMetrics(registry), min_gap_s=min_gap_s), registry


def test_a_new_kid_makes_the_gateway_fetch_the_rotated_keys(provider, keys) -> None:
    provider.publish(_jwk(keys["a"], "a"))
    verifier = TokenVerifier(url_config(provider.url))
    refresher, registry = refresher_for(verifier, min_gap_s=0.0)
    provider.publish(_jwk(keys["b"], "b"))  # the provider rotates: "a" is gone

    async def rotate() -> None:
        running = asyncio.create_task(refresher.run())
        try:
            with pytest.raises(Unauthenticated):  # not known yet: asks for a refresh
                verifier.verify(token(keys["b"], "b"))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                await asyncio.sleep(0.05)
                try:
                    verifier.verify(token(keys["b"], "b"))
                    return
                except Unauthenticated:
                    continue
            raise AssertionError("the rotated key was never fetched")
        finally:
            running.cancel()

    asyncio.run(rotate())
    with pytest.raises(Unauthenticated, match="unknown key id"):
        verifier.verify(token(keys["a"], "a"))  # taken out of the set: refused at once
    changed = {"outcome": "changed"}
    assert registry.get_sample_value("driftgate_auth_key_refreshes_total", changed) == 1


def test_a_failed_refresh_keeps_the_keys_in_use(provider, keys) -> None:
    provider.publish(_jwk(keys["a"], "a"))
    verifier = TokenVerifier(url_config(provider.url))
    refresher, registry = refresher_for(verifier, min_gap_s=0.0)
    provider.status = 500

    assert asyncio.run(refresher.refresh()) == "failed"
    assert verifier.verify(token(keys["a"], "a")).subject == "app1"
    failed = {"outcome": "failed"}
    assert registry.get_sample_value("driftgate_auth_key_refreshes_total", failed) == 1

    provider.status = 200
    assert asyncio.run(refresher.refresh()) == "unchanged"


def test_made_up_kids_do_not_make_the_gateway_hammer_the_provider(provider, keys) -> None:
    provider.publish(_jwk(keys["a"], "a"))
    verifier = TokenVerifier(url_config(provider.url))
    refresher, _ = refresher_for(verifier, min_gap_s=60.0)
    fetched_at_start = provider.hits

    async def flood() -> None:
        running = asyncio.create_task(refresher.run())
        try:
            for index in range(20):
                with pytest.raises(Unauthenticated):
                    verifier.verify(token(keys["b"], f"made-up-{index}"))
                await asyncio.sleep(0.01)
        finally:
            running.cancel()

    asyncio.run(flood())
    assert provider.hits == fetched_at_start  # the next read waits for the 60 s gap


def test_the_gateway_refreshes_its_keys_while_it_serves(provider, keys) -> None:
    provider.publish(_jwk(keys["a"], "a"))
    auth = {"algorithm": "RS256", "jwks_url": provider.url, "jwks_refresh_s": 10}
    runtime = FakeRuntime()
    with gateway_factory(runtime) as start:
        gateway = start(auth=auth)
        provider.publish(_jwk(keys["b"], "b"))
        body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1.0]}]}
        infer = "/v2/models/iris/infer"

        refused = gateway.client.post(
            infer, json=body, headers={"authorization": token(keys["b"], "b")}
        )
        assert refused.status_code == 401
        # The unknown kid asked for a read; the gateway's own 30 s gap has not passed since
        # start, so the next read is on the 10 s interval. Either way it comes without a restart.
        eventually(
            lambda: gateway.metric("driftgate_auth_key_refreshes_total", outcome="changed") == 1,
            timeout_s=15,
        )
        answered = gateway.client.post(
            infer, json=body, headers={"authorization": token(keys["b"], "b")}
        )
        assert answered.status_code == 200, answered.text
        assert gateway.metric("driftgate_auth_keys_loaded_timestamp_seconds") > time.time() - 60


def test_the_jwks_url_example_in_the_docs_works(provider, keys) -> None:
    [block] = [b for b in _doc_blocks("yaml") if "jwks_url" in b]
    raw = yaml.safe_load(block)["auth"]
    provider.publish(_jwk(keys["a"], "a"))
    config = AuthConfig.from_dict({**raw, "jwks_url": provider.url})
    claims = _claims(iss=raw["issuer"], aud=raw["audience"])
    signed = jwt.encode(claims, _pem_private(keys["a"]), algorithm="RS256", headers={"kid": "a"})
    assert TokenVerifier(config).verify(f"Bearer {signed}").subject == "app1"
    assert config.jwks_refresh_s == raw["jwks_refresh_s"]


def test_the_times_of_the_last_good_and_failed_reads_are_exported(provider, keys) -> None:
    """DriftgateAuthKeysStale compares the two (docs/runbook.md): a failed read later than
    the last good one, an hour after it, is a gateway stuck with old keys."""
    provider.publish(_jwk(keys["a"], "a"))
    verifier = TokenVerifier(url_config(provider.url))
    refresher, registry = refresher_for(verifier, min_gap_s=0.0)

    def times() -> tuple[float, float]:
        loaded = registry.get_sample_value("driftgate_auth_keys_loaded_timestamp_seconds")
        failed = registry.get_sample_value("driftgate_auth_keys_last_failure_timestamp_seconds")
        assert loaded is not None and failed is not None
        return loaded, failed

    loaded, failed = times()
    assert loaded > 0 and failed == 0  # read at start; 0 until the first failure
    provider.status = 500
    asyncio.run(refresher.refresh())
    assert times()[0] == loaded and times()[1] >= loaded
    provider.status = 200
    asyncio.run(refresher.refresh())
    assert times()[0] > times()[1]
