"""A real ``driftgate up`` under steady traffic that exercises every series the panels use.

One system for the tests of this package (only started when one asks for it): the demo
repository plus a broken ``titanic`` version 7 (its ONNX file is missing, so it fails to
load and is never ready), and four routes added through the admin API:

- ``titanic_next``: primary titanic/7, fallback titanic/1: every request is a fallback;
- ``titanic_broken``: primary titanic/7 and nothing else: every request answers 503;
- ``titanic_shadowed``: primary titanic/1, shadow titanic/2 compared on ``survived``;
- ``titanic_canary``: primary titanic/1 with a canary of titanic/7 backed by a fallback to
  titanic/1: clients get 200 throughout, and the canary analysis rolls it back within
  seconds (weight and decision metrics, the rollback alert).

A background thread then sends, twice a second until the system stops: titanic requests
from 40 subjects, four a round (both arms of the demo A/B split), in all three dialects;
iris (the demo's shadowed route); diabetes (the demo's batching model, for the batch queue
panel), and diabetes with a feature near the FP32 maximum, which overflows its dense layers
into a NaN or infinite ``progression`` that the runtime answers as null with a 200 (for the
non-finite outputs panel and alert); the four routes above; a bad input (400), a request
without a token (401) and one whose token lacks the scope (403).

The titanic versions get their reference profiles from the training set (as `driftgate
demo build` does) and the drift job runs every two seconds over the last 60 rows: the
traffic's one passenger, sent again and again, is far from the training set, so the drift
gauges (and the drift alert) have data within seconds; the explain job runs every three
seconds (permutation importance on a small sample), for the importance gauges. Both run in
``up``'s jobs process, whose /metrics (job runs by outcome) is a scrape target too.
"""

from __future__ import annotations

import shutil
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from driftgate.reference import build_reference
from gateway.local import write_default_config
from runtime.demo.titanic_data import DATA_DIR, FILES
from tests.e2e.gateway_system import LocalSystem, local_system, wait_for
from tests.e2e.processes import free_port

PASSENGER = {"fare": 7, "sex": "male", "embarked": "Q", "pclass": "3", "age": 27}
IRIS = {"features": [5.1, 3.5, 1.4, 0.2]}
#: Ten scaled features of scikit-learn's diabetes set: the demo's batching model.
DIABETES = {"features": [0.04, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.02]}
#: Accepted (below the FP32 maximum), and past it inside the model: a non-finite answer.
DIABETES_OVERFLOW = {"features": [3e38, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]}
SUBJECTS = [f"user-{i}" for i in range(40)]
ROUTES = {
    "titanic_next": {
        "primary": {"model": "titanic", "version": "7"},
        "fallback": [{"model": "titanic", "version": "1"}],
        "circuit_breaker": None,  # keep calling the broken version: steady retries too
    },
    "titanic_broken": {"primary": {"model": "titanic", "version": "7"}, "circuit_breaker": None},
    "titanic_canary": {
        "primary": {"model": "titanic", "version": "1"},
        "fallback": [{"model": "titanic", "version": "1"}],
        "canary": {
            "target": {"model": "titanic", "version": "7"},
            "steps": [50, 100],
            "min_requests": 3,
            "sticky": {"by": "random"},
        },
        "circuit_breaker": None,
    },
    "titanic_shadowed": {
        "primary": {"model": "titanic", "version": "1"},
        "shadow": [
            {
                "target": {"model": "titanic", "version": "2"},
                "percent": 100,
                "compare": {"kind": "class", "output": "survived"},
            }
        ],
    },
}


def _oip(passenger: dict[str, Any]) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": name,
                "shape": [1, 1],
                "datatype": "BYTES" if isinstance(value, str) else "FP32",
                "data": [value],
            }
            for name, value in passenger.items()
        ]
    }


@dataclass
class Traffic:
    """What the background load got: ``(what, status)`` counts, and the arms it saw."""

    outcomes: Counter[tuple[str, int | str]] = field(default_factory=Counter)
    arms: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, what: str, response: httpx.Response) -> None:
        with self.lock:
            self.outcomes[what, response.status_code] += 1
            if what == "titanic" and response.status_code == 200:
                self.arms.add(response.headers["x-driftgate-arm"])

    def seen(self) -> dict[str, set[int | str]]:
        with self.lock:
            seen: dict[str, set[int | str]] = {}
            for what, status in self.outcomes:
                seen.setdefault(what, set()).add(status)
            return seen


@dataclass
class ObservedSystem:
    system: LocalSystem
    traffic: Traffic

    def targets(self) -> dict[str, list[str]]:
        """Scrape targets per job name of dashboards/prometheus/prometheus.yml."""
        return {
            "driftgate-gateway": [self.system.url.removeprefix("http://")],
            "driftgate-runtime": [f"127.0.0.1:{port}" for port in self.system.runtime_ports],
            "driftgate-jobs": [f"127.0.0.1:{self.jobs_metrics_port()}"],
        }

    def jobs_metrics_port(self) -> int:
        """Where ``driftgate up`` had its jobs process serve /metrics (--jobs-metrics-port)."""
        command = self.system.process.process.args
        assert isinstance(command, list), command
        args = [str(arg) for arg in command]
        return int(args[args.index("--jobs-metrics-port") + 1])


