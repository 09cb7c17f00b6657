"""Real Prometheus and Alertmanager processes on loopback, and a webhook receiver.

The binaries are Debian's (``prometheus``, ``prometheus-alertmanager``); each run gets free
ports and its own temporary folder, and is always stopped. Nothing here touches the
packages' system services or their default ports.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.e2e.processes import free_port

ALERTMANAGER = "prometheus-alertmanager"  # Debian's name for the alertmanager binary


@dataclass
class Server:
    """A running Prometheus or Alertmanager."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class PrometheusAPI:
    """The parts of Prometheus' HTTP API the tests read (``/api/v1/...``)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.client = httpx.Client(base_url=server.url, timeout=10)

    def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        """The JSON answer of ``GET path``, whatever its status (errors are answers too)."""
        answer: dict[str, Any] = self.client.get(path, params=params).json()
        return answer

    def query(self, expr: str) -> dict[str, Any]:
        """An instant query: ``{"status": "success", "data": {"result": [...]}}`` or an error."""
        return self.get("/api/v1/query", {"query": expr})

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.get("/api/v1/alerts")["data"]["alerts"]
        return alerts

    def rules(self) -> list[dict[str, Any]]:
        groups = self.get("/api/v1/rules")["data"]["groups"]
        return [{**rule, "group": group["name"]} for group in groups for rule in group["rules"]]

    def targets(self) -> list[dict[str, Any]]:
        targets: list[dict[str, Any]] = self.get("/api/v1/targets")["data"]["activeTargets"]
        return targets

    def exemplars(self, expr: str, seconds: float) -> list[dict[str, Any]]:
        now = time.time()
        window = {"query": expr, "start": str(now - seconds), "end": str(now)}
        answer = self.get("/api/v1/query_exemplars", window)
        assert answer["status"] == "success", answer
        data: list[dict[str, Any]] = answer["data"]
        return data


def require_binary(name: str, install: str) -> str:
    """The binary's path; skip without it, or fail under ``CI=true`` (as tests/conftest.py)."""
    path = shutil.which(name)
    if path:
        return path
    reason = f"needs the '{name}' binary, which is not installed here: {install}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: a missing binary fails the run)")
    pytest.skip(reason)


@contextmanager
def _server(
    args: Sequence[str], port: int, log_path: Path, timeout_s: float = 30
) -> Iterator[Server]:
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            list(args), stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    server = Server(process, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"{args[0]} exited with {process.returncode}:\n{server.log()}")
            try:
                if httpx.get(server.url + "/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} not ready after {timeout_s}s:\n{server.log()}")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)


@contextmanager
def prometheus(config: dict[str, Any], workdir: Path) -> Iterator[PrometheusAPI]:
    """Prometheus with ``config``, exemplar storage on, its data under ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    args = [
        require_binary("prometheus", "apt-get install prometheus"),
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--enable-feature=exemplar-storage",
    ]
    with _server(args, port, workdir / "prometheus.log") as server:
        api = PrometheusAPI(server)
        try:
            yield api
        finally:
            api.client.close()


@contextmanager
def alertmanager(config: dict[str, Any], workdir: Path) -> Iterator[Server]:
    """Alertmanager with ``config``, clustering off, its state under ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "alertmanager.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    args = [
        require_binary(ALERTMANAGER, "apt-get install prometheus-alertmanager"),
        f"--config.file={config_path}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip port: a single instance
    ]
    with _server(args, port, workdir / "alertmanager.log") as server:
        yield server


def scrape_config(
    template: dict[str, Any],
    targets: dict[str, list[str]],
    rule_files: Sequence[Path],
    interval: str = "1s",
) -> dict[str, Any]:
    """``template`` (a prometheus.yml) scraping ``targets`` per job, every ``interval``.

    Every job of ``targets`` must exist in the template: the job names are part of what
    the rules rely on (``up{job=~"driftgate.*"}``). Alerting is left out.
    """
    config = {key: value for key, value in template.items() if key != "alerting"}
    config["global"] = {
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "evaluation_interval": interval,
    }
    config["rule_files"] = [str(path) for path in rule_files]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(targets) <= set(jobs), f"jobs {set(targets) - set(jobs)} not in the template"
    for name, addresses in targets.items():
        jobs[name]["static_configs"] = [{"targets": addresses}]
    config["scrape_configs"] = [jobs[name] for name in targets]
    return config


# -- a webhook receiver -----------------------------------------------------------------


@dataclass
class Webhook:
    """POSTs received by a loopback HTTP server: ``(path, JSON body)`` in arrival order."""

    url: str
    received: list[tuple[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def posts(self) -> list[tuple[str, Any]]:
        with self.lock:
            return list(self.received)


@contextmanager
def webhook_receiver() -> Iterator[Webhook]:
    webhook = Webhook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with webhook.lock:
                webhook.received.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    webhook.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="webhook", daemon=True)
    thread.start()
    try:
        yield webhook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
