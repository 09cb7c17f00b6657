"""A small runtime for the explain job's tests, and the traffic it answers, in a real store.

``Runtime`` speaks the two calls the job makes (``describe`` and ``eval`` in the
runtime's column form) for model linear6: six numeric inputs whose probability is a
logistic function of their weighted sum (``probability``), on a free loopback port, with
switches that make it trickle its answers or wobble them by an ulp. ``log_traffic`` logs
200 rows of it with the real ``PredictionLogWriter``; ``explain_job`` builds the job over
the store and the runtime. The fixtures are in ``conftest.py``.
"""

from __future__ import annotations

import json
import math
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from explain.job import ExplainJob
from explain.settings import ExplainJobSettings
from monitoring.prediction_log import LogSettings, PredictionLogWriter, PredictionRecord

DOC = Path(__file__).resolve().parents[2] / "docs" / "explain.md"


NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


WEIGHTS = {"f0": 2.0, "f1": -1.0, "f2": 0.5, "f3": 0.0, "f4": 1.5, "f5": -0.5}


PATH = "/v1/models/linear6/versions/1"


def probability(inputs: dict[str, Any]) -> float:
    total = sum(weight * (inputs[name] or 0.0) for name, weight in WEIGHTS.items())
    return 1.0 / (1.0 + math.exp(-total))


class Runtime:
    """``describe`` and ``eval`` of model linear6 version 1 (and of the other ``versions``
    added), on a free loopback port."""

    def __init__(self) -> None:
        describe = {
            "model": "linear6",
            "version": "1",
            "inputs": [{"name": n, "datatype": "FP64", "shape": [-1]} for n in WEIGHTS],
            "outputs": [{"name": "probability", "datatype": "FP64", "shape": [-1]}],
        }
        self.versions = {"1"}
        served = self.versions
        #: Set: eval answers trickle in, a byte every 50 ms (each read is quick, the call endless).
        self.trickle = threading.Event()
        #: Set: the same for the header lines of eval answers.
        self.trickle_headers = threading.Event()
        #: Set once an eval answer has started to trickle.
        self.trickling = threading.Event()
        #: Set: every other row's answer is one ulp higher, as a vectorised runtime's
        #: answers to the same row can differ by batch position.
        self.wobble = threading.Event()
        trickle, trickle_headers, trickling = self.trickle, self.trickle_headers, self.trickling
        wobble = self.wobble

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                known = {f"{PATH[:-1]}{v}/describe" for v in served}
                self._answer(200 if self.path in known else 404, describe)

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if trickle.is_set():
                    self._trickle()
                    return
                if trickle_headers.is_set():
                    self._trickle_headers()
                    return
                columns = list(body.values())
                rows = [
                    dict(zip(body, values, strict=True)) for values in zip(*columns, strict=True)
                ]
                answers = [probability(row) for row in rows]
                if wobble.is_set():
                    answers = [
                        math.nextafter(p, 2.0) if i % 2 else p for i, p in enumerate(answers)
                    ]
                outputs = {"probability": answers}
                self._answer(200, {"model": "linear6", "version": "1", "outputs": outputs})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _trickle(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                self._send_slowly(1000)

            def _trickle_headers(self) -> None:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                self._send_slowly(1000)

            def _send_slowly(self, size: int) -> None:
                trickling.set()
                try:
                    for _ in range(size):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.05)
                except OSError:  # the client gave up
                    pass

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


def log_traffic(store: Path, version: str, *, same: dict[str, float] | None = None) -> None:
    """200 rows of linear6 ``version`` in the minutes before ``NOW``: random inputs, or
    ``same`` in every row (one request sent again and again)."""
    rng = np.random.default_rng(0)
    writer = PredictionLogWriter(store, LogSettings(store=str(store)), CollectorRegistry())
    writer.start()
    records = []
    for i in range(200):
        inputs = dict(same) if same else {name: float(rng.normal()) for name in WEIGHTS}
        records.append(
            PredictionRecord(
                request_id=f"r-{version}-{i}",
                row=0,
                timestamp=NOW - timedelta(seconds=300 - i),
                route="linear6",
                arm="a",
                role="primary",
                model="linear6",
                version=version,
                replica="http://127.0.0.1:8001",
                dialect="simple",
                status=200,
                latency_s=0.002,
                trace_id=None,
                inputs=inputs,
                outputs={"probability": probability(inputs)},
            )
        )
    writer.submit(records)
    writer.close()


def explain_job(
    store: Path, runtime: Runtime, registry: CollectorRegistry | None = None, **overrides: Any
) -> ExplainJob:
    settings = ExplainJobSettings(
        rows=20, min_rows=10, background_rows=5, repeats=2, time_limit_s=60, **overrides
    )
    return ExplainJob(
        store,
        settings,
        store.parent / "models",
        [runtime.url],
        trace.NoOpTracer(),
        clock=lambda: NOW,
        registry=registry,
    )
