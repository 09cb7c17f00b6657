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
import logging
import secrets
import signal
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import yaml

log = logging.getLogger("driftgate.up")

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
    },
    "iris": {
        "primary": {"model": "iris", "version": "2"},
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
        freeze_heap()
        uvicorn.run(
            app,
            host=settings.host,
            port=port,
            access_log=False,
            loop="uvloop",  # as `driftgate gateway` (driftgate.cli.GATEWAY_LOOP)
            http=app.http_protocol(),
            log_level="info",
        )
    finally:
        supervisor.stop()
    return 0


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # uvicorn re-raises the SIGTERM it handled once the gateway has shut down; with the
    # default action the process would die before `finally` stops the replicas, which run
    # in their own sessions and would be left behind.
    raise SystemExit(128 + signum)
