"""wrk against one target at a time: the Lua script of one fixed request, one run's
``Sample`` (rates, percentiles, and the CPU per request of the process wrk talked to, from
/proc), and ``Case``: rounds of runs over several targets, in rotated order.

Used by gateway_overhead.py, batching.py and log_overhead.py; wrk itself must be installed
(``apt-get install wrk``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from local_processes import pinned_to


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


def paced(mean_gap_ms: float) -> str:
    """wrk's ``delay`` hook for a paced load: after each answer a connection waits a random
    gap (exponential, mean ``mean_gap_ms``) before its next request, so that N connections
    send N / (gap + latency) requests per second, in Poisson-like arrivals: about N / gap
    while the latency is small against the gap (wrk measures it from the send, without the
    gap), a little less for a slower target (the report shows each one's req/s). The
    generator is seeded alike for every run: each target gets the same sequence of gaps.
    wrk truncates a delay to whole milliseconds; adding 0.5 rounds it instead."""
    if not mean_gap_ms > 0:
        raise ValueError(f"a paced load needs a positive mean gap, got {mean_gap_ms} ms")
    return f"""
init = function(args)
  math.randomseed(1)
end
delay = function()
  return -math.log(1 - math.random()) * {mean_gap_ms:.3f} + 0.5
end
"""


def lua_script(
    method: str, body: str | None, headers: Mapping[str, str], *, mean_gap_ms: float | None = None
) -> str:
    """A wrk script for one fixed request, as fast as each connection is answered or, with
    ``mean_gap_ms``, paced (``paced``); ``done`` prints a machine-readable summary."""
    lines = [f'wrk.method = "{method}"']
    if body is not None:
        if "]]" in body:
            raise ValueError("body may not contain ']]' (Lua long string)")
        lines.append(f"wrk.body = [[{body}]]")
    lines += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
    pacing = "" if mean_gap_ms is None else paced(mean_gap_ms)
    return "\n".join(lines) + "\n" + pacing + _DONE


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


def connection_counts(text: str) -> list[int]:
    """``--connections`` and the like: "1,16,64"; "" and 0 name none."""
    counts = [int(c) for c in text.split(",") if c.strip() and c.strip() != "0"]
    if any(c < 1 for c in counts):
        raise argparse.ArgumentTypeError("connection counts are positive integers: 1,16,64")
    return counts


def rps(sample: Sample) -> float:
    return sample.rps


def p50_ms(sample: Sample) -> float:
    return sample.p50_ms


def p99_ms(sample: Sample) -> float:
    return sample.p99_ms


def cpu_ms(sample: Sample) -> float:
    return sample.cpu_ms


# --------------------------------------------------------------------------- rounds


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
    #: A paced case's offered load, requests per second (None: as fast as answered).
    offered_rps: float | None = None

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
