"""Gateway settings: ``gateway.yaml`` parsed into one validated object.

```yaml
listen: {host: 127.0.0.1, port: 8000, client_timeout_s: 60}   # 408 for slower requests
#       shutdown_timeout_s: 20: requests in flight may take this long after SIGTERM
replicas: [http://127.0.0.1:8001, http://127.0.0.1:8002]   # runtime replicas, same repository
# or, discovered: every address of a DNS name (a headless Service), re-resolved on an interval
# replicas: {dns: driftgate-runtime, port: 8001, interval_s: 5}
auth: {...}                  # see docs/auth.md; `enabled: false` must be explicit
routes: {titanic: {...}}     # see docs/routing.md; models without a route get the default one
routes_dir: var/routes       # where admin API changes persist (one YAML file per route)
health_check: {interval_s: 1.0, timeout_s: 1.0}
ejection: {consecutive_failures: 3, base_ejection_s: 5, max_ejection_s: 60}
max_body_bytes: 16777216
log: {...}                   # the prediction log, see gateway/log_settings.py; on by default
drift: {...}                 # read by `driftgate jobs` (drift/settings.py), not the gateway
explain: {...}               # read by `driftgate jobs` (explain/settings.py)
```

Relative paths are resolved against the file's folder. Errors name the key and say what
was expected and what was found: ports are 1-65535, durations positive and finite (no
``.nan`` or ``.inf``), sections mappings, and a key given twice in one mapping is refused
(YAML would silently keep the last one).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
import yaml

from gateway.auth import AuthConfig, AuthConfigError
from gateway.balancer import EjectionSettings
from gateway.log_settings import RecordingSettings, parse_log_section
from gateway.policy import PolicyError, RoutePolicy, parse_routes
from monitoring.slow_clients import DEFAULT_CLIENT_TIMEOUT_S

_KEYS = {
    "listen",
    "replicas",
    "auth",
    "routes",
    "routes_dir",
    "health_check",
    "ejection",
    "max_body_bytes",
    "log",
    "drift",
    "explain",
}


#: ``max_body_bytes``: the largest request body, as sent and (for the prediction log) inflated.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024

#: Eject a replica after 3 consecutive connection failures or timeouts, for 5 s at first.
#: Seconds the requests in flight may take after SIGTERM before they are cut off: longer
#: than a route's default budget (``timeout_s``, 15 s), within Kubernetes' default 30 s.
DEFAULT_SHUTDOWN_TIMEOUT_S = 20

DEFAULT_EJECTION = EjectionSettings(
    consecutive_failures=3, base_ejection_s=5.0, max_ejection_s=60.0
)


class SettingsError(ValueError):
    """gateway.yaml cannot be used; the message names the key."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (not: the last wins)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue  # a merge (<<) may override keys on purpose
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise SettingsError(f"line {line}: key {key!r} is given twice")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """The YAML document ``text``; ``SettingsError`` ("line 3: key 'retries' is given
    twice") when a mapping gives a key twice, ``yaml.YAMLError`` when it is not YAML."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def load_yaml(path: Path) -> Any:
    """The YAML document in ``path``; ``SettingsError`` naming the file when it cannot be
    read, is not UTF-8, is not YAML, or gives a key twice."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise SettingsError(f"{path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise SettingsError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    try:
        return parse_yaml(text)
    except SettingsError as exc:
        raise SettingsError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"{path}: {exc}") from None


@dataclass(frozen=True)
class DnsDiscovery:
    """``replicas: {dns: NAME, port: PORT, interval_s: SECONDS}``: see gateway/discovery.py."""

    name: str
    port: int
    interval_s: float = 5.0

    @property
    def url(self) -> str:
        """The name as one URL, for clients that resolve it themselves (the explain job)."""
        return f"http://{self.name}:{self.port}"


@dataclass(frozen=True)
class HealthCheckSettings:
    interval_s: float = 1.0
    timeout_s: float = 1.0


