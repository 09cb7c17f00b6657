"""gateway_overhead.py's plan: which processes it starts (``start_services``), and which
targets it loads at which connection count (``plan_cases``): saturating ``eval`` cases, the
``metadata`` case and the ``paced`` cases, whose offered rate ``pace`` sets once the
saturated rate is known."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from local_processes import Process, driftgate, free_port, gateway_yaml, started, wait_ready
from overhead_targets import (
    EVAL_BODY,
    EVAL_PATH,
    METADATA_PATH,
    MODEL,
    RUNTIME_VARIANTS,
    SAMPLED_ENV,
)
from variant_servers import SWAP_MARKER
from wrk_load import Case, Target, lua_script, run_wrk

BENCH_SECRET_ENV = "DRIFTGATE_BENCH_SECRET"
#: The script that serves the variants (its hidden ``--serve-*`` flags).
SCRIPT = Path(__file__).with_name("gateway_overhead.py")


def check_target(url: str, headers: Mapping[str, str], method: str = "POST") -> None:
    """One request before any load: the target must answer 200 with the model's output."""
    body = EVAL_BODY.encode() if method == "POST" else None
    response = httpx.request(method, url, headers=headers, content=body, timeout=30)
    if response.status_code != 200 or MODEL not in response.text:
        raise RuntimeError(f"{method} {url}: {response.status_code} {response.text[:300]}")


@dataclass
class Services:
    runtime: Process
    gateways: dict[str, Process]
    token: str
    runtime_variants: dict[str, Process] = field(default_factory=dict)
    collector: Process | None = None  # the stand-in OTLP collector of ``gateway-exported``


def start_services(
    args: argparse.Namespace, repository: Path, workdir: Path, stack: ExitStack
) -> Services:
    """The runtime, then the gateways in front of it; all stopped when ``stack`` closes."""
    from gateway.auth import AuthConfig, mint_token

    runtime_port = free_port()
    runtime_argv = driftgate(
        "runtime", "--repository", str(repository), "--port", str(runtime_port)
    )
    runtime = stack.enter_context(
        started(
            "runtime",
            [*runtime_argv, "--poll-interval", "0"],
            runtime_port,
            workdir,
            cpus=args.placement.runtime,
        )
    )
    variants: dict[str, Process] = {}
    for key, (env, extra_args) in RUNTIME_VARIANTS.items():
        if args.variant_connections[key]:
            port = free_port()
            argv = driftgate("runtime", "--repository", str(repository), "--port", str(port))
            variants[key] = stack.enter_context(
                started(
                    key,
                    [*argv, "--poll-interval", "0", *extra_args],
                    port,
                    workdir,
                    env,
                    cpus=args.placement.runtime,
                )
            )
    print(f"starting the runtime{'s' if variants else ''} ...", flush=True)
    for process in [runtime, *variants.values()]:
        wait_ready(process)

    secret = os.urandom(32).hex()
    auth_on = {"enabled": True, "algorithm": "HS256", "secret_env": BENCH_SECRET_ENV}
    config = AuthConfig.from_dict(auth_on, environ={BENCH_SECRET_ENV: secret})
    token = mint_token(config, "bench", ["predict"], 3600)
    auth_off = {"enabled": False}
    script = [sys.executable, str(SCRIPT.resolve())]
    swapped = [*script, "--serve-gateway"]
    collector, exported_env = None, {}
    if args.variant_connections["gateway-exported"]:
        port = free_port()
        collector = stack.enter_context(
            started(
                "otlp-collector",
                [*script, "--serve-collector", str(port)],
                port,
                workdir,
                cpus=args.placement.front,
            )
        )
        wait_ready(collector)
        exported_env = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{collector.url}/v1/traces"}
    plan: dict[str, tuple[Mapping[str, object], list[str], dict[str, str]]] = {
        "gateway": (auth_off, driftgate("gateway", "--config"), {}),
        "gateway-auth": (auth_on, driftgate("gateway", "--config"), {BENCH_SECRET_ENV: secret}),
        "gateway-httpx": (auth_off, [*swapped, "gateway-httpx"], {}),
        "gateway-aiohttp": (auth_off, [*swapped, "gateway-aiohttp"], {}),
        "gateway-httpx-aiohttp": (auth_off, [*swapped, "gateway-httpx-aiohttp"], {}),
        "gateway-sampled": (auth_off, driftgate("gateway", "--config"), SAMPLED_ENV),
        "gateway-exported": (auth_off, driftgate("gateway", "--config"), exported_env),
        "proxy-floor": (auth_off, [*script, "--serve-floor"], {}),
    }
    gateways: dict[str, Process] = {}
    for key, (auth, argv, env) in plan.items():
        if key != "gateway" and not args.variant_connections[key]:
            continue
        port = free_port()
        yaml_path = gateway_yaml(workdir / f"{key}.yaml", port, runtime.url, auth)
        gateways[key] = stack.enter_context(
            started(key, [*argv, str(yaml_path)], port, workdir, env, cpus=args.placement.front)
        )
    print(f"starting {', '.join(gateways)} ...", flush=True)
    for key, process in gateways.items():
        wait_ready(process)
        if argv_is_swapped(plan[key][1]) and SWAP_MARKER not in process.log_tail(100_000):
            raise RuntimeError(f"{key} did not swap its upstream client:\n{process.log_tail()}")
    return Services(runtime, gateways, token, variants, collector)


