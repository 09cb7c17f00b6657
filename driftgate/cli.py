"""``driftgate`` command line: one sub-command per role.

    driftgate up                                         gateway + runtime replicas on the demo
    driftgate gateway --config gateway.yaml              front runtime replicas
    driftgate runtime --repository models/ --port 8001   serve a model repository
    driftgate token create --sub app1 --scope predict    mint a JWT for the configured key
    driftgate demo build DIR                             build the demo model repository
    driftgate demo digit N FILE.png                      write a sample digit image
    driftgate demo traffic [--scale fare=4]              titanic passengers through the gateway
    driftgate sql "select ..." [--store var/store]       read-only SQL over the prediction log
    driftgate jobs --config gateway.yaml [--once]        drift (and explain) jobs on the log
    driftgate reference build --model M --version V FILE a version's reference profile
    driftgate routes list|get|set|weights|delete         a running gateway's route policies

Each sub-command imports only what it needs, so ``driftgate --help`` stays fast.

A user's mistake (a flag out of range, a configuration that cannot be used, a path that is
not what it should be) gets one line naming it and exit status 2, never a traceback: flags
are checked as they are parsed (the types of ``driftgate.cli_arguments``), files and
settings by the sub-command before it starts anything. ``demo`` is built by
``driftgate.demo_cli``, ``routes`` by ``driftgate.routes_cli``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from driftgate.cli_arguments import (
    count,
    fail,
    http_url,
    log_level,
    missing_config,
    port,
    seconds,
)
from driftgate.demo_cli import add_demo_commands
from driftgate.routes_cli import add_routes_commands

#: Seconds the runtime keeps an idle keep-alive connection open (see ``_run_runtime``).
RUNTIME_KEEP_ALIVE_S = 75
#: Event loops a server can run on. The runtime defaults to asyncio's own: saturated at 64
#: connections, uvloop left some connections unserved for 1-3 s (p99 0.6-1.5 s) where
#: asyncio's loop kept every answer under 0.17 s, for 3-7% less throughput (BENCHMARKS.md,
#: "Runtime: event loop"). The gateway, which is not the saturated side and whose CPU per
#: request is its overhead, stays on uvloop.
EVENT_LOOPS = ("asyncio", "uvloop")
RUNTIME_LOOP = "asyncio"
GATEWAY_LOOP = "uvloop"


def _quiet_frameworks() -> None:
    # TensorFlow logs CUDA probing and oneDNN notices at import; neither helps an operator.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="driftgate", description=__doc__.splitlines()[0].replace("``", "")
    )
    parser.add_argument(
        "--log-level", type=log_level, default=os.environ.get("DRIFTGATE_LOG_LEVEL", "INFO")
    )
    commands = parser.add_subparsers(dest="command", required=True)

    runtime = commands.add_parser("runtime", help="serve a model repository over HTTP")
    runtime.add_argument("--repository", type=Path, required=True, help="model repository root")
    runtime.add_argument("--host", default="127.0.0.1")
    runtime.add_argument("--port", type=port, default=8001)
    runtime.add_argument(
        "--poll-interval",
        type=seconds(zero=True),
        default=None,
        help="seconds between repository scans (default 2; 0 disables)",
    )
    runtime.add_argument(
        "--shutdown-timeout",
        type=count(0),
        default=None,
        help="on SIGTERM, whole seconds requests in flight may take before they are cut off "
        "(default 20)",
    )
    runtime.add_argument(
        "--loop",
        choices=EVENT_LOOPS,
        default=RUNTIME_LOOP,
        help=f"event loop (default {RUNTIME_LOOP}: fair to every connection when saturated)",
    )
    runtime.set_defaults(handler=_run_runtime)

    up = commands.add_parser("up", help="gateway + supervised runtime replicas on the demo")
    up.add_argument("--home", type=Path, default=Path("var"), help="state folder (default var/)")
    up.add_argument(
        "--replicas",
        type=count(1),
        default=2,
        help="runtime replicas to start and supervise, on consecutive ports from "
        "--runtime-port (default 2)",
    )
    up.add_argument("--port", type=port, default=8000, help="gateway port")
    up.add_argument("--runtime-port", type=port, default=8001, help="first replica's port")
    up.add_argument(
        "--jobs-metrics-port", type=port, default=9464, help="the jobs process's /metrics"
    )
    up.set_defaults(handler=_run_up)

    gateway = commands.add_parser("gateway", help="front runtime replicas (gateway.yaml)")
    gateway.add_argument("--config", type=Path, required=True)
    gateway.add_argument("--port", type=port, default=None, help="override listen.port")
    gateway.add_argument(
        "--loop",
        choices=EVENT_LOOPS,
        default=GATEWAY_LOOP,
        help=f"event loop (default {GATEWAY_LOOP}: the least CPU per proxied request)",
    )
    gateway.set_defaults(handler=_run_gateway)

    token = commands.add_parser("token", help="JSON Web Tokens for the gateway")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="mint a token; prints only the token")
    create.add_argument(
        "--config",
        type=Path,
        default=Path("var/gateway.yaml"),
        help="the gateway's configuration, whose auth key signs the token (default: %(default)s)",
    )
    create.add_argument("--sub", required=True, help="subject (the caller's name)")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        help="predict, predict:<model>, admin, read:logs, feedback (repeatable)",
    )
    create.add_argument("--ttl", default="1h", help="lifetime: 3600, 90s, 30m, 1h, 7d")
    create.set_defaults(handler=_create_token)

    add_demo_commands(commands)

    sql = commands.add_parser("sql", help="read-only SQL over the prediction log store")
    sql.add_argument("query", help='one statement, e.g. "select count(*) from predictions"')
    sql.add_argument("--store", type=Path, default=Path("var/store"), help="default var/store")
    sql.add_argument("--format", choices=("table", "csv", "json"), default="table")
    sql.add_argument("--max-rows", type=count(1), default=10_000)
    sql.add_argument(
        "--timeout", type=seconds(zero=False), default=30.0, help="seconds (default 30)"
    )
    sql.set_defaults(handler=_run_sql)
    _add_job_commands(commands)
    add_routes_commands(commands)
    return parser


def _add_job_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    jobs = commands.add_parser("jobs", help="background drift/explain jobs on the log")
    jobs.add_argument("--config", type=Path, default=Path("var/gateway.yaml"))
    jobs.add_argument("--once", action="store_true", help="run every job once and exit")
    jobs.add_argument(
        "--job",
        action="append",
        default=[],
        choices=("drift", "explain", "log_upkeep"),
        help="run only this job (repeatable; default: all configured)",
    )
    jobs.add_argument("--metrics-port", type=port, default=None, help="serve /metrics here")
    jobs.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        help="the address /metrics listens on (0.0.0.0 in a container that is scraped)",
    )
    jobs.add_argument(
        "--log-upkeep",
        action="store_true",
        help="also compact and expire the log (when no gateway does it)",
    )
    jobs.add_argument(
        "--replica",
        action="append",
        type=http_url,
        default=None,
        metavar="URL",
        help="a runtime replica the explain job calls (repeatable; overrides `replicas:`)",
    )
    jobs.set_defaults(handler=_run_jobs)

    reference = commands.add_parser("reference", help="reference profiles for drift")
    reference_commands = reference.add_subparsers(dest="reference_command", required=True)
    ref_build = reference_commands.add_parser(
        "build", help="profile a training set (CSV or Parquet) for a model version"
    )
    ref_build.add_argument("file", type=Path, help="the training set: .csv or .parquet")
    ref_build.add_argument("--model", required=True)
    ref_build.add_argument("--version", required=True)
    ref_build.add_argument("--repository", type=Path, default=Path("var/models"))
    ref_build.add_argument("--label", default=None, help="the label column, if the file has one")
    ref_build.add_argument(
        "--feature",
        action="append",
        default=None,
        help="an input column (repeatable; default: the model's inputs)",
    )
    ref_build.add_argument(
        "--no-predictions",
        action="store_true",
        help="do not run the model over the file (outputs are then profiled from the log)",
    )
    ref_build.set_defaults(handler=_build_reference)


def _run_runtime(args: argparse.Namespace) -> int:
    import uvicorn

    from runtime.app import create_app, http_protocol
    from runtime.settings import RuntimeSettings, RuntimeSettingsError

    overrides = {
        setting: value
        for setting, value in (
            ("poll_interval_s", args.poll_interval),
            ("shutdown_timeout_s", args.shutdown_timeout),
        )
        if value is not None
    }
    try:
        settings = RuntimeSettings(
            repository=args.repository.resolve(), host=args.host, port=args.port, **overrides
        )
    except RuntimeSettingsError as exc:
        return fail(str(exc))
    if not settings.repository.is_dir():
        return fail(f"model repository {settings.repository} is not a folder")
    from runtime import heap

    heap.enable()
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level.lower(),
        access_log=False,
        loop=args.loop,
        http=http_protocol(app),
        # Longer than the gateway keeps an idle upstream connection (gateway.upstream): the
        # side that reuses a connection must give it up first, or it writes into one the
        # runtime is closing and gets a reset (uvicorn's default is 5 s).
        timeout_keep_alive=RUNTIME_KEEP_ALIVE_S,
        # Requests in flight at SIGTERM get this long, then are cut off (runtime.draining).
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )
    return 0


def _run_up(args: argparse.Namespace) -> int:
    from driftgate.reference import build_demo_references
    from gateway.local import ports_in_use, run_local

    runtime_ports = range(args.runtime_port, args.runtime_port + args.replicas)
    busy = ports_in_use([args.port, *runtime_ports, args.jobs_metrics_port])
    if busy:
        return fail(
            f"port{'s' if len(busy) > 1 else ''} {', '.join(map(str, busy))} already in use "
            "(another `driftgate up`?): stop it, or pick free ports with --port, "
            "--runtime-port and --jobs-metrics-port"
        )

    return run_local(
        args.home,
        args.replicas,
        args.port,
        args.runtime_port,
        prepare_demo=build_demo_references,
        jobs_metrics_port=args.jobs_metrics_port,
    )


def _run_gateway(args: argparse.Namespace) -> int:
    import dataclasses

    import uvicorn

    from gateway.app import create_app, freeze_heap
    from gateway.log_settings import store_problem
    from gateway.settings import GatewaySettings, SettingsError

    try:
        settings = GatewaySettings.from_file(args.config)
    except SettingsError as exc:
        return fail(str(exc))
    # The gateway creates its store: a path it cannot create fails here, in one line, not
    # as an exception group from the application's start-up.
    problem = None if settings.log is None else store_problem(settings.log.store, create=True)
    if problem is not None:
        return fail(f"{args.config}: log.store: {problem}")
    if args.port is not None:
        settings = dataclasses.replace(settings, port=args.port)
    app = create_app(settings)
    freeze_heap()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        access_log=False,
        loop=args.loop,
        http=app.http_protocol(),
        log_level=args.log_level.lower(),
        timeout_graceful_shutdown=settings.shutdown_timeout_s,
    )
    return 0


def _create_token(args: argparse.Namespace) -> int:
    from gateway.auth import AuthConfigError, mint_token, parse_ttl
    from gateway.settings import GatewaySettings, SettingsError

    missing = missing_config(args.config)
    if missing is not None:
        return fail(missing)
    try:
        settings = GatewaySettings.from_file(args.config)
        token = mint_token(settings.auth, args.sub, args.scope, parse_ttl(args.ttl))
    except (SettingsError, AuthConfigError, ValueError) as exc:
        print(f"driftgate: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _run_sql(args: argparse.Namespace) -> int:
    from gateway.log_settings import store_problem
    from monitoring.prediction_log import SqlError, SqlRefused, run_sql
    from monitoring.prediction_log.output import render

    # Read-only: a folder that is not a store is refused, not made into an empty one.
    problem = store_problem(args.store, create=False)
    if problem is not None:
        return fail(f"--store: {problem}")
    try:
        result = run_sql(args.store, args.query, max_rows=args.max_rows, timeout_s=args.timeout)
    except (SqlRefused, SqlError) as exc:
        print(f"driftgate: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render(result, args.format))
    if result.truncated:
        print(f"driftgate: output truncated to {args.max_rows} rows (--max-rows)", file=sys.stderr)
    return 0


def _run_jobs(args: argparse.Namespace) -> int:
    missing = missing_config(args.config)
    if missing is not None:
        return fail(missing)
    from driftgate.jobs import run_jobs

    return run_jobs(
        args.config,
        once=args.once,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        log_upkeep=args.log_upkeep,
        replicas=args.replica,
        only=args.job,
    )


def _build_reference(args: argparse.Namespace) -> int:
    from driftgate.reference import ReferenceBuildError, build_reference

    try:
        path, profile = build_reference(
            args.repository,
            args.model,
            args.version,
            args.file,
            label=args.label,
            features=args.feature,
            with_predictions=not args.no_predictions,
        )
    except ReferenceBuildError as exc:
        print(f"driftgate: {exc}", file=sys.stderr)
        return 2
    columns = ", ".join(feature.column for feature in profile.features)
    print(f"wrote {path}: {profile.rows} rows, {columns}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    _quiet_frameworks()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    result: int = args.handler(args)
    return result