@dataclass(frozen=True)
class GatewaySettings:
    replicas: tuple[str, ...]  # a fixed list; empty when ``discovery`` finds them
    auth: AuthConfig
    discovery: DnsDiscovery | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    #: A client must send a whole request within this long (``monitoring.slow_clients``).
    client_timeout_s: float = DEFAULT_CLIENT_TIMEOUT_S
    #: After SIGTERM, requests in flight get this long (uvicorn's graceful shutdown).
    shutdown_timeout_s: int = DEFAULT_SHUTDOWN_TIMEOUT_S
    routes: Mapping[str, RoutePolicy] = field(default_factory=dict)
    routes_dir: Path | None = None
    health_check: HealthCheckSettings = HealthCheckSettings()
    ejection: EjectionSettings = DEFAULT_EJECTION
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    log: RecordingSettings | None = None
    service_name: str = "driftgate-gateway"
    #: The jobs' sections, as written (``driftgate jobs`` parses them), and the folder
    #: their relative paths resolve against.
    jobs: Mapping[str, Any] = field(default_factory=dict)
    base_dir: Path = Path(".")

    @classmethod
    def from_file(cls, path: Path, environ: Mapping[str, str] | None = None) -> GatewaySettings:
        raw = load_yaml(path) or {}
        return cls.from_dict(raw, base_dir=path.parent, environ=environ)

    @classmethod
    def from_dict(
        cls, raw: Any, base_dir: Path | None = None, environ: Mapping[str, str] | None = None
    ) -> GatewaySettings:
        if not isinstance(raw, dict):
            raise SettingsError("gateway.yaml: expected a mapping at the top level")
        unknown = set(raw) - _KEYS
        if unknown:
            raise SettingsError(
                f"gateway.yaml: unknown key(s) {sorted(unknown)}; expected some of {sorted(_KEYS)}"
            )
        base = base_dir or Path.cwd()
        replicas, discovery = _replicas(raw.get("replicas"))
        if "auth" not in raw:
            raise SettingsError(
                "auth: missing; configure JWT auth or say `auth: {enabled: false}` explicitly"
            )
        if not isinstance(raw["auth"], dict):
            raise SettingsError(f"auth: expected a mapping, got {_kind(raw['auth'])}")
        ejection_raw = {} if raw.get("ejection") is None else raw["ejection"]
        if not isinstance(ejection_raw, dict):
            fields = list(EjectionSettings.__struct_fields__)
            raise SettingsError(
                f"ejection: expected a mapping with keys {fields}, got {_kind(ejection_raw)}"
            )
        try:
            auth = AuthConfig.from_dict(
                raw["auth"], base_dir=base, environ=environ if environ is not None else os.environ
            )
            routes = parse_routes(raw.get("routes"))
            ejection = msgspec.convert(
                {**msgspec.to_builtins(DEFAULT_EJECTION), **ejection_raw}, EjectionSettings
            )
        except (AuthConfigError, PolicyError) as exc:
            raise SettingsError(str(exc)) from None
        except msgspec.ValidationError as exc:
            raise SettingsError(f"ejection: {exc}") from None
        for name in ("base_ejection_s", "max_ejection_s"):
            _number({name: getattr(ejection, name)}, f"ejection.{name}", 1.0, float)
        try:
            recording = parse_log_section(raw.get("log"), base)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        routes_dir = raw.get("routes_dir")
        if routes_dir is not None and (not isinstance(routes_dir, str) or not routes_dir):
            raise SettingsError(f"routes_dir: expected a folder path, got {routes_dir!r}")
        health = _section(raw, "health_check", {"interval_s", "timeout_s"})
        listen = _section(raw, "listen", {"host", "port", "client_timeout_s", "shutdown_timeout_s"})
        host = listen.get("host", "127.0.0.1")
        if not isinstance(host, str) or not host:
            raise SettingsError(f"listen.host: expected an address or host name, got {host!r}")
        return cls(
            replicas=replicas,
            auth=auth,
            discovery=discovery,
            host=host,
            port=_port(listen, "listen.port", 8000),
            client_timeout_s=_number(
                listen, "listen.client_timeout_s", DEFAULT_CLIENT_TIMEOUT_S, float
            ),
            shutdown_timeout_s=_number(
                listen, "listen.shutdown_timeout_s", DEFAULT_SHUTDOWN_TIMEOUT_S, int
            ),
            routes=routes,
            routes_dir=(base / routes_dir) if routes_dir else None,
            health_check=HealthCheckSettings(
                interval_s=_number(health, "health_check.interval_s", 1.0, float),
                timeout_s=_number(health, "health_check.timeout_s", 1.0, float),
            ),
            ejection=ejection,
            max_body_bytes=_number(raw, "max_body_bytes", DEFAULT_MAX_BODY_BYTES, int),
            log=recording,
            jobs={key: raw[key] for key in ("drift", "explain") if key in raw},
            base_dir=base,
        )


