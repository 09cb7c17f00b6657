#!/usr/bin/env python3
"""What dynamic batching buys: each demo model served with and without ``batching:``.

    python bench/batching.py                                  # build the demo, run, print
    python bench/batching.py --repository var/models --write  # and rewrite BENCHMARKS.md

One ``driftgate runtime`` serves a copy of the demo repository in which every benchmarked
model appears twice: ``<model>`` as built, and ``<model>_batched`` with
``batching: {max_batch_size: 32, max_queue_delay_ms: 0}`` (``--max-batch-size``,
``--max-queue-delay-ms``; 0 is the default: no waiting when the model is idle). Same
artefact, same process, same CPUs: the only difference is the batching. wrk sends the
model's own single-instance example (from ``describe``) to ``POST /v1/models/<name>/eval``
at each connection count, ``--rounds`` times, alternating which of the pair goes first.
Medians over rounds; the ratio is batched / unbatched req/s, the median of per-round ratios.

The models: ``diabetes`` (TensorFlow SavedModel), ``iris`` (Keras HDF5), ``titanic`` (an
ONNX pipeline) and ``titanic_pmml`` (PMML through the Java bridge; only when ``java`` is on
PATH). wrk is required (``apt-get install wrk``), as for bench/gateway_overhead.py, whose
process and wrk helpers (local_processes.py, wrk_load.py) this script uses.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import httpx
import yaml
from benchmarks_doc import BENCHMARKS, load_flags, machine_description, write_section
from local_processes import build_demo, driftgate, free_port, started, wait_ready
from wrk_load import (
    Case,
    Target,
    connection_counts,
    cpu_ms,
    lua_script,
    p50_ms,
    p99_ms,
    rps,
    run_case,
)

MODELS = ("diabetes", "iris", "titanic", "titanic_pmml")
BATCHED_SUFFIX = "_batched"


def batched_repository(
    source: Path, target: Path, models: Sequence[str], batching: dict[str, float]
) -> None:
    """``models`` of ``source`` copied to ``target`` without batching, and each again as
    ``<model>_batched`` with ``batching``; the rest of each config.yaml is kept."""
    for model in models:
        for name, section in ((model, None), (f"{model}{BATCHED_SUFFIX}", batching)):
            shutil.copytree(source / model, target / name, symlinks=True)
            path = target / name / "config.yaml"
            config = (yaml.safe_load(path.read_text()) if path.is_file() else None) or {}
            config.pop("batching", None)
            if section is not None:
                config["batching"] = section
            path.write_text(yaml.safe_dump(config, sort_keys=False))


def example_script(url: str, name: str, workdir: Path) -> Path:
    """A wrk script posting the model's own single-instance example."""
    described = httpx.get(f"{url}/v1/models/{name}/describe", timeout=30).json()
    body = json.dumps(described["examples"]["instance"])
    headers = {"content-type": "application/json"}
    answer = httpx.post(f"{url}/v1/models/{name}/eval", content=body, headers=headers, timeout=30)
    if answer.status_code != 200:
        raise RuntimeError(f"{name}: the example got {answer.status_code}: {answer.text}")
    script = workdir / f"{name}.lua"
    script.write_text(lua_script("POST", body, headers))
    return script


