"""Drift end to end: traffic through ``driftgate up``, a shift injected halfway, and every
output of the drift job seen from outside.

``driftgate up`` runs with the demo's titanic references (built from the bundled training
set, as ``driftgate demo build`` does) and a drift job every second over the last 400
logged rows. Passengers drawn from the training set go through the gateway first: the
job checks them and flags nothing. Then the same passengers with their fare multiplied by
four: the job flags ``fare`` (and only input features that were shifted), the gauge on
the gateway's /metrics goes to 1, the HTML report under /reports/ shows the shift, the
rows are in ``drift_results``, and a real Prometheus scraping the gateway with the
project's alert rules fires DriftgateDriftDetected for ``fare``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from driftgate.reference import build_reference
from gateway.local import write_default_config
from monitoring.job_results import read_latest
from runtime.demo.titanic_data import DATA_DIR, FILES, load_titanic
from tests.dashboards.artifacts import PROMETHEUS_CONFIG, load_yaml, rule_files
from tests.dashboards.stack import prometheus, scrape_config
from tests.e2e.gateway_system import LocalSystem, local_system, wait_for
from tests.e2e.processes import free_port

pytestmark = pytest.mark.e2e

WINDOW_ROWS = 400
ROWS_PER_REQUEST = 50
SHIFTED = "fare"


@dataclass
class DriftSystem:
    system: LocalSystem
    store: Path


def _passengers(count: int, seed: int, fare_factor: float = 1.0) -> dict[str, list[list[Any]]]:
    """``count`` training-set passengers (drawn with replacement) in eval's column form."""
    data = load_titanic("reference")
    rows = np.random.default_rng(seed).integers(0, len(data), size=count)
    columns: dict[str, list[list[Any]]] = {}
    for name, values in data.columns.items():
        picked = values[rows]
        if name == "fare":
            picked = picked * fare_factor
        columns[name] = [[_json_value(v)] for v in picked]
    return columns


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and np.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _send(system: LocalSystem, batches: int, seed: int, fare_factor: float = 1.0) -> None:
    with system.client("drift-app", "predict") as client:
        for batch in range(batches):
            body = _passengers(ROWS_PER_REQUEST, seed + batch, fare_factor)
            response = client.post("/v1/models/titanic/eval", json=body)
            assert response.status_code == 200, response.text


def _titanic_runs(store: Path) -> list[dict[str, Any]]:
    return [e for e in read_latest(store, "drift").values() if e["model"] == "titanic"]


@pytest.fixture(scope="module")
def drift_system(
    demo_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DriftSystem]:
    home = tmp_path_factory.mktemp("drift-up")
    models = home / "models"
    shutil.copytree(demo_repository, models)
    for version in ("1", "2"):
        build_reference(models, "titanic", version, DATA_DIR / FILES["reference"], label="Survived")
    config = home / "gateway.yaml"
    write_default_config(config, free_port())
    document = yaml.safe_load(config.read_text())
    document["drift"].update(
        {"interval_s": 1, "window": {"rows": WINDOW_ROWS}, "min_rows": WINDOW_ROWS, "alpha": 0.01}
    )
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    with local_system(home, home / "up.log") as system:
        yield DriftSystem(system, home / "store")


def _checked_after(store: Path, rows_logged: int) -> list[dict[str, Any]]:
    """The titanic runs whose window ends after the latest ``rows_logged`` rows arrived."""
    runs = _titanic_runs(store)
    return [r for r in runs if r["window"]["rows"] >= WINDOW_ROWS] if rows_logged else runs


