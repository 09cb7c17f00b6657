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

Placement (``--placement``): ``shared`` (the default) lets the OS place every process;
``split`` pins the runtime to half of the CPUs and the gateways and wrk to the other half
with ``taskset``, as when the gateway runs on a node of its own. On 2 cores, split gives
the gateway one core shared with wrk, which it saturates at 16 connections.

Every load is bounded (``wrk -d``), loopback only, one wrk thread. wrk is required: a Python
load generator tops out near the gateway's own rate and would measure itself.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
MODEL = "titanic"
EVAL_PATH = f"/v1/models/{MODEL}/eval"
METADATA_PATH = f"/v2/models/{MODEL}"
#: The seed single-instance request of the demo (README tour).
EVAL_BODY = '{"fare": 7, "sex": "male", "embarked": "Q", "pclass": "3", "age": 27}'
BENCH_SECRET_ENV = "DRIFTGATE_BENCH_SECRET"
BEGIN = "<!-- bench/gateway_overhead.py: begin (rewritten by --write) -->"
END = "<!-- bench/gateway_overhead.py: end -->"
SWAP_MARKER = "bench: upstream client swapped for"
#: Targets from the issue: added latency at 16 connections, throughput at every count.
TARGET_ADDED_P50_MS = 1.0
TARGET_ADDED_P99_MS = 5.0
TARGET_RATIO = 0.60
TARGET_CONNECTIONS = 16
#: Level of the one-sided sign test behind "met" and "missed": with 5 rounds, all 5 must
#: agree (p = 2**-5); with 9 rounds, 8 (p = 10/512); with 10, 9 (p = 11/1024).
SIGN_TEST_LEVEL = 1 / 32
VARIANTS = {
    "gateway-auth": "gateway, JWT auth on (HS256)",
    "gateway-httpx": "gateway, plain `httpx.AsyncHTTPTransport`",
    "gateway-aiohttp": "gateway, aiohttp directly (the previous default)",
    "gateway-httpx-aiohttp": "gateway, httpx API over aiohttp (httpx-aiohttp)",
    "gateway-sampled": "gateway, 10% of traces sampled (`parentbased_traceidratio`)",
    "gateway-exported": "gateway, every span exported (OTLP/HTTP to a stand-in collector)",
    "proxy-floor": "floor: a bare proxy on the same stack (not driftgate, see the script)",
    "runtime-pool": "runtime directly, every model call in the thread pool",
    "runtime-uvloop": "runtime directly, on uvloop (`--loop uvloop`, the default before)",
}
#: The standard OpenTelemetry sampler variables of the ``gateway-sampled`` variant.
SAMPLED_ENV = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
#: Variants that are runtimes, not gateways (compared with the direct runtime only): the
#: environment and the extra arguments of each.
RUNTIME_VARIANTS: dict[str, tuple[dict[str, str], list[str]]] = {
    "runtime-pool": ({"DRIFTGATE_INLINE_INFERENCE_MAX_MS": "0"}, []),
    "runtime-uvloop": ({}, ["--loop", "uvloop"]),
}


# --------------------------------------------------------------------------- wrk


@dataclass(frozen=True)
class Sample:
    """One wrk run against one target."""

    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx/3xx answers + socket errors (connect, read, write, timeout)
    cpu_ms: float  # CPU (user + system) per request of the process wrk talked to; nan: unknown
    steal: float = float("nan")  # share of the machine's CPU time taken by the hypervisor