def render(
    cases: list[Case], args: argparse.Namespace, took: float, machine: dict[str, str]
) -> str:
    flags = " ".join(args.load_flags)
    lines = [
        "## Dynamic batching",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/batching.py` "
        f"in {took:.0f} s. Reproduce:",
        "",
        "```sh",
        "apt-get install wrk    # once, as root",
        f"python bench/batching.py --write{' ' + flags if flags else ''}",
        "```",
        "",
        f"- Machine: {machine['cpu']}; {machine['os']}; Python {machine['python']}; "
        f"{machine['wrk']}. Code: commit {machine['commit']}.",
        f"- Load: `POST /v1/models/<model>/eval` with the model's single-instance example; "
        f"wrk, one thread; {args.rounds} rounds x {args.duration} s per model, variant and "
        f"connection count. One runtime process serves both variants of every model; "
        f"`_batched` has `batching: {{max_batch_size: {args.max_batch_size}, "
        f"max_queue_delay_ms: {args.max_queue_delay_ms:g}}}`.",
        "- Medians over rounds; *ratio* is batched / unbatched req/s (median of per-round "
        "ratios); *CPU ms/req* is the runtime's CPU per request (both variants share it).",
        "",
        "| model | connections | unbatched req/s | batched req/s | ratio | unbatched p50 / p99 ms "
        "| batched p50 / p99 ms | CPU ms/req unbatched / batched | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        plain, batched = case.targets[0].key, case.targets[1].key
        errors = case.errors(plain) + case.errors(batched)
        lines.append(
            f"| {plain} | {case.connections} "
            f"| {case.median(plain, rps):.0f} | {case.median(batched, rps):.0f} "
            f"| {case.ratio(batched, plain):.2f} "
            f"| {case.median(plain, p50_ms):.2f} / {case.median(plain, p99_ms):.2f} "
            f"| {case.median(batched, p50_ms):.2f} / {case.median(batched, p99_ms):.2f} "
            f"| {case.median(plain, cpu_ms):.2f} / {case.median(batched, cpu_ms):.2f} "
            f"| {errors} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repository", type=Path, help="demo model repository (default: build)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated")
    parser.add_argument("--connections", type=connection_counts, default="1,16,64")
    parser.add_argument("--rounds", type=int, default=3, help="1..10 (default 3)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--max-batch-size", type=int, default=32)
    parser.add_argument("--max-queue-delay-ms", type=float, default=0.0)
    parser.add_argument("--write", action="store_true", help="rewrite the section in --output")
    parser.add_argument("--output", type=Path, default=BENCHMARKS)
    args = parser.parse_args(argv)
    if not (1 <= args.rounds <= 10 and 1 <= args.duration <= 60 and args.connections):
        parser.error("--rounds 1..10, --duration 1..60 s, at least one connection count")
    args.models = [m for m in args.models.split(",") if m]
    unknown = set(args.models) - set(MODELS)
    if unknown:
        parser.error(f"--models: unknown {sorted(unknown)}; choose from {', '.join(MODELS)}")
    if "titanic_pmml" in args.models and shutil.which("java") is None:
        print("no java on PATH: titanic_pmml left out", file=sys.stderr)
        args.models.remove("titanic_pmml")
    args.load_flags = load_flags(argv)  # no paths, no --write
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    if shutil.which("wrk") is None:
        print("batching: wrk is not installed (`apt-get install wrk`, as root)", file=sys.stderr)
        return 2
    started_at = time.monotonic()
    batching = {
        "max_batch_size": args.max_batch_size,
        "max_queue_delay_ms": args.max_queue_delay_ms,
    }
    with ExitStack() as stack:
        workdir = Path(tempfile.mkdtemp(prefix="driftgate-batching-"))
        stack.callback(shutil.rmtree, workdir, True)
        source = args.repository or build_demo(workdir / "demo")
        repository = workdir / "models"
        batched_repository(source.resolve(), repository, args.models, batching)
        port = free_port()
        argv_runtime = driftgate("runtime", "--repository", str(repository), "--port", str(port))
        runtime = stack.enter_context(
            started("runtime", [*argv_runtime, "--poll-interval", "0"], port, workdir)
        )
        print("starting the runtime ...", flush=True)
        wait_ready(runtime)
        cases = []
        for model in args.models:
            pair = [model, f"{model}{BATCHED_SUFFIX}"]
            targets = [
                Target(
                    name,
                    f"{runtime.url}/v1/models/{name}/eval",
                    example_script(runtime.url, name, workdir),
                    runtime.popen.pid,
                )
                for name in pair
            ]
            for connections in args.connections:
                case = Case(model, connections, targets)
                run_case(case, args.rounds, args.duration, 1, None)
                cases.append(case)
        if runtime.popen.poll() is not None:
            raise RuntimeError(f"the runtime died during the run:\n{runtime.log_tail()}")
    section = render(cases, args, time.monotonic() - started_at, machine_description())
    print("\n" + section)
    for case in cases:
        ratios = case.per_round_ratio(case.targets[1].key, case.targets[0].key)
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
        print(f"{case.name} at {case.connections}: ratio rounds {spread}")
    if args.write:
        write_section(args.output, __file__, section)
        print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
