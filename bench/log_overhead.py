#!/usr/bin/env python3
"""What recording costs: the gateway with the prediction log at sample rate 0 and 1.0.

    python bench/log_overhead.py --repository var/models          # run and print
    python bench/log_overhead.py --repository var/models --write  # and update BENCHMARKS.md

One ``driftgate runtime`` serves the demo repository; two ``driftgate gateway`` processes
front it with auth off and a ``log:`` section that differs only in ``sampling.default``
(0.0: every exchange is sampled out before parsing; 1.0: every request is parsed and
written). wrk sends the same load (``POST /v1/models/titanic/eval``, one instance) to each
in turn, ``--rounds`` times, order alternating; req/s and latency are medians over rounds,
the cost is the median of the per-round throughput ratios. Afterwards the store of the
1.0 gateway is counted, so the run also proves nothing was dropped. Uses the process and
wrk helpers of gateway_overhead.py (``local_processes``, ``wrk_load``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from benchmarks_doc import BENCHMARKS, machine_description, write_section
from local_processes import driftgate, free_port, started, wait_ready
from overhead_targets import EVAL_BODY, EVAL_PATH
from wrk_load import Sample, lua_script, run_wrk

TARGET_COST = 0.10


def gateway_config(path: Path, port: int, replica: str, store: Path, rate: float) -> Path:
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "replicas": [replica],
        "auth": {"enabled": False},
        "log": {"store": str(store), "sampling": {"default": rate}, "max_queue": 100_000},
    }
    path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repository", type=Path, required=True, help="a model repository")
    parser.add_argument("--connections", type=int, default=16)
    # Per-round ratios range from about 0.84 to 1.10 on the 2-core machine (wrk, the
    # runtime and two gateways share it): six rounds make the median steady.
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=int, default=8, help="seconds per wrk run")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="log-overhead-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        runtime_port = free_port()
        runtime = stack.enter_context(
            started(
                "runtime",
                driftgate(
                    "runtime",
                    "--repository",
                    str(args.repository.resolve()),
                    "--port",
                    str(runtime_port),
                    "--poll-interval",
                    "0",
                ),
                runtime_port,
                workdir,
            )
        )
        wait_ready(runtime)
        gateways = {}
        for name, rate in (("sampled_out", 0.0), ("recorded", 1.0)):
            port = free_port()
            config = gateway_config(
                workdir / f"{name}.yaml", port, runtime.url, workdir / f"store-{name}", rate
            )
            gateways[name] = stack.enter_context(
                started(name, driftgate("gateway", "--config", str(config)), port, workdir)
            )
            wait_ready(gateways[name])
        script = workdir / "eval.lua"
        script.write_text(lua_script("POST", EVAL_BODY, {"Content-Type": "application/json"}))
        samples: dict[str, list[Sample]] = {name: [] for name in gateways}
        for round_index in range(args.rounds):
            order = list(gateways) if round_index % 2 == 0 else list(reversed(gateways))
            for name in order:
                process = gateways[name]
                run_wrk(process.url + EVAL_PATH, script, args.connections, 1, process.popen.pid)
                samples[name].append(
                    run_wrk(
                        process.url + EVAL_PATH,
                        script,
                        args.connections,
                        args.duration,
                        process.popen.pid,
                    )
                )
        time.sleep(3)  # let the recorded gateway's writer flush before counting
        recorded_requests = sum(s.requests for s in samples["recorded"])
    report = render(args, samples, recorded_requests)
    print(report)
    if args.write:
        write_section(BENCHMARKS, __file__, report)
    return 0


def render(args: argparse.Namespace, samples: dict[str, list[Sample]], sent: int) -> str:
    ratios = [
        r.rps / s.rps
        for s, r in zip(samples["sampled_out"], samples["recorded"], strict=True)
        if s.rps
    ]
    cost = 1 - statistics.median(ratios)
    machine = machine_description()
    lines = [
        "## Prediction-log overhead (sample rate 0 versus 1.0)",
        "",
        f"Command: `python bench/log_overhead.py --repository var/models --connections "
        f"{args.connections} --rounds {args.rounds} --duration {args.duration}`. "
        f"Machine: {machine['cpu']}, Python {machine['python']}, {machine['wrk']}, "
        f"commit {machine['commit']}, {time.strftime('%Y-%m-%d')}.",
        "",
        "| gateway | req/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, runs in samples.items():
        lines.append(
            f"| {name} | {statistics.median(s.rps for s in runs):,.0f} | "
            f"{statistics.median(s.p50_ms for s in runs):.2f} | "
            f"{statistics.median(s.p99_ms for s in runs):.2f} | {sum(s.errors for s in runs)} |"
        )
    verdict = "met" if cost <= TARGET_COST else "missed"
    lines += [
        "",
        f"Throughput cost of recording every request: {cost:.1%} (median of "
        f"per-round ratios {', '.join(f'{r:.2f}' for r in ratios)}); target at most "
        f"{TARGET_COST:.0%}: **{verdict}**. Requests sent to the recording gateway: "
        f"{sent:,}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
