"""gateway_overhead.py's section of BENCHMARKS.md: the tables (``render``) and the verdicts
on the issue's targets, a one-sided sign test over the rounds of a run (``verdicts``)."""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import shlex
import statistics
from collections.abc import Callable

from overhead_targets import EVAL_BODY, EVAL_PATH, METADATA_PATH, RUNTIME_VARIANTS, VARIANTS
from wrk_load import Case, cpu_ms, p50_ms, p99_ms, rps

#: Targets from the issue: added latency at 16 connections, throughput at every count.
TARGET_ADDED_P50_MS = 1.0
TARGET_ADDED_P99_MS = 5.0
TARGET_RATIO = 0.60
TARGET_CONNECTIONS = 16
#: Level of the one-sided sign test behind "met" and "missed": with 5 rounds, all 5 must
#: agree (p = 2**-5); with 9 rounds, 8 (p = 10/512); with 10, 9 (p = 11/1024).
SIGN_TEST_LEVEL = 1 / 32


def _ms(value: float) -> str:
    return f"{value:.2f}"


def _signed(value: float) -> str:
    return f"{value:+.2f}"


def _pair(case: Case, key: str, base: str) -> str:
    """ratio, added p50 / p99 of ``key`` against ``base`` in the same rounds."""
    return (
        f"{case.ratio(key, base):.2f}, {_signed(case.added(key, base, p50_ms))} / "
        f"{_signed(case.added(key, base, p99_ms))}"
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
            f"| {case.connections} | {case.median('direct', rps):.0f} "
            f"| {case.median('gateway', rps):.0f} | {case.ratio('gateway', 'direct'):.2f} "
            f"| {_ms(case.median('direct', p50_ms))} / {_ms(case.median('direct', p99_ms))} "
            f"| {_ms(case.median('gateway', p50_ms))} / {_ms(case.median('gateway', p99_ms))} "
            f"| {_signed(case.added('gateway', 'direct', p50_ms))} / "
            f"{_signed(case.added('gateway', 'direct', p99_ms))} "
            f"| {_ms(case.median('direct', cpu_ms))} / {_ms(case.median('gateway', cpu_ms))} "
            f"| {case.errors('direct') + case.errors('gateway')} |"
        )
    paced_cases = [c for c in cases if c.name == "paced"]
    lines += paced_table(paced_cases, args.paced_share)
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
                f"| {VARIANTS[key]} | {case.connections} | {case.median(key, rps):.0f} "
                f"| {_ms(case.median(key, p50_ms))} / {_ms(case.median(key, p99_ms))} "
                f"| {_pair(case, key, 'direct')} "
                f"| {'n/a' if key in RUNTIME_VARIANTS else _pair(case, key, 'gateway')} "
                f"| {_ms(case.median(key, cpu_ms))} | {case.errors(key)} |"
            )
        for case in metadata:
            for key, label, versus in (
                ("direct-meta", "runtime directly", "baseline"),
                ("gateway-meta", "gateway", _pair(case, "gateway-meta", "direct-meta")),
            ):
                lines.append(
                    f"| {label}, `GET {METADATA_PATH}` (no model call) | {case.connections} "
                    f"| {case.median(key, rps):.0f} "
                    f"| {_ms(case.median(key, p50_ms))} / {_ms(case.median(key, p99_ms))} "
                    f"| {versus} | n/a | {_ms(case.median(key, cpu_ms))} | {case.errors(key)} |"
                )
    lines += [
        "",
        "Targets from the issue, default gateway (met / missed only when enough rounds agree "
        "for a one-sided sign test at 1/32: all of 5 to 8 rounds, 8 of 9, 9 of 10; see "
        "`verdicts` in bench/overhead_report.py):",
        "",
        *verdicts(eval_cases),
        *paced_verdicts(paced_cases),
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


def paced_table(paced_cases: list[Case], share: float) -> list[str]:
    """The paced cases: the same load offered at a fixed rate below saturation, where the
    added latency is the gateway's own and not the queue of a saturated machine."""
    if not paced_cases:
        return []
    lines = [
        "",
        f"Paced: the same request offered at a fixed rate, {share:.0%} of what the runtime "
        "sustains directly at that connection count in this run (the eval case above, or a "
        "saturated run of its own), instead of as "
        "fast as each connection is answered: after each answer a connection waits a random "
        "gap (exponential; the same seeded sequence for every target) before its next "
        "request. The service-mesh convention for added latency (a proxy measured at a fixed "
        "request rate, e.g. Istio's 1,000 req/s over 16 connections): below saturation the "
        "latency a proxy adds is its own work and hop, where at saturation a closed loop of N "
        "connections reads N / throughput (Little's law) and so repeats the throughput ratio.",
        "",
        "| connections | offered req/s | direct / gateway req/s | direct p50 / p99 ms "
        "| gateway p50 / p99 ms | added p50 / p99 ms | floor added p50 / p99 ms "
        "| CPU ms/req runtime / gateway | errors |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in paced_cases:
        floor = (
            f"{_signed(case.added('proxy-floor', 'direct', p50_ms))} / "
            f"{_signed(case.added('proxy-floor', 'direct', p99_ms))}"
            if case.has("proxy-floor")
            else "n/a"
        )
        lines.append(
            f"| {case.connections} | {case.offered_rps or 0:.0f} "
            f"| {case.median('direct', rps):.0f} / {case.median('gateway', rps):.0f} "
            f"| {_ms(case.median('direct', p50_ms))} / {_ms(case.median('direct', p99_ms))} "
            f"| {_ms(case.median('gateway', p50_ms))} / {_ms(case.median('gateway', p99_ms))} "
            f"| {_signed(case.added('gateway', 'direct', p50_ms))} / "
            f"{_signed(case.added('gateway', 'direct', p99_ms))} | {floor} "
            f"| {_ms(case.median('direct', cpu_ms))} / {_ms(case.median('gateway', cpu_ms))} "
            f"| {sum(case.errors(t.key) for t in case.targets)} |"
        )
    return lines


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

    out = _latency_verdicts(eval_cases, key, "")
    for case in eval_cases:
        if case.has(key):
            out.append(
                f"- throughput >= {TARGET_RATIO:.0%} of direct at {case.connections} "
                "connection(s): "
                + _verdict(case.per_round_ratio(key, "direct"), lambda v: v >= TARGET_RATIO, ".2f")
            )
    return out


def paced_verdicts(paced_cases: list[Case]) -> list[str]:
    """The added-latency targets again, on the paced case at ``TARGET_CONNECTIONS``."""
    return _latency_verdicts(paced_cases, "gateway", " paced") if paced_cases else []


def _latency_verdicts(cases: list[Case], key: str, how: str) -> list[str]:
    out = []
    at = [c for c in cases if c.connections == TARGET_CONNECTIONS and c.has(key)]
    for metric, name, limit in (
        (p50_ms, "p50", TARGET_ADDED_P50_MS),
        (p99_ms, "p99", TARGET_ADDED_P99_MS),
    ):
        if not at:
            out.append(f"- added {name}: not measured{how} at {TARGET_CONNECTIONS} connections")
            continue
        offered = f" ({at[0].offered_rps:.0f} req/s offered)" if at[0].offered_rps else ""
        added = at[0].per_round_added(key, "direct", metric)
        out.append(
            f"- added {name} <= {limit:g} ms at {TARGET_CONNECTIONS} connections{how}{offered}: "
            + _verdict(added, _at_most(limit), "+.2f")
        )
    return out


def _verdict(values: list[float], ok: Callable[[float], bool], fmt: str) -> str:
    word = verdict_word([ok(v) for v in values])
    rounds = ", ".join(format(v, fmt) for v in values)
    return f"{format(statistics.median(values), fmt)} (rounds: {rounds}): **{word}**"