_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'DGJSON {"requests":%d,"duration_us":%d,"status":%d,"socket":%d,"p50":%d,"p99":%d}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def lua_script(method: str, body: str | None, headers: Mapping[str, str]) -> str:
    """A wrk script for one fixed request; ``done`` prints a machine-readable summary."""
    lines = [f'wrk.method = "{method}"']
    if body is not None:
        if "]]" in body:
            raise ValueError("body may not contain ']]' (Lua long string)")
        lines.append(f"wrk.body = [[{body}]]")
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    return "\n".join(lines) + "\n" + _DONE


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (Linux /proc); nan elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    # After "pid (comm)", field 3 is index 0: utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def steal_and_total_ticks() -> tuple[int, int]:
    """CPU ticks stolen by the hypervisor, and all ticks, since boot (Linux /proc/stat)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user/nice]
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def run_wrk(
    url: str,
    script: Path,
    connections: int,
    duration_s: int,
    pid: int,
    *,
    cpus: frozenset[int] | None = None,
) -> Sample:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--timeout", "10s"]
    cpu_before = cpu_seconds(pid)
    steal_before, total_before = steal_and_total_ticks()
    done = subprocess.run(
        [*pinned_to(cpus), *command, "-s", str(script), url],
        capture_output=True,
        text=True,
        timeout=duration_s + 30,
        check=False,
    )
    cpu = cpu_seconds(pid) - cpu_before
    steal_after, total_after = steal_and_total_ticks()
    ticks = total_after - total_before
    steal = (steal_after - steal_before) / ticks if ticks > 0 else float("nan")
    for line in done.stdout.splitlines():
        if line.startswith("DGJSON "):
            raw = json.loads(line.removeprefix("DGJSON "))
            seconds = raw["duration_us"] / 1e6
            requests = raw["requests"]
            return Sample(
                rps=requests / seconds if seconds else 0.0,
                p50_ms=raw["p50"] / 1000,
                p99_ms=raw["p99"] / 1000,
                requests=requests,
                errors=raw["status"] + raw["socket"],
                cpu_ms=1000 * cpu / requests if requests else float("nan"),
                steal=steal,
            )
    raise RuntimeError(f"wrk gave no summary (exit {done.returncode}):\n{done.stdout}{done.stderr}")


# --------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Placement:
    """Which CPUs the runtime and the front (gateways and wrk) may use; None: any."""

    runtime: frozenset[int] | None = None
    front: frozenset[int] | None = None

    @classmethod
    def split(cls) -> Placement:
        """The runtime on the first half of this process's CPUs, the front on the rest."""
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise SystemExit("--placement split needs at least 2 CPUs")
        half = len(cpus) // 2
        return cls(frozenset(cpus[:half]), frozenset(cpus[half:]))

    def describe(self) -> str:
        if self.runtime is None or self.front is None:
            return "processes free to run on any CPU"
        return (
            f"the runtime pinned to CPU {_cpu_list(self.runtime)}, the gateways and wrk to "
            f"CPU {_cpu_list(self.front)} (as on separate nodes or pods)"
        )