ARMS = {"stable", "canary"}

#: What each kind of request must answer, checked before any test uses the system.
EXPECTED = {
    "titanic": {200},
    "titanic tfserving": {200},
    "titanic v2": {200},
    "iris": {200},
    "titanic_next": {200},
    "titanic_broken": {503},
    "titanic_shadowed": {200},
    "titanic_canary": {200},
    "diabetes": {200},
    "diabetes overflow": {200},
    "bad input": {400},
    "no token": {401},
    "wrong scope": {403},
}


def _send_forever(system: LocalSystem, traffic: Traffic, stop: threading.Event) -> None:
    tokens = {subject: system.token(subject, "predict") for subject in SUBJECTS}
    iris_only = system.token("iris-app", "predict:iris")
    eval_titanic = "/v1/models/titanic/eval"
    with httpx.Client(base_url=system.url, timeout=15) as client:
        index = 0
        while not stop.is_set():
            # Four subjects a round: every subject (and so both arms) within ten rounds.
            subjects = [SUBJECTS[(4 * index + i) % len(SUBJECTS)] for i in range(4)]
            auths = [{"authorization": f"Bearer {tokens[s]}"} for s in subjects]
            auth = auths[0]
            requests: list[tuple[str, str, dict[str, Any], dict[str, str]]] = [
                *(("titanic", eval_titanic, PASSENGER, a) for a in auths),
                ("iris", "/v1/models/iris/eval", IRIS, auth),
                ("diabetes", "/v1/models/diabetes/eval", DIABETES, auth),
                ("diabetes overflow", "/v1/models/diabetes/eval", DIABETES_OVERFLOW, auth),
                ("titanic_next", "/v1/models/titanic_next/eval", PASSENGER, auth),
                ("titanic_broken", "/v1/models/titanic_broken/eval", PASSENGER, auth),
                ("titanic_shadowed", "/v1/models/titanic_shadowed/eval", PASSENGER, auth),
                ("titanic_canary", "/v1/models/titanic_canary/eval", PASSENGER, auth),
                ("bad input", eval_titanic, {"fare": "x"}, auth),
                ("no token", eval_titanic, PASSENGER, {}),
                ("wrong scope", eval_titanic, PASSENGER, {"authorization": f"Bearer {iris_only}"}),
            ]
            if index % 4 == 0:
                requests.append(
                    (
                        "titanic tfserving",
                        "/v1/models/titanic:predict",
                        {"instances": [PASSENGER]},
                        auth,
                    )
                )
                requests.append(("titanic v2", "/v2/models/titanic/infer", _oip(PASSENGER), auth))
            for what, path, body, headers in requests:
                try:
                    traffic.record(what, client.post(path, json=body, headers=headers))
                except httpx.HTTPError as exc:
                    with traffic.lock:
                        traffic.outcomes[what, type(exc).__name__] += 1
            index += 1
            stop.wait(0.5)


@contextmanager
def observed_system(demo_repository: Path, workdir: Path) -> Iterator[ObservedSystem]:
    """``driftgate up`` on a copy of ``demo_repository`` plus titanic/7, under traffic."""
    home = workdir / "home"
    shutil.copytree(demo_repository, home / "models")
    broken = home / "models" / "titanic" / "7"
    broken.mkdir()
    shutil.copy(demo_repository / "titanic" / "1" / "pipeline.yaml", broken)  # no .onnx
    for version in ("1", "2"):
        training = DATA_DIR / FILES["reference"]
        build_reference(home / "models", "titanic", version, training, label="Survived")
    config = home / "gateway.yaml"
    write_default_config(config, free_port())
    document = yaml.safe_load(config.read_text())
    document["drift"].update({"interval_s": 2, "window": {"rows": 60}, "min_rows": 30})
    explain = {"interval_s": 3, "window": {"rows": 60}, "rows": 30, "min_rows": 20}
    # Permutation alone (one predict call) and a generous limit: on a loaded CI machine a
    # tight one left every run skipped, and the importance panels empty.
    explain.update({"methods": ["permutation"], "time_limit_s": 60})
    document["explain"].update(explain)
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    with local_system(home, workdir / "up.log") as system:
        with system.client("ops", "admin") as admin:
            for name, policy in ROUTES.items():
                response = admin.put(f"/admin/routes/{name}", json=policy)
                assert response.status_code == 200, response.text
        traffic = Traffic()
        stop = threading.Event()
        thread = threading.Thread(
            target=_send_forever, args=(system, traffic, stop), name="traffic", daemon=True
        )
        thread.start()
        try:
            wait_for(
                lambda: set(traffic.seen()) >= set(EXPECTED) and traffic.arms == ARMS,
                30,
                "every kind of request answered, and both titanic arms",
            )
            assert traffic.seen() == EXPECTED, traffic.outcomes
            yield ObservedSystem(system, traffic)
        finally:
            stop.set()
            thread.join(timeout=30)