def _replicas(raw: Any) -> tuple[tuple[str, ...], DnsDiscovery | None]:
    """``replicas:`` as a list of URLs, or as a DNS name to discover them by."""
    if isinstance(raw, dict):
        section = _section({"replicas": raw}, "replicas", {"dns", "port", "interval_s"})
        name = section.get("dns")
        if not isinstance(name, str) or not name.strip() or "/" in name or ":" in name:
            raise SettingsError(
                f"replicas.dns: expected a host name (e.g. a headless Service), got {name!r}"
            )
        if "port" not in section:
            raise SettingsError("replicas.port: missing; the port the replicas listen on")
        port = _port(section, "replicas.port", 0)
        interval_s = _number(section, "replicas.interval_s", 5.0, float)
        return (), DnsDiscovery(name.strip(), port, interval_s)
    urls = raw or []
    if not isinstance(urls, list) or not all(
        isinstance(url, str) and url.startswith("http://") for url in urls
    ):
        # gateway/http1.py speaks plain HTTP: replicas sit on a trusted network or mesh.
        raise SettingsError(
            "replicas: expected a list of http:// URLs (TLS to replicas is not supported), "
            "or {dns: NAME, port: PORT} to discover them"
        )
    for url in urls:
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 (raises ValueError when out of range)
        except ValueError:
            raise SettingsError(
                f"replicas: {url}: expected a TCP port 1-65535 after the host"
            ) from None
        if not parts.hostname or parts.port == 0:
            raise SettingsError(f"replicas: {url}: expected http://HOST:PORT")
    return tuple(url.rstrip("/") for url in urls), None


def _kind(value: Any) -> str:
    """What a YAML value is, for messages: ``a list [1, 2]``."""
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    return f"{names.get(type(value), type(value).__name__)} {value!r}"[:200]


def _section(raw: Mapping[str, Any], key: str, allowed: set[str]) -> Mapping[str, Any]:
    section = raw.get(key)
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise SettingsError(
            f"{key}: expected a mapping with keys {sorted(allowed)}, got {_kind(section)}"
        )
    unknown = set(section) - allowed
    if unknown:
        raise SettingsError(f"{key}: unknown key(s) {sorted(unknown)}; expected {sorted(allowed)}")
    return section


def _number(raw: Mapping[str, Any], where: str, default: float, kind: type[Any]) -> Any:
    """A positive, finite number at ``raw[last part of where]``, or the default (a NaN
    interval would stop the loop that waits on it, silently)."""
    value = raw.get(where.rsplit(".", 1)[-1], default)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise SettingsError(f"{where}: expected a positive finite number, got {value!r}")
    if kind is int and not float(value).is_integer():
        raise SettingsError(f"{where}: expected a whole number, got {value!r}")
    return kind(value)


def _port(raw: Mapping[str, Any], where: str, default: int) -> int:
    """A TCP port (1-65535) at ``raw[last part of where]``, or the default."""
    port = raw.get(where.rsplit(".", 1)[-1], default)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise SettingsError(f"{where}: expected a TCP port 1-65535, got {port!r}")
    return port