def _cpu_list(cpus: frozenset[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def pinned_to(cpus: frozenset[int] | None) -> list[str]:
    """The command prefix that pins a child, and every thread it starts, to ``cpus``
    (``taskset`` execs the command: the pid is the command's own)."""
    return [] if cpus is None else ["taskset", "-c", _cpu_list(cpus)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@contextmanager
def started(
    name: str,
    argv: Sequence[str],
    port: int,
    workdir: Path,
    env: Mapping[str, str] | None = None,
    *,
    cpus: frozenset[int] | None = None,
) -> Iterator[Process]:
    """Run ``argv`` (its own session, log to a file) and always stop it afterwards."""
    log_path = workdir / f"{name}.log"
    # No span exporter unless ``env`` names one (spans still get their ids and sampling, as
    # `driftgate up` runs); not OTEL_SDK_DISABLED, which would swap in a no-op tracer and
    # drop the trace ids too; the default sampler unless ``env`` names one.
    inherited = {
        name: value
        for name, value in os.environ.items()
        if name
        not in (
            "OTEL_SDK_DISABLED",
            "OTEL_TRACES_EXPORTER",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_TRACES_SAMPLER",
            "OTEL_TRACES_SAMPLER_ARG",
        )
    }
    full_env = {
        **inherited,
        "TF_CPP_MIN_LOG_LEVEL": "1",
        "TF_ENABLE_ONEDNN_OPTS": "0",
        **(env or {}),
    }
    with log_path.open("wb") as log_file:
        popen = subprocess.Popen(
            [*pinned_to(cpus), *argv],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=ROOT,
            start_new_session=True,
        )
    process = Process(name, popen, f"http://127.0.0.1:{port}", log_path)
    try:
        yield process
    finally:
        stop(popen)


def stop(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is not None:
        return
    popen.send_signal(signal.SIGTERM)
    try:
        popen.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(timeout=5)


def wait_ready(process: Process, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.popen.poll() is not None:
            raise RuntimeError(
                f"{process.name} exited with {process.popen.returncode}:\n{process.log_tail()}"
            )
        try:
            if httpx.get(process.url + "/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise RuntimeError(f"{process.name} not ready after {timeout_s:g}s:\n{process.log_tail()}")


def driftgate(*args: str) -> list[str]:
    return [sys.executable, "-m", "driftgate", "--log-level", "WARNING", *args]


def build_demo(repository: Path) -> Path:
    """``driftgate demo build`` into ``repository`` (about half a minute)."""
    print(f"building the demo repository in {repository} ...", flush=True)
    subprocess.run(
        driftgate("demo", "build", str(repository)),
        check=True,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "1", "TF_ENABLE_ONEDNN_OPTS": "0"},
    )
    return repository


def gateway_yaml(path: Path, port: int, replica: str, auth: Mapping[str, object]) -> Path:
    config = {"listen": {"host": "127.0.0.1", "port": port}, "replicas": [replica], "auth": auth}
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    return path


# --------------------------------------------------------------------------- swapped clients


def _plain_httpx_transport(max_connections: int = 256) -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30,
    )
    return httpx.AsyncHTTPTransport(limits=limits)


def _serve_gateway(variant: str, config: str) -> int:
    """``driftgate gateway --config CONFIG`` with the upstream client of ``variant``."""
    import gateway.app
    import gateway.upstream
    from driftgate.cli import main as cli_main

    if variant == "gateway-httpx":
        gateway.app.make_upstream = lambda _=None: gateway.upstream.HttpxUpstream(  # type: ignore[attr-defined,assignment]
            _plain_httpx_transport()
        )
    elif variant == "gateway-aiohttp":
        gateway.app.make_upstream = lambda _=None: gateway.upstream.AiohttpUpstream()  # type: ignore[attr-defined,assignment]
    elif variant == "gateway-httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        gateway.app.make_upstream = lambda _=None: gateway.upstream.HttpxUpstream(  # type: ignore[attr-defined,assignment]
            AiohttpTransport(
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=256)
            )
        )
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    print(f"{SWAP_MARKER} {variant}", file=sys.stderr, flush=True)
    return cli_main(["--log-level", "WARNING", "gateway", "--config", config])


def _serve_floor(config: str) -> int:
    """The ``proxy-floor`` variant: forward every request to the config's first replica.

    Reads the body, sends it on with ``Http1Upstream`` and answers with the runtime's status
    and body; GETs (the readiness probe) go through the same way. Nothing else: it is the
    yardstick for the gateway, not a product.
    """
    import uvicorn

    from gateway.http1 import Http1Upstream

    settings = json.loads(Path(config).read_text())
    replica, listen = settings["replicas"][0], settings["listen"]
    upstream = Http1Upstream()

    async def app(
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        url = f"{replica}{scope['path']}"
        headers = {"content-type": "application/json"}
        answer = await upstream.send(str(scope["method"]), url, headers, body, 30.0)
        length = str(len(answer.body)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", length)],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})

    uvicorn.run(
        app,
        host=listen["host"],
        port=listen["port"],
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    return 0


def _serve_collector(port: int) -> int:
    """The ``gateway-exported`` variant's collector: 200 and an empty
    ``ExportTraceServiceResponse`` (no bytes) for every OTLP/HTTP export, counted;
    ``GET /stats`` says how many exports and bytes arrived; any other GET answers 200 (the
    readiness probe). Nothing is decoded: the cost measured is the exporting gateway's."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received = {"exports": 0, "bytes": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = len(self.rfile.read(int(self.headers.get("content-length", 0))))
            with lock:
                received["exports"] += 1
                received["bytes"] += size
            self._answer(b"", "application/x-protobuf")

        def do_GET(self) -> None:
            with lock:
                body = json.dumps(received).encode() if self.path == "/stats" else b"{}"
            self._answer(body, "application/json")

        def _answer(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: no line per export
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
    return 0


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Target:
    key: str  # direct | gateway | gateway-auth | ... | direct-meta | gateway-meta
    url: str
    script: Path
    pid: int  # the process wrk talks to, for CPU per request


@dataclass
class Case:
    """Targets loaded in turn at one connection count; ``rounds[r][key]`` is one wrk run."""

    name: str
    connections: int
    targets: list[Target]
    rounds: list[dict[str, Sample]] = field(default_factory=list)

    def has(self, key: str) -> bool:
        return any(t.key == key for t in self.targets)

    def median(self, key: str, metric: Callable[[Sample], float]) -> float:
        return statistics.median(metric(r[key]) for r in self.rounds)

    def ratio(self, key: str, base: str) -> float:
        return statistics.median(self.per_round_ratio(key, base))

    def added(self, key: str, base: str, metric: Callable[[Sample], float]) -> float:
        return statistics.median(self.per_round_added(key, base, metric))

    def per_round_added(
        self, key: str, base: str, metric: Callable[[Sample], float]
    ) -> list[float]:
        return [metric(r[key]) - metric(r[base]) for r in self.rounds]

    def per_round_ratio(self, key: str, base: str) -> list[float]:
        return [r[key].rps / r[base].rps if r[base].rps else 0.0 for r in self.rounds]

    def errors(self, key: str) -> int:
        return sum(r[key].errors for r in self.rounds)


def run_case(
    case: Case, rounds: int, duration_s: int, warmup_s: int, cpus: frozenset[int] | None
) -> None:
    print(f"\n== {case.name}, {case.connections} connection(s)", flush=True)
    for target in case.targets if warmup_s else []:
        run_wrk(target.url, target.script, case.connections, warmup_s, target.pid, cpus=cpus)
    for index in range(rounds):
        shift = index % len(case.targets)
        samples: dict[str, Sample] = {}
        for target in case.targets[shift:] + case.targets[:shift]:
            sample = run_wrk(
                target.url, target.script, case.connections, duration_s, target.pid, cpus=cpus
            )
            samples[target.key] = sample
            print(
                f"  round {index + 1} {target.key:<16} {sample.rps:7.0f} req/s"
                f"  p50 {sample.p50_ms:7.2f} ms  p99 {sample.p99_ms:7.2f} ms"
                f"  cpu {sample.cpu_ms:5.2f} ms/req  steal {sample.steal:4.0%}"
                + (f"  ERRORS {sample.errors}" if sample.errors else ""),
                flush=True,
            )
        case.rounds.append(samples)


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
    script = [sys.executable, str(Path(__file__).resolve())]
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
    return cases


# --------------------------------------------------------------------------- report


def _p50(s: Sample) -> float:
    return s.p50_ms


def _p99(s: Sample) -> float:
    return s.p99_ms


def _rps(s: Sample) -> float:
    return s.rps


def _cpu(s: Sample) -> float:
    return s.cpu_ms


def machine_description() -> dict[str, str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def output(*command: str) -> str:
        try:
            done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
        except OSError:
            return ""
        return (done.stdout or done.stderr).strip()

    wrk = output("wrk", "-v").splitlines()
    dirty = output("git", "status", "--porcelain", "--untracked-files=no")
    return {
        "cpu": f"{os.cpu_count()} cores, {cpu}",
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "wrk": wrk[0].split(" Copyright")[0] if wrk else "wrk",
        "commit": (output("git", "rev-parse", "--short", "HEAD") or "unknown")
        + (" plus uncommitted changes" if dirty else ""),
    }


def _ms(value: float) -> str:
    return f"{value:.2f}"


def _signed(value: float) -> str:
    return f"{value:+.2f}"


def _pair(case: Case, key: str, base: str) -> str:
    """ratio, added p50 / p99 of ``key`` against ``base`` in the same rounds."""
    return (
        f"{case.ratio(key, base):.2f}, {_signed(case.added(key, base, _p50))} / "
        f"{_signed(case.added(key, base, _p99))}"
    )


def render(
    cases: list[Case], args: argparse.Namespace, machine: dict[str, str], load: str, took_s: float
) -> str:
    eval_cases = [c for c in cases if c.name == "eval"]
    lines = [
        "## Gateway overhead",
        "",
        f"Measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC by `bench/gateway_overhead.py` "
        f"in {took_s:.0f} s. Reproduce:",
        "",
        "```sh",
        "apt-get install wrk    # once, as root",
        " ".join(["python bench/gateway_overhead.py --write", *map(shlex.quote, args.load_flags)]),
        "```",
        "",
        f"- Machine: {machine['cpu']}; {machine['os']}; Python {machine['python']}; "
        f"{machine['wrk']}. Code: commit {machine['commit']}.",
        f"- Load average (1 min) before / after the run: {load}.",
        f"- Load: `POST {EVAL_PATH}` with `{EVAL_BODY}`; wrk, one thread; "
        f"{args.rounds} rounds x {args.duration} s per target and connection count after a "
        f"{args.warmup} s warm-up; target order rotated each round. One runtime process; "
        "one gateway process in front of it (one replica, auth disabled, default upstream "
        "client, no span exporter: trace ids and sampling, nothing recorded, as `driftgate up` "
        "runs; `gateway-exported` exports every span). Placement: "
        f"{args.placement.describe()}.",
        "- Medians over rounds. *ratio* = gateway / direct req/s and *added* = gateway - direct "
        "latency are medians of per-round values. *CPU ms/req*: user + system CPU of the "
        "process wrk talked to (the runtime for direct, the gateway otherwise) per request.",
        "",
        "| connections | direct req/s | gateway req/s | ratio | direct p50 / p99 ms "
        "| gateway p50 / p99 ms | added p50 / p99 ms | CPU ms/req runtime / gateway | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in eval_cases:
        lines.append(
            f"| {case.connections} | {case.median('direct', _rps):.0f} "
            f"| {case.median('gateway', _rps):.0f} | {case.ratio('gateway', 'direct'):.2f} "
            f"| {_ms(case.median('direct', _p50))} / {_ms(case.median('direct', _p99))} "
            f"| {_ms(case.median('gateway', _p50))} / {_ms(case.median('gateway', _p99))} "
            f"| {_signed(case.added('gateway', 'direct', _p50))} / "
            f"{_signed(case.added('gateway', 'direct', _p99))} "
            f"| {_ms(case.median('direct', _cpu))} / {_ms(case.median('gateway', _cpu))} "
            f"| {case.errors('direct') + case.errors('gateway')} |"
        )
    variant_rows = [(c, key) for c in eval_cases for key in VARIANTS if c.has(key)]
    metadata = [c for c in cases if c.name == "metadata"]
    if variant_rows or metadata:
        lines += [
            "",
            "Variants, each measured in the same rounds as the direct and default-gateway "
            "targets it is compared with (ratio, added p50 / p99 ms):",
            "",
            "| variant | connections | req/s | p50 / p99 ms | vs direct | vs default gateway "
            "| CPU ms/req | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for case, key in variant_rows:
            lines.append(
                f"| {VARIANTS[key]} | {case.connections} | {case.median(key, _rps):.0f} "
                f"| {_ms(case.median(key, _p50))} / {_ms(case.median(key, _p99))} "
                f"| {_pair(case, key, 'direct')} "
                f"| {'n/a' if key in RUNTIME_VARIANTS else _pair(case, key, 'gateway')} "
                f"| {_ms(case.median(key, _cpu))} | {case.errors(key)} |"
            )
        for case in metadata:
            for key, label, versus in (
                ("direct-meta", "runtime directly", "baseline"),
                ("gateway-meta", "gateway", _pair(case, "gateway-meta", "direct-meta")),
            ):
                lines.append(
                    f"| {label}, `GET {METADATA_PATH}` (no model call) | {case.connections} "
                    f"| {case.median(key, _rps):.0f} "
                    f"| {_ms(case.median(key, _p50))} / {_ms(case.median(key, _p99))} "
                    f"| {versus} | n/a | {_ms(case.median(key, _cpu))} | {case.errors(key)} |"
                )
    lines += [
        "",
        "Targets from the issue, default gateway (met / missed only when enough rounds agree "
        "for a one-sided sign test at 1/32: all of 5 to 8 rounds, 8 of 9, 9 of 10; see "
        "`verdicts` in the script):",
        "",
        *verdicts(eval_cases),
    ]
    if any(c.has("gateway-aiohttp") for c in eval_cases):
        lines += [
            "",
            "The same targets for aiohttp directly (the previous default), same rounds:",
            "",
            *verdicts(eval_cases, "gateway-aiohttp"),
        ]
    spread = ", ".join(
        f"{min(p99s):.1f}-{max(p99s):.1f} ms at {c.connections}"
        for c in eval_cases
        for p99s in [[r["direct"].p99_ms for r in c.rounds]]
    )
    steals = [
        sample.steal
        for case in cases
        for samples in case.rounds
        for sample in samples.values()
        if sample.steal == sample.steal  # not nan
    ]
    steal_note = (
        f" CPU steal (time the hypervisor gave this VM's CPUs to other guests) per wrk run: "
        f"median {statistics.median(steals):.1%}, highest {max(steals):.1%}; a round with "
        "high steal slows every target in it."
        if steals
        else ""
    )
    lines += [
        "",
        f"Noise: the machine's {os.cpu_count()} cores are shared by wrk, the runtime, the "
        "gateway and whatever else runs there (see the load average). Placed freely, every "
        "millisecond of gateway CPU at saturation is taken from the model server; split, it "
        "is taken from wrk instead. Tail latency moves "
        "with everything else on the machine (the runtime's own p99, called directly, "
        f"ranged {spread} connection(s) across rounds). CPU ms/req is the steadier measure "
        "of the gateway's own cost. Compare numbers within one run only." + steal_note,
    ]
    return "\n".join(lines) + "\n"


def _at_most(limit: float) -> Callable[[float], bool]:
    return lambda value: value <= limit


def rounds_needed(rounds: int) -> int | None:
    """The fewest of ``rounds`` rounds that must agree for a verdict: the smallest k with
    P(at least k of ``rounds`` | each round a coin toss) <= ``SIGN_TEST_LEVEL``; None when
    even all of them would not do (fewer than 5 rounds)."""
    for k in range(rounds + 1):
        tail = sum(math.comb(rounds, i) for i in range(k, rounds + 1)) / 2**rounds
        if tail <= SIGN_TEST_LEVEL:
            return k
    return None


def verdict_word(passed: list[bool]) -> str:
    """*met* when enough rounds meet the target (``rounds_needed``), *missed* when enough
    miss it, else *inconclusive*."""
    needed = rounds_needed(len(passed))
    if needed is not None and sum(passed) >= needed:
        return "met"
    if needed is not None and len(passed) - sum(passed) >= needed:
        return "missed"
    return "inconclusive"


def verdicts(eval_cases: list[Case], key: str = "gateway") -> list[str]:
    """Each target, judged on the per-round values (each round pairs the gateway with the
    runtime measured minutes apart at most, in rotated order, so slow drift of the shared
    machine cancels), by a sign test (``verdict_word``): if the gateway's typical round
    missed a target, 5 rounds of 5 meeting it would happen with probability 1/32 at most."""

    def verdict(values: list[float], ok: Callable[[float], bool], fmt: str) -> str:
        word = verdict_word([ok(v) for v in values])
        rounds = ", ".join(format(v, fmt) for v in values)
        return f"{format(statistics.median(values), fmt)} (rounds: {rounds}): **{word}**"

    out = []
    at = [c for c in eval_cases if c.connections == TARGET_CONNECTIONS and c.has(key)]
    for metric, name, limit in (
        (_p50, "p50", TARGET_ADDED_P50_MS),
        (_p99, "p99", TARGET_ADDED_P99_MS),
    ):
        if not at:
            out.append(f"- added {name}: not measured at {TARGET_CONNECTIONS} connections")
            continue
        added = at[0].per_round_added(key, "direct", metric)
        out.append(
            f"- added {name} <= {limit:g} ms at {TARGET_CONNECTIONS} connections: "
            + verdict(added, _at_most(limit), "+.2f")
        )
    for case in eval_cases:
        if case.has(key):
            out.append(
                f"- throughput >= {TARGET_RATIO:.0%} of direct at {case.connections} "
                "connection(s): "
                + verdict(case.per_round_ratio(key, "direct"), lambda v: v >= TARGET_RATIO, ".2f")
            )
    return out


def write_section(path: Path, section: str) -> None:
    """Replace the marked section of ``path`` (append it, or create the file, when absent)."""
    block = f"{BEGIN}\n{section}{END}\n"
    if not path.exists():
        path.write_text("# Benchmarks\n\n" + block)
        return
    text = path.read_text()
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


# --------------------------------------------------------------------------- main


def _counts(text: str) -> list[int]:
    counts = [int(c) for c in text.split(",") if c.strip() and c.strip() != "0"]
    if any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError("connection counts are positive integers: 1,16,64")
    return counts


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repository", type=Path, help="demo model repository (default: build)")
    parser.add_argument("--connections", type=_counts, default="1,16,64", help="default 1,16,64")
    parser.add_argument("--rounds", type=int, default=5, help="1..10 (default 5)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds per target and case")
    parser.add_argument("--auth-connections", type=_counts, default="16", help='"": off')
    parser.add_argument("--httpx-connections", type=_counts, default="64", help='"": off')
    parser.add_argument(
        "--aiohttp-direct-connections", type=_counts, default="1,16", help='"": off'
    )
    parser.add_argument("--aiohttp-connections", type=_counts, default="", help='"": off')
    parser.add_argument("--pool-connections", type=_counts, default="1,16", help='"": off')
    parser.add_argument("--sampled-connections", type=_counts, default="1,16", help='"": off')
    parser.add_argument("--floor-connections", type=_counts, default="1,16", help='"": off')
    parser.add_argument("--exported-connections", type=_counts, default="1,16", help='"": off')
    parser.add_argument("--uvloop-connections", type=_counts, default="16,64", help='"": off')
    parser.add_argument("--metadata-connections", type=int, default=16, help="0: off")
    parser.add_argument(
        "--placement",
        choices=("shared", "split"),
        default="shared",
        help="shared (default): the OS places every process; split: the runtime on half the "
        "CPUs, the gateways and wrk on the other half",
    )
    parser.add_argument("--write", action="store_true", help="rewrite the section in --output")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
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
    args.load_flags = _load_flags(argv)
    if args.serve_gateway or args.serve_floor or args.serve_collector:
        args.placement = Placement()
    else:
        args.placement = Placement.split() if args.placement == "split" else Placement()
    return args


def _load_flags(argv: Sequence[str]) -> list[str]:
    """The flags that shape the load (for the reproduce line): no paths, no --write."""
    takes_value = {"--repository": 1, "--output": 1, "--write": 0, "--keep-logs": 0}
    out, skip = [], 0
    for arg in argv:
        name = arg.split("=", 1)[0]
        if skip:
            skip -= 1
        elif name in takes_value:
            skip = takes_value[name] if "=" not in arg else 0
        else:
            out.append(arg)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if args.serve_gateway:
        return _serve_gateway(*args.serve_gateway)
    if args.serve_floor:
        return _serve_floor(args.serve_floor)
    if args.serve_collector:
        return _serve_collector(args.serve_collector)
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
        write_section(args.output, section)
        print(f"wrote {args.output}")
    return 0


def _run(args: argparse.Namespace, repository: Path, workdir: Path, stack: ExitStack) -> list[Case]:
    services = start_services(args, repository, workdir, stack)
    cases = plan_cases(args, services, workdir)
    runs = sum(len(c.targets) for c in cases)
    estimate = runs * (args.rounds * args.duration + args.warmup)
    print(f"{runs} targets x {args.rounds} rounds x {args.duration} s: ~{estimate:.0f} s of load")
    for case in cases:
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
