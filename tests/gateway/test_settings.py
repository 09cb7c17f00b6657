"""gateway.yaml: what a valid file gives, and the message each mistake gets before start-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.balancer import EjectionSettings
from gateway.settings import DnsDiscovery, GatewaySettings, HealthCheckSettings, SettingsError
from tests.gateway.fakes import SECRET

MINIMAL: dict[str, Any] = {"replicas": ["http://127.0.0.1:8001"], "auth": {"secret": SECRET}}


def settings(**overrides: Any) -> GatewaySettings:
    return GatewaySettings.from_dict({**MINIMAL, **overrides}, base_dir=Path("/etc/driftgate"))


def test_a_minimal_file_gets_the_documented_defaults() -> None:
    parsed = settings()

    assert parsed.replicas == ("http://127.0.0.1:8001",)
    assert parsed.auth.enabled is True
    assert parsed.auth.secret == SECRET.encode()
    assert (parsed.host, parsed.port) == ("127.0.0.1", 8000)
    assert parsed.routes == {}
    assert parsed.routes_dir is None
    assert parsed.health_check == HealthCheckSettings(interval_s=1.0, timeout_s=1.0)
    assert parsed.max_body_bytes == 16 * 1024 * 1024


def test_every_section_is_read() -> None:
    parsed = settings(
        listen={"host": "0.0.0.0", "port": 9000},
        replicas=["http://a:8001/", "http://b:8443"],
        routes={"iris": {"retries": 2}},
        routes_dir="var/routes",
        health_check={"interval_s": 0.5, "timeout_s": 0.25},
        ejection={"consecutive_failures": 4, "base_ejection_s": 10, "max_ejection_s": 80},
        max_body_bytes=1024,
    )

    assert (parsed.host, parsed.port) == ("0.0.0.0", 9000)
    assert parsed.replicas == ("http://a:8001", "http://b:8443")  # trailing slash dropped
    assert parsed.routes["iris"].retries == 2
    assert parsed.routes_dir == Path("/etc/driftgate/var/routes")  # from the file's folder
    assert parsed.health_check == HealthCheckSettings(interval_s=0.5, timeout_s=0.25)
    assert parsed.ejection == EjectionSettings(4, 10.0, 80.0)
    assert parsed.max_body_bytes == 1024


def test_from_file_reads_yaml_relative_to_its_folder(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "replicas: [http://127.0.0.1:8001]\n"
        "auth: {secret_env: TEST_JWT_SECRET}\n"
        "routes_dir: routes\n"
        "routes:\n"
        "  iris: {primary: {model: iris, version: 2}}\n"
    )

    parsed = GatewaySettings.from_file(config, environ={"TEST_JWT_SECRET": SECRET})

    assert parsed.routes_dir == tmp_path / "routes"
    assert parsed.routes["iris"].primary.version == "2"  # YAML's 2 read as the string "2"
    assert parsed.auth.secret == SECRET.encode()


def test_auth_may_be_switched_off_only_explicitly() -> None:
    assert settings(auth={"enabled": False}).auth.enabled is False


# --- mistakes -------------------------------------------------------------------------------


def refusal(raw: Any) -> str:
    with pytest.raises(SettingsError) as refused:
        GatewaySettings.from_dict(raw, environ={})
    return str(refused.value)


def test_a_missing_auth_section_is_refused_saying_how_to_turn_it_off() -> None:
    message = refusal({"replicas": ["http://127.0.0.1:8001"]})

    assert message == (
        "auth: missing; configure JWT auth or say `auth: {enabled: false}` explicitly"
    )


@pytest.mark.parametrize(
    "replicas",
    [
        ["127.0.0.1:8001"],
        ["ftp://127.0.0.1:8001"],
        ["https://b:8443"],
        "http://127.0.0.1:8001",
        [8001],
    ],
    ids=["no-scheme", "other-scheme", "tls", "not-a-list", "not-a-string"],
)
def test_a_bad_replica_url_is_refused(replicas: Any) -> None:
    message = refusal({**MINIMAL, "replicas": replicas})

    assert message == (
        "replicas: expected a list of http:// URLs (TLS to replicas is not supported), "
        "or {dns: NAME, port: PORT} to discover them"
    )


def test_replicas_may_be_a_dns_name_to_discover_them_by() -> None:
    parsed = settings(replicas={"dns": "driftgate-runtime", "port": 8001})

    assert parsed.replicas == ()
    assert parsed.discovery == DnsDiscovery("driftgate-runtime", 8001, interval_s=5.0)
    assert parsed.discovery.url == "http://driftgate-runtime:8001"
    assert settings().discovery is None
    every_2s = settings(replicas={"dns": "rt.models.svc", "port": 9000, "interval_s": 2})
    assert every_2s.discovery == DnsDiscovery("rt.models.svc", 9000, interval_s=2.0)


@pytest.mark.parametrize(
    ("replicas", "message"),
    [
        ({"port": 8001}, "replicas.dns: expected a host name (e.g. a headless Service), got None"),
        ({"dns": "", "port": 8001}, "replicas.dns: expected a host name"),
        ({"dns": "http://rt:8001", "port": 8001}, "replicas.dns: expected a host name"),
        ({"dns": "rt"}, "replicas.port: missing; the port the replicas listen on"),
        ({"dns": "rt", "port": 0}, "replicas.port: expected a TCP port 1-65535, got 0"),
        ({"dns": "rt", "port": 70000}, "replicas.port: expected a TCP port 1-65535, got 70000"),
        ({"dns": "rt", "port": 8001, "interval_s": 0}, "replicas.interval_s: expected a positive"),
        ({"dns": "rt", "port": 8001, "every": 1}, "replicas: unknown key(s) ['every']"),
    ],
    ids=[
        "no-name",
        "empty-name",
        "url-not-name",
        "no-port",
        "port-0",
        "port-big",
        "interval-0",
        "unknown-key",
    ],
)
def test_a_bad_dns_discovery_names_the_key(replicas: dict[str, Any], message: str) -> None:
    assert refusal({**MINIMAL, "replicas": replicas}).startswith(message)


def test_an_unknown_key_is_refused_listing_the_known_ones() -> None:
    message = refusal({**MINIMAL, "replica": ["http://127.0.0.1:8002"]})

    assert message.startswith("gateway.yaml: unknown key(s) ['replica']; expected some of [")
    assert "'replicas'" in message


def test_a_file_that_is_not_a_mapping_is_refused() -> None:
    assert refusal(["replicas"]) == "gateway.yaml: expected a mapping at the top level"


@pytest.mark.parametrize(
    ("auth", "error"),
    [
        ({"secret": "short"}, "auth.secret"),
        ({"secret_env": "NOT_SET_ANYWHERE"}, "auth.secret_env: environment variable"),
        ({"secret": SECRET, "algorithms": "HS256"}, "auth: unknown key 'algorithms'"),
        ({"algorithm": "none", "secret": SECRET}, "auth.algorithm: must be one of"),
    ],
    ids=["short-secret", "unset-env", "unknown-key", "bad-algorithm"],
)
def test_auth_mistakes_name_the_key(auth: dict[str, Any], error: str) -> None:
    assert refusal({**MINIMAL, "auth": auth}).startswith(error)


def test_a_bad_route_names_its_field_path() -> None:
    message = refusal({**MINIMAL, "routes": {"iris": {"retries": 9}}})

    assert message == "routes.iris.retries: must be between 0 and 5, got 9"


@pytest.mark.parametrize(
    ("ejection", "error"),
    [
        ({"consecutive_failures": 0}, "ejection: consecutive_failures: must be >= 1, got 0"),
        (
            {"consecutive_failure": 3},
            "ejection: Object contains unknown field `consecutive_failure`",
        ),
    ],
    ids=["out-of-range", "unknown-key"],
)
def test_bad_ejection_settings_name_the_field(ejection: dict[str, Any], error: str) -> None:
    assert refusal({**MINIMAL, "ejection": ejection}) == error


def test_an_unreadable_file_is_refused_with_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "gateway.yaml"

    with pytest.raises(SettingsError, match=str(missing)):
        GatewaySettings.from_file(missing)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"health_check": {"interval_s": "fast"}}, "health_check.interval_s: expected a positive"),
        ({"health_check": {"interval_s": 0}}, "health_check.interval_s: expected a positive"),
        ({"health_check": {"every": 1}}, "health_check: unknown key(s) ['every']"),
        ({"listen": {"port": 80.5}}, "listen.port: expected a TCP port 1-65535, got 80.5"),
        ({"listen": {"hots": "x"}}, "listen: unknown key(s) ['hots']"),
        ({"max_body_bytes": -1}, "max_body_bytes: expected a positive finite number"),
    ],
)
def test_listen_health_and_limits_are_validated(section: dict, message: str) -> None:
    from gateway.settings import GatewaySettings, SettingsError

    raw = {"auth": {"enabled": False}, **section}
    with pytest.raises(SettingsError) as info:
        GatewaySettings.from_dict(raw)
    assert message in str(info.value)


def test_the_dns_example_of_docs_gateway_md_parses() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "gateway.md").read_text()
    section = doc.split("### Replicas found by DNS", 1)[1]
    example = yaml.safe_load(section.split("```yaml\n", 1)[1].split("```", 1)[0])

    assert settings(**example).discovery == DnsDiscovery("driftgate-runtime", 8001, 5.0)


# --- values that used to be read another way, or crash later ---------------------------------


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"listen": {"port": 70000}}, "listen.port: expected a TCP port 1-65535, got 70000"),
        ({"listen": {"port": 0}}, "listen.port: expected a TCP port 1-65535, got 0"),
        ({"listen": {"port": "8000"}}, "listen.port: expected a TCP port 1-65535, got '8000'"),
        ({"listen": {"host": 5}}, "listen.host: expected an address or host name, got 5"),
        (
            {"listen": {"client_timeout_s": 0}},
            "listen.client_timeout_s: expected a positive finite number, got 0",
        ),
        (
            {"listen": {"shutdown_timeout_s": 0}},
            "listen.shutdown_timeout_s: expected a positive finite number, got 0",
        ),
        (
            {"listen": {"shutdown_timeout_s": 2.5}},
            "listen.shutdown_timeout_s: expected a whole number, got 2.5",
        ),
        (
            {"health_check": {"interval_s": float("nan")}},
            "health_check.interval_s: expected a positive finite number, got nan",
        ),
        (
            {"health_check": {"timeout_s": float("inf")}},
            "health_check.timeout_s: expected a positive finite number, got inf",
        ),
        (
            {"replicas": {"dns": "rt", "port": 8001, "interval_s": float("nan")}},
            "replicas.interval_s: expected a positive finite number, got nan",
        ),
        (
            {"replicas": ["http://127.0.0.1:99999"]},
            "replicas: http://127.0.0.1:99999: expected a TCP port 1-65535 after the host",
        ),
        ({"replicas": ["http://:8001"]}, "replicas: http://:8001: expected http://HOST:PORT"),
        (
            {"ejection": [1, 2]},
            "ejection: expected a mapping with keys ['consecutive_failures', "
            "'base_ejection_s', 'max_ejection_s'], got a list [1, 2]",
        ),
        ({"ejection": "x"}, "ejection: expected a mapping with keys"),
        (
            {"ejection": {"base_ejection_s": float("inf"), "max_ejection_s": float("inf")}},
            "ejection.base_ejection_s: expected a positive finite number, got inf",
        ),
        ({"routes_dir": 123}, "routes_dir: expected a folder path, got 123"),
        ({"auth": ["x"]}, "auth: expected a mapping, got a list ['x']"),
    ],
)
def test_wrong_types_and_values_name_the_key(section: dict[str, Any], message: str) -> None:
    assert refusal({**MINIMAL, **section}).startswith(message)


@pytest.mark.parametrize(
    ("log", "message"),
    [
        ({"keep_image_bytes": "no"}, "log.keep_image_bytes: expected true or false, got 'no'"),
        ({"enabled": "false"}, "log.enabled: expected true or false, got 'false'"),
        ({"max_queue": True}, "log.max_queue: expected a positive whole number, got True"),
        ({"sampling": {"routes": ["a"]}}, "log.sampling.routes: expected {ROUTE: RATE}"),
        (
            {"sampling": {"default": "abc"}},
            "log.sampling.default: expected a rate between 0 and 1, got 'abc'",
        ),
        (
            {"sampling": {"routes": {"titanic": "half"}}},
            "log.sampling.routes.titanic: expected a rate between 0 and 1, got 'half'",
        ),
        ({"flush_interval_s": float("nan")}, "log: prediction log setting flush_interval_s"),
        ({"max_age_days": float("inf")}, "log: prediction log setting max_age_days"),
    ],
)
def test_log_values_are_not_read_another_way(log: dict[str, Any], message: str) -> None:
    assert refusal({**MINIMAL, "log": {"store": "store", **log}}).startswith(message)


def test_log_switches_take_booleans() -> None:
    assert settings(log={"enabled": False}).log is None
    recording = settings(log={"store": "s", "keep_image_bytes": True, "max_queue": 5}).log
    assert recording is not None
    assert (recording.keep_image_bytes, recording.max_queue) == (True, 5)


def test_a_key_given_twice_is_refused_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("auth: {enabled: false}\nlisten: {port: 8000}\nlisten: {port: 9000}\n")

    with pytest.raises(SettingsError) as refused:
        GatewaySettings.from_file(config)

    assert str(refused.value) == f"{config}: line 3: key 'listen' is given twice"


def test_yaml_merge_keys_may_still_override(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("auth: {enabled: false}\nlisten: {<<: {port: 8000}, port: 9000}\n")
    assert GatewaySettings.from_file(config).port == 9000


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_bytes(b"auth: {secret: \xff\xfe}\n")

    with pytest.raises(SettingsError) as refused:
        GatewaySettings.from_file(config)

    assert str(refused.value) == f"{config}: not valid UTF-8 (byte 15)"
