#!/usr/bin/env python3
"""What the gateway costs: the same wrk load against a runtime directly and through the gateway.

    python bench/gateway_overhead.py                                  # build the demo, run, print
    python bench/gateway_overhead.py --repository var/models --write  # and rewrite BENCHMARKS.md

One ``driftgate runtime`` serves the demo repository. In front of it, on the same machine, run
``driftgate gateway`` processes with that runtime as their only replica:

- ``gateway``: auth disabled (``auth: {enabled: false}``), default upstream client
  (``gateway.http1.Http1Upstream``). The main case.
- ``gateway-auth``: the same with HS256 JWT auth on, called with a valid ``predict`` token.
- ``gateway-httpx``: plain ``httpx.AsyncHTTPTransport`` (same pool size): the rejected option.
- ``gateway-aiohttp``: aiohttp's pool directly (``gateway.upstream.AiohttpUpstream``), the
  previous default.
- ``gateway-httpx-aiohttp``: the httpx API over aiohttp's pool (``httpx-aiohttp``), the
  default before that (off unless ``--aiohttp-connections`` names counts).
- ``gateway-sampled``: the main case with 10% of traces sampled, through the standard
  ``OTEL_TRACES_SAMPLER=parentbased_traceidratio`` / ``OTEL_TRACES_SAMPLER_ARG=0.1``: what
  span creation costs, and what an operator gets back by sampling.
- ``gateway-exported``: the main case exporting every span over OTLP/HTTP (the standard
  ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) to a stand-in collector that the script runs
  (hidden ``--serve-collector PORT``: answers every export, counts them). The main case
  exports nothing and so records no span (``monitoring.tracing.UnexportedTracer``); this is
  what tracing costs when the spans go somewhere.
- ``proxy-floor``: not driftgate. A bare ASGI proxy on the same stack (uvicorn, uvloop,
  httptools, the gateway's ``Http1Upstream``; hidden ``--serve-floor CONFIG``) that reads the
  body, forwards it and answers with the runtime's body: no auth, routing, spans, metrics or
  headers of its own. What any Python proxy here pays for the extra hop; the gateway's own
  cost is what it adds on top.

And more runtimes, called directly:

- ``runtime-uvloop``: ``driftgate runtime --loop uvloop``, the runtime's event loop before
  2026-12-06 (the default is now asyncio's: fair to every connection when saturated).
- ``runtime-pool``: ``DRIFTGATE_INLINE_INFERENCE_MAX_MS=0``, every model call in the
  inference thread pool (``runtime.placement``), as before quick calls ran on the event loop.

The three swapped gateways run the same CLI (``driftgate gateway --config``) in a process
where the upstream client is swapped first (hidden ``--serve-gateway VARIANT CONFIG``);
nothing in ``gateway/`` knows about them.

For each connection count, wrk sends the same load (``POST /v1/models/titanic/eval``, one
instance) to each target for ``--duration`` seconds, ``--rounds`` times, rotating the order each
round so that drift on the shared machine hits every target alike. Req/s, percentiles and CPU
per request (of the process wrk talks to, from /proc) are medians over rounds; throughput ratios
and added latencies are medians of the per-round ratios and differences. The variants join at
the connection counts given by ``--auth-connections`` etc. ("" turns one off); a cheap case
(GET model metadata, no model call) runs at ``--metadata-connections`` (0: off).

Each connection sends its next request as soon as it is answered, so at 16 and 64 connections
the machine is saturated and the latency of a closed loop of N connections is N / throughput
(Little's law): its added latency repeats the throughput ratio. A paced case
(``--paced-connections``, default 16) measures added latency the way service-mesh benchmarks
do, at a fixed offered rate below saturation: ``--paced-share`` (0.5) of the runtime's
saturated req/s at that connection count in this run, each connection waiting a random gap
after each answer (``wrk_load.paced``). Its targets are the runtime, the gateway and the
floor; the issue's added-latency targets are judged on it as well as on the saturated case.

Placement (``--placement``): ``shared`` (the default) lets the OS place every process;
``split`` pins the runtime to half of the CPUs and the gateways and wrk to the other half
with ``taskset``, as when the gateway runs on a node of its own. On 2 cores, split gives
the gateway one core shared with wrk, which it saturates at 16 connections.

Every load is bounded (``wrk -d``), loopback only, one wrk thread. wrk is required: a Python
load generator tops out near the gateway's own rate and would measure itself.

This script holds the arguments and ``main``; its sibling modules hold the rest:
``overhead_plan`` (which processes, which targets at which connection count, the paced
rate), ``overhead_targets`` (the request, the variants), ``local_processes`` (start, stop,
pin), ``variant_servers`` (the hidden ``--serve-*`` servers), ``wrk_load`` (wrk runs,
rounds, pacing), ``overhead_report`` (the section, the verdicts) and ``benchmarks_doc``
(BENCHMARKS.md, the machine line).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import httpx
from benchmarks_doc import BENCHMARKS, load_flags, machine_description, write_section
from local_processes import (
    Placement,
    build_demo,
)
from overhead_plan import pace, plan_cases, start_services
from overhead_report import render
from variant_servers import serve_collector, serve_floor, serve_gateway
from wrk_load import Case, connection_counts, run_case

# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repository", type=Path, help="demo model repository (default: build)")
    parser.add_argument(
        "--connections", type=connection_counts, default="1,16,64", help="default 1,16,64"
    )
    parser.add_argument("--rounds", type=int, default=5, help="1..10 (default 5)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds per target and case")
    # A connection count in each list adds that variant's target there; "" turns it off.
    for flag, default in (
        ("--auth-connections", "16"),
        ("--httpx-connections", "64"),
        ("--aiohttp-direct-connections", "1,16"),
        ("--aiohttp-connections", ""),
        ("--pool-connections", "1,16"),
        ("--sampled-connections", "1,16"),
        ("--floor-connections", "1,16"),
        ("--exported-connections", "1,16"),
        ("--uvloop-connections", "16,64"),
    ):
        parser.add_argument(flag, type=connection_counts, default=default, help='"": off')
    parser.add_argument("--metadata-connections", type=int, default=16, help="0: off")
    parser.add_argument(
        "--paced-connections",
        type=connection_counts,
        default="16",
        help='connection counts of the paced cases (default 16; "": off)',
    )
    parser.add_argument(
        "--paced-share",
        type=float,
        default=0.5,
        help="offered load of a paced case, a share of the runtime's saturated req/s (0.5)",
    )
    parser.add_argument(
        "--placement",
        choices=("shared", "split"),
        default="shared",
        help="shared (default): the OS places every process; split: the runtime on half the "
        "CPUs, the gateways and wrk on the other half",
    )
    parser.add_argument("--write", action="store_true", help="rewrite the section in --output")
    parser.add_argument("--output", type=Path, default=BENCHMARKS)
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--serve-gateway", nargs=2, metavar=("VARIANT", "CONFIG"), help=argparse.SUPPRESS
    )
    parser.add_argument("--serve-floor", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--serve-collector", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.connections:
        parser.error("--connections: at least one count, e.g. 1,16,64")
    if not (1 <= args.duration <= 60 and 0 <= args.warmup <= 60 and 1 <= args.rounds <= 10):
        parser.error("--duration 1..60 s, --warmup 0..60 s, --rounds 1..10 (bounded load)")
    if not 0 < args.paced_share <= 1:
        parser.error("--paced-share: a share of the saturated rate, in (0, 1]")
    args.connection_counts = args.connections
    args.variant_connections = {
        "gateway-auth": args.auth_connections,
        "gateway-httpx": args.httpx_connections,
        "gateway-aiohttp": args.aiohttp_direct_connections,
        "gateway-httpx-aiohttp": args.aiohttp_connections,
        "gateway-sampled": args.sampled_connections,
        "proxy-floor": args.floor_connections,
        "gateway-exported": args.exported_connections,
        "runtime-pool": args.pool_connections,
        "runtime-uvloop": args.uvloop_connections,
    }
    args.load_flags = load_flags(argv)
    if args.serve_gateway or args.serve_floor or args.serve_collector:
        args.placement = Placement()
    else:
        args.placement = Placement.split() if args.placement == "split" else Placement()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.serve_gateway:
        return serve_gateway(*args.serve_gateway)
    if args.serve_floor:
        return serve_floor(args.serve_floor)
    if args.serve_collector:
        return serve_collector(args.serve_collector)
    if shutil.which("wrk") is None:
        print(
            "gateway_overhead: wrk is not installed. Install it with `apt-get install wrk` "
            "(Debian/Ubuntu, as root) or `brew install wrk` (macOS); a Python load generator "
            "would measure itself rather than the gateway.",
            file=sys.stderr,
        )
        return 2
    started_at = time.monotonic()
    load_before = os.getloadavg()[0]
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="driftgate-bench-"))
        if args.keep_logs:
            print(f"logs and configs in {workdir}")
        else:
            stack.callback(shutil.rmtree, workdir, True)
        repository = args.repository
        if repository is None:
            repository = build_demo(workdir / "models")
        cases = _run(args, repository.resolve(), workdir, stack)
    took = time.monotonic() - started_at
    load = f"{load_before:.2f} / {os.getloadavg()[0]:.2f}"
    section = render(cases, args, machine_description(), load, took)
    print("\n" + section)
    if args.write:
        write_section(args.output, __file__, section)
        print(f"wrote {args.output}")
    return 0


def _run(args: argparse.Namespace, repository: Path, workdir: Path, stack: ExitStack) -> list[Case]:
    services = start_services(args, repository, workdir, stack)
    cases = plan_cases(args, services, workdir)
    runs = sum(len(c.targets) for c in cases)
    estimate = runs * (args.rounds * args.duration + args.warmup)
    print(f"{runs} targets x {args.rounds} rounds x {args.duration} s: ~{estimate:.0f} s of load")
    for case in cases:
        if case.name == "paced":
            pace(case, cases, args.paced_share, args.duration)
        run_case(case, args.rounds, args.duration, args.warmup, args.placement.front)
    for process in [
        services.runtime,
        *services.gateways.values(),
        *services.runtime_variants.values(),
        *([services.collector] if services.collector else []),
    ]:
        if process.popen.poll() is not None:
            raise RuntimeError(f"{process.name} died during the run:\n{process.log_tail()}")
    if services.collector is not None:
        # The BatchSpanProcessor exports every 5 s: the last batch may still be on its way.
        stats = httpx.get(services.collector.url + "/stats", timeout=5).json()
        print(
            f"the stand-in OTLP collector received {stats['exports']} exports, "
            f"{stats['bytes'] / 1e6:.1f} MB"
        )
        if not stats["exports"]:
            raise RuntimeError("gateway-exported exported no span: its numbers would mislead")
    return cases


if __name__ == "__main__":
    sys.exit(main())
