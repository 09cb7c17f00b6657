"""``driftgate up``: the whole system on one machine with embedded defaults.

Layout under ``--home`` (default ``var/``)::

    var/models/         the demo model repository (built on first start)
    var/gateway.yaml    gateway configuration, written on first start: a fresh HS256
                        secret, demo routes (A/B on titanic with a PMML fallback, a shadow
                        on iris); edit it freely, `driftgate token create` reads it too
    var/routes/         route changes made through the admin API (persisted)
    var/store/          the prediction log: Parquet segments + driftgate.duckdb catalog
    var/logs/           runtime replica and jobs logs

The gateway runs in this process; the runtime replicas and the jobs process
(``driftgate jobs``: drift and explain reports) are supervised subprocesses that are
restarted when they die.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import secrets
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import yaml

log = logging.getLogger("driftgate.up")

#: How long ``up`` waits for its gateway to report ready before it says it is not.
READY_WAIT_S = 600.0

#: A try of a demo route that has no answer after this long goes to another replica (or the
#: fallback): a replica that hangs, rather than dies, would otherwise hold the requests
#: already sent to it for the route's whole budget (15 s), then answer them 504.
DEMO_PER_TRY_TIMEOUT_S = 2.0

DEMO_ROUTES = {
    "titanic": {
        "split": {
            "sticky": {"by": "subject"},
            "arms": [
                {"name": "stable", "target": {"model": "titanic", "version": "1"}, "weight": 90},
                {"name": "canary", "target": {"model": "titanic", "version": "2"}, "weight": 10},
            ],
        },
        "fallback": [{"model": "titanic_pmml"}],
        "per_try_timeout_s": DEMO_PER_TRY_TIMEOUT_S,
    },
    "iris": {
        "primary": {"model": "iris", "version": "2"},
        "per_try_timeout_s": DEMO_PER_TRY_TIMEOUT_S,
        "shadow": [
            {
                "target": {"model": "iris", "version": "1"},
                "percent": 100,
                "compare": {"kind": "numeric", "output": "probabilities", "tolerance": 0.05},
            }
        ],
    },
}


def write_default_config(path: Path, port: int) -> None:
    """A gateway.yaml for local use, with a new random secret (file mode 0600)."""
    document = {
        "listen": {"host": "127.0.0.1", "port": port},
        "auth": {
            "enabled": True,
            "algorithm": "HS256",
            "secret": secrets.token_urlsafe(48),
            "issuer": "driftgate",
            "audience": "driftgate",
        },
        "routes_dir": "routes",
        "log": {"store": "store", "flush_interval_s": 1.0, "sampling": {"default": 1.0}},
        "drift": {
            "models": "models",
            "interval_s": 30,
            "window": {"rows": 1000},
            "min_rows": 100,
            "external_url": f"http://127.0.0.1:{port}",
        },
        "explain": {"models": "models", "interval_s": 60, "min_rows": 50},
        "routes": DEMO_ROUTES,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Written by `driftgate up` on first start; edit freely (docs/gateway.md).\n"
    path.write_text(header + yaml.safe_dump(document, sort_keys=False))
    path.chmod(0o600)


def run_local(
    home: Path,
    replicas: int,
    port: int,
    runtime_port: int,
    *,
    prepare_demo: Callable[[Path], object] | None = None,
    jobs_metrics_port: int | None = None,
) -> int:
    """Run everything until SIGTERM/Ctrl-C; ``prepare_demo`` runs once after the demo
    repository is built (the CLI builds the demo's drift references with it)."""
    import uvicorn
    from prometheus_client import Counter

    from gateway.app import create_app, freeze_heap
    from gateway.settings import GatewaySettings
    from gateway.supervisor import Replica, ReplicaSupervisor

    repository = home / "models"
    if not (repository / "titanic").is_dir():
        from runtime.demo import build_demo_repository

        log.info("building the demo model repository in %s", repository)
        build_demo_repository(repository)
        if prepare_demo is not None:
            prepare_demo(repository)
    config = home / "gateway.yaml"
    if not config.is_file():
        write_default_config(config, port)
        log.info("wrote %s (auth on, with a new secret)", config)
    settings = GatewaySettings.from_file(config)
    ports = [runtime_port + i for i in range(replicas)]
    # gateway.yaml lists no replicas under `up`: the explain job learns the supervised ones.
    replica_args = [arg for port in ports for arg in ("--replica", Replica(port).url)]
    supervisor = ReplicaSupervisor(
        repository=repository.resolve(),
        ports=ports,
        log_dir=home / "logs",
        jobs_args=["--config", str(config.resolve()), *replica_args]
        + ([] if jobs_metrics_port is None else ["--metrics-port", str(jobs_metrics_port)]),
        jobs_liveness_url=""
        if jobs_metrics_port is None
        else f"http://127.0.0.1:{jobs_metrics_port}/metrics",
    )
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    supervisor.start()
    try:
        settings = dataclasses.replace(
            settings, replicas=tuple(supervisor.urls), discovery=None, port=port
        )
        log.info(
            "gateway on http://%s:%d, runtime replicas %s",
            settings.host,
            port,
            ", ".join(supervisor.urls),
        )
        app = create_app(settings)
        restarts = Counter(
            "driftgate_supervised_restarts_total",
            "Restarts of the processes `driftgate up` supervises, by child and reason.",
            ["child", "reason"],
            registry=app.state.metrics.registry,
        )
        supervisor.on_restart = lambda child, reason: restarts.labels(child, reason).inc()
        freeze_heap()
        _announce_when_ready(_local_url(settings.host, port), len(ports))
        uvicorn.run(
            app,
            host=settings.host,
            port=port,
            access_log=False,
            loop="uvloop",  # as `driftgate gateway` (driftgate.cli.GATEWAY_LOOP)
            http=app.http_protocol(),
            log_level="info",
            timeout_graceful_shutdown=settings.shutdown_timeout_s,
        )
    finally:
        supervisor.stop()
    return 0


def ports_in_use(ports: list[int]) -> list[int]:
    """The ``ports`` something already listens on (on any address): ``up`` checks them before
    it starts anything, so that a second ``up`` fails at once naming the port, not after
    starting replicas that cannot listen."""
    busy = []
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                sock.bind(("0.0.0.0", port))
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                busy.append(port)
    return busy


def _local_url(host: str, port: int) -> str:
    return f"http://{'127.0.0.1' if host in ('', '0.0.0.0', '::') else host}:{port}"


def _announce_when_ready(url: str, replicas: int) -> None:
    """Log one line once the gateway at ``url`` answers ``/v2/health/ready`` with 200 (a
    replica has loaded its models): the first start builds and loads the demo models for
    a minute or two, and uvicorn's "running on" line comes well before that."""

    def wait() -> None:
        started = time.monotonic()
        while time.monotonic() - started < READY_WAIT_S:
            try:
                with urllib.request.urlopen(url + "/v2/health/ready", timeout=2):
                    log.info(
                        "ready after %.0f s: the gateway on %s answers (%d runtime "
                        "replica%s supervised); Ctrl-C stops everything",
                        time.monotonic() - started,
                        url,
                        replicas,
                        "" if replicas == 1 else "s",
                    )
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        log.warning(
            "the gateway on %s is not ready after %.0f s: see the replicas' logs", url, READY_WAIT_S
        )

    threading.Thread(target=wait, name="ready-announcer", daemon=True).start()


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # uvicorn re-raises the SIGTERM it handled once the gateway has shut down; with the
    # default action the process would die before `finally` stops the replicas, which run
    # in their own sessions and would be left behind.
    raise SystemExit(128 + signum)