def argv_is_swapped(argv: Sequence[str]) -> bool:
    return "--serve-gateway" in argv


def plan_cases(args: argparse.Namespace, services: Services, workdir: Path) -> list[Case]:
    """Write the wrk scripts, check every target answers, and list what to load."""
    runtime, gateways = services.runtime, services.gateways
    json_headers = {"Content-Type": "application/json"}
    auth_headers = {**json_headers, "Authorization": f"Bearer {services.token}"}
    scripts = {
        "eval": (workdir / "eval.lua", lua_script("POST", EVAL_BODY, json_headers)),
        "eval-auth": (workdir / "eval-auth.lua", lua_script("POST", EVAL_BODY, auth_headers)),
        "metadata": (workdir / "metadata.lua", lua_script("GET", None, {})),
    }
    for path, text in scripts.values():
        path.write_text(text)

    check_target(runtime.url + EVAL_PATH, json_headers)
    for key, process in gateways.items():
        check_target(
            process.url + EVAL_PATH, auth_headers if key == "gateway-auth" else json_headers
        )
    for process in services.runtime_variants.values():
        check_target(process.url + EVAL_PATH, json_headers)
    every = {**gateways, **services.runtime_variants}
    if "gateway-auth" in gateways:
        refused = httpx.post(
            gateways["gateway-auth"].url + EVAL_PATH, content=EVAL_BODY, headers=json_headers
        )
        if refused.status_code != 401:
            raise RuntimeError(f"the auth gateway accepted a request without a token: {refused}")

    def target(key: str, process: Process, path: str, script: str) -> Target:
        return Target(key, process.url + path, scripts[script][0], process.popen.pid)

    cases: list[Case] = []
    for connections in args.connection_counts:
        targets = [
            target("direct", runtime, EVAL_PATH, "eval"),
            target("gateway", gateways["gateway"], EVAL_PATH, "eval"),
        ]
        for key, counts in args.variant_connections.items():
            if connections in counts:
                script = "eval-auth" if key == "gateway-auth" else "eval"
                targets.append(target(key, every[key], EVAL_PATH, script))
        cases.append(Case("eval", connections, targets))
    if args.metadata_connections:
        check_target(runtime.url + METADATA_PATH, {}, "GET")
        check_target(gateways["gateway"].url + METADATA_PATH, {}, "GET")
        metadata_targets = [
            target("direct-meta", runtime, METADATA_PATH, "metadata"),
            target("gateway-meta", gateways["gateway"], METADATA_PATH, "metadata"),
        ]
        cases.append(Case("metadata", args.metadata_connections, metadata_targets))
    paced_processes = {"direct": runtime, **gateways}
    paced_keys = ["direct", "gateway", *(["proxy-floor"] if "proxy-floor" in gateways else [])]
    for connections in args.paced_connections:
        paced_script = workdir / f"paced-{connections}.lua"  # written by ``pace``
        paced_targets = [
            Target(key, process.url + EVAL_PATH, paced_script, process.popen.pid)
            for key in paced_keys
            for process in [paced_processes[key]]
        ]
        cases.append(Case("paced", connections, paced_targets))
    return cases


def pace(case: Case, cases: list[Case], share: float, duration_s: int) -> None:
    """Write the paced case's script for ``share`` of the rate the runtime sustains directly
    at the same connection count: the median of this run's saturated ``eval`` case there, or
    else one saturated run measured now."""
    saturated = [c for c in cases if c.name == "eval" and c.connections == case.connections]
    direct = case.targets[0]
    if saturated and saturated[0].rounds:
        capacity = saturated[0].median("direct", lambda sample: sample.rps)
    else:
        scripted = direct.script.with_name("eval.lua")
        capacity = run_wrk(direct.url, scripted, case.connections, duration_s, direct.pid).rps
    case.offered_rps = share * capacity
    gap_ms = 1000 * case.connections / case.offered_rps
    headers = {"Content-Type": "application/json"}
    direct.script.write_text(lua_script("POST", EVAL_BODY, headers, mean_gap_ms=gap_ms))
    print(
        f"paced at {case.connections} connection(s): {case.offered_rps:.0f} req/s offered "
        f"({share:.0%} of {capacity:.0f}), a mean gap of {gap_ms:.1f} ms per connection",
        flush=True,
    )