def test_no_drift_is_flagged_on_traffic_like_the_training_set(drift_system: DriftSystem) -> None:
    _send(drift_system.system, batches=WINDOW_ROWS * 2 // ROWS_PER_REQUEST, seed=1)
    runs = wait_for(
        lambda: _checked_after(drift_system.store, WINDOW_ROWS),
        60,
        "a drift run over a full window of titanic traffic",
    )
    drifted = [(r["version"], f["feature"]) for r in runs for f in r["features"] if f["drifted"]]
    assert drifted == [], runs


def test_a_shifted_feature_is_flagged_with_every_output(drift_system: DriftSystem) -> None:
    system, store = drift_system.system, drift_system.store
    _send(system, batches=WINDOW_ROWS * 2 // ROWS_PER_REQUEST, seed=100, fare_factor=4.0)

    def fare_drifted() -> list[dict[str, Any]]:
        return [
            run
            for run in _titanic_runs(store)
            if any(f["feature"] == SHIFTED and f["drifted"] for f in run["features"])
        ]

    runs = wait_for(fare_drifted, 60, f"the drift job flagging {SHIFTED}")
    run = runs[0]
    inputs_drifted = {
        f["feature"]
        for f in run["features"]
        if f["drifted"] and f["feature"] in ("fare", "age", "sex", "embarked", "pclass")
    }
    assert inputs_drifted == {SHIFTED}, run

    with system.client("oncall", "read:logs") as reader:
        metrics = reader.get("/metrics").text
        gauge = (
            f'driftgate_drift_detected{{arm="{run["arm"]}",feature="{SHIFTED}",'
            f'model="titanic",test='
        )
        assert any(
            line.startswith(gauge) and line.endswith(" 1.0") for line in metrics.splitlines()
        ), metrics
        report = reader.get(run["report"])
        assert report.status_code == 200
        assert "text/html" in report.headers["content-type"]
        assert SHIFTED in report.text and "<svg" in report.text
        latest = reader.get(f"/reports/drift/titanic/{run['version']}/latest.html")
        assert latest.status_code == 200
        rows = reader.post(
            "/admin/sql",
            json={
                "sql": "select feature, statistic, score, threshold, drifted, sql "
                "from drift_results where model = 'titanic' and drifted"
            },
        ).json()["rows"]
        assert any(row[0] == SHIFTED for row in rows), rows
        # The stored SQL reproduces the window's numbers.
        window_sql = next(row[5] for row in rows if row[0] == SHIFTED)
        again = reader.post("/admin/sql", json={"sql": window_sql})
        assert again.status_code == 200, again.text

    with httpx.Client(base_url=system.url, timeout=10) as anonymous:
        assert anonymous.get(run["report"]).status_code == 401


@pytest.mark.prometheus
def test_the_drift_alert_fires_in_prometheus(drift_system: DriftSystem, tmp_path: Path) -> None:
    system = drift_system.system
    wait_for(
        lambda: any(f["drifted"] for r in _titanic_runs(drift_system.store) for f in r["features"]),
        90,
        "a drifted feature (after the shifted traffic)",
    )
    # The rules as shipped, but without their `for:` wait (promtool tests that part).
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    copies = []
    for path in rule_files():
        document = load_yaml(path)
        for group in document["groups"]:
            for rule in group["rules"]:
                rule.pop("for", None)
        copy = rules_dir / path.name
        copy.write_text(yaml.safe_dump(document, sort_keys=False))
        copies.append(copy)
    target = system.url.removeprefix("http://")
    config = scrape_config(load_yaml(PROMETHEUS_CONFIG), {"driftgate-gateway": [target]}, copies)
    with prometheus(config, tmp_path / "prometheus") as prom:

        def firing() -> list[dict[str, Any]]:
            return [
                a
                for a in prom.alerts()
                if a["labels"]["alertname"] == "DriftgateDriftDetected"
                and a["labels"].get("feature") == SHIFTED
                and a["state"] == "firing"
            ]

        alerts = wait_for(firing, 60, "DriftgateDriftDetected firing for fare")
    alert = alerts[0]
    assert alert["labels"]["model"] == "titanic"
    assert "/reports/drift/titanic/" in alert["annotations"]["report"]
    assert "drift_results" in alert["annotations"]["sql"]
