#!/usr/bin/env python3
"""Sustained throughput of the prediction-log writer, and a DuckDB query over what it wrote.

    python bench/log_writer.py                    # ~10 s into a temporary store, print a table
    python bench/log_writer.py --seconds 5 --store /tmp/store --keep

The producer builds realistic records (5 inputs, 2 outputs, one model, the fields the
gateway fills, fresh values per row so that compression is not flattered) and submits
them in request-sized batches as fast as the writer takes them: it backs off while the
queue is over half full, so nothing is dropped and the rate measured is the writer's
(records on disk per second, from the first submit to the end of the final ``flush``),
with the producer's own cost in the same process (one GIL, as in the gateway) included.
Then ``run_sql`` times an aggregate over the store through the catalog's views, twice and
once more after ``compact``. Last, "writer only": records built beforehand are submitted
at once and timed until flushed, the writer's own capacity. Records per CPU second of the
process are printed too: on a shared machine they move less than records per second.
Bounded by ``--seconds`` (plus a few seconds); the temporary store is removed unless
``--keep``.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from monitoring.prediction_log import (
    LogSettings,
    PredictionLogWriter,
    PredictionRecord,
    compact,
    run_sql,
)

QUERY = """SELECT version, role, count(*) AS n, avg(in_age) AS age, avg(out_probability) AS p,
       quantile_cont(latency_s, 0.99) AS p99
FROM predictions WHERE model = 'titanic' GROUP BY ALL ORDER BY ALL"""


class RecordFactory:
    """Realistic prediction records: fresh values per row, drawn from pre-computed pools."""

    POOL = 1 << 16

    def __init__(self, seed: int = 7) -> None:
        rng = random.Random(seed)
        n = self.POOL
        self.ages = [round(rng.uniform(1, 80), 1) for _ in range(n)]
        self.fares = [round(rng.lognormvariate(3, 1), 4) for _ in range(n)]
        self.probabilities = [rng.random() for _ in range(n)]
        self.latencies = [rng.uniform(0.001, 0.02) for _ in range(n)]
        self.traces = [f"{rng.getrandbits(128):032x}" for _ in range(n)]
        self.small = [rng.randrange(1 << 30) for _ in range(n)]

    def request(self, serial: int, rows: int) -> list[PredictionRecord]:
        request_id = f"req-{serial:012d}"
        now = datetime.now(UTC)
        trace = self.traces[serial % self.POOL]
        records = []
        for row in range(rows):
            k = (serial * rows + row) * 7919 % self.POOL
            bits = self.small[k]
            records.append(
                PredictionRecord(
                    request_id=request_id,
                    row=row,
                    timestamp=now,
                    route="titanic",
                    arm="canary" if bits & 1 else "stable",
                    role="shadow" if bits & 6 == 6 else "primary",
                    model="titanic",
                    version="2" if bits & 1 else "1",
                    replica="http://127.0.0.1:8001",
                    dialect="v2",
                    status=200,
                    latency_s=self.latencies[k],
                    trace_id=trace,
                    inputs={
                        "pclass": 1 + (bits >> 3) % 3,
                        "sex": "male" if bits & 32 else "female",
                        "age": self.ages[k],
                        "fare": self.fares[k],
                        "embarked": "SCQ"[(bits >> 6) % 3],
                    },
                    outputs={"label": (bits >> 8) & 1, "probability": self.probabilities[k]},
                )
            )
        return records


def produce(writer: PredictionLogWriter, seconds: float, rows_per_request: int) -> int:
    """Submit requests for ``seconds``; returns the number of records accepted."""
    factory = RecordFactory()
    half = writer.settings.max_queue // 2
    accepted = 0
    serial = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if writer.queue_depth > half:
            time.sleep(0.001)
            continue
        if writer.submit(factory.request(serial, rows_per_request)):
            accepted += rows_per_request
        serial += 1
    return accepted


def drain(store: Path, records: int, rows_per_request: int) -> float:
    """Writer only: pre-built records submitted at once; records/s until they are on disk."""
    factory = RecordFactory(seed=11)
    requests = [factory.request(n, rows_per_request) for n in range(records // rows_per_request)]
    writer = PredictionLogWriter(store, LogSettings(store=str(store), max_queue=records + 1))
    writer.start()
    started = time.perf_counter()
    for request in requests:
        writer.submit(request)
    writer.flush(timeout_s=120)
    elapsed = time.perf_counter() - started
    writer.close()
    return len(requests) * rows_per_request / elapsed


def timed_query(store: Path) -> tuple[float, int]:
    started = time.perf_counter()
    result = run_sql(store, QUERY)
    return time.perf_counter() - started, sum(row[2] for row in result.rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rows-per-request", type=int, default=4)
    parser.add_argument("--drain-records", type=int, default=200_000)
    parser.add_argument("--store", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep the store afterwards")
    args = parser.parse_args()
    base = args.store or Path(tempfile.mkdtemp(prefix="driftgate-bench-"))
    store = base / "sustained"
    settings = LogSettings(store=str(store))
    writer = PredictionLogWriter(store, settings)
    writer.start()
    started, cpu_started = time.perf_counter(), time.process_time()
    produce(writer, args.seconds, args.rows_per_request)
    writer.flush(timeout_s=120)
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    writer.close()
    written = writer.metrics.records.labels("predictions", "written")._value.get()
    dropped = writer.metrics.records.labels("predictions", "dropped")._value.get()
    segments = writer.metrics.segments.labels("predictions")._value.get()
    size = sum(f.stat().st_size for f in store.rglob("*.parquet"))
    cold, counted = timed_query(store)
    warm, _ = timed_query(store)
    report = compact(store, settings)
    compacted, _ = timed_query(store)
    drained = drain(base / "drain", args.drain_records, args.rows_per_request)
    rows = [
        ("sustained: records written", f"{written:,.0f} in {elapsed:.2f} s"),
        ("sustained: records dropped", f"{dropped:,.0f}"),
        ("sustained: throughput (records/s)", f"{written / elapsed:,.0f}"),
        ("sustained: per CPU second of the process", f"{written / cpu:,.0f} ({cpu:.1f} s CPU)"),
        ("sustained: segments", f"{segments:.0f}"),
        ("bytes on disk", f"{size:,} ({size / max(written, 1):.1f} B/record)"),
        ("query over the store (s)", f"{cold:.3f} first, {warm:.3f} again"),
        (f"query after compacting {report.segments_removed} segments (s)", f"{compacted:.3f}"),
        (f"writer only: {args.drain_records:,} pre-built (records/s)", f"{drained:,.0f}"),
    ]
    width = max(len(name) for name, _ in rows)
    load = os.getloadavg()[0]
    print(
        f"prediction-log writer, {os.cpu_count()} CPUs (load {load:.1f} at the end), "
        f"{args.rows_per_request} rows/request"
    )
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    if args.store is None and not args.keep:
        shutil.rmtree(base)
    return 0 if counted == written else 1


if __name__ == "__main__":
    sys.exit(main())
