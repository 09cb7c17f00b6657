"""Drift panels count what on-call means, however many gateways export the results.

Every gateway exports the drift job's latest results from the shared store, so a panel
that sums ``driftgate_drift_detected`` as scraped counts each drifted feature once per
gateway. These tests run the real queries of drift.json (variables filled in as the e2e
test does) in promtool's PromQL engine over the series two gateways export, with a
feature drifted in both arms of an A/B split, and check what the panels show.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.dashboards.artifacts import dashboard_files, panel_queries, substitute
from tests.dashboards.stack import require_binary

pytestmark = pytest.mark.prometheus

GATEWAYS = ["10.0.0.3:8000", "10.0.0.4:8000"]
#: (arm, feature, test, drifted) of titanic version 1's latest drift runs.
RESULTS = [
    ("stable", "age", "wasserstein", 1),
    ("canary", "age", "wasserstein", 1),
    ("stable", "fare", "wasserstein", 0),
    ("canary", "fare", "wasserstein", 0),
]


def drift_query(title: str) -> str:
    (path,) = [p for p in dashboard_files() if p.name == "drift.json"]
    (query,) = [q for q in panel_queries(path) if q.panel == title]
    return substitute(query.expr)


def series_of_two_gateways() -> list[dict[str, str]]:
    return [
        {
            "series": (
                f'driftgate_drift_detected{{job="driftgate-gateway", instance="{gateway}", '
                f'model="titanic", version="1", arm="{arm}", feature="{feature}", '
                f'test="{test}"}}'
            ),
            "values": f"{drifted}x5",
        }
        for gateway in GATEWAYS
        for arm, feature, test, drifted in RESULTS
    ]


def promql_holds(tmp_path: Path, expr: str, samples: list[dict[str, Any]]) -> None:
    """``expr`` over the two gateways' series gives exactly ``samples`` (promtool)."""
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series_of_two_gateways(),
                "promql_expr_test": [{"expr": expr, "eval_time": "3m", "exp_samples": samples}],
            }
        ],
    }
    path = tmp_path / "panel_test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    promtool = require_binary("promtool", "apt-get install prometheus")
    done = subprocess.run(
        [promtool, "test", "rules", path.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"{expr}\n{done.stdout}{done.stderr}"


def test_features_drifted_now_counts_a_feature_once(tmp_path: Path) -> None:
    # age drifted in both arms, exported by both gateways: one feature.
    samples = [{"labels": '{model="titanic", version="1"}', "value": 1}]
    promql_holds(tmp_path, drift_query("Features drifted now"), samples)


def test_drifted_features_lists_each_arm_once(tmp_path: Path) -> None:
    samples = [
        {
            "labels": (
                f'{{job="driftgate-gateway", model="titanic", version="1", arm="{arm}", '
                'feature="age", test="wasserstein"}'
            ),
            "value": 1,
        }
        for arm in ("canary", "stable")
    ]
    promql_holds(tmp_path, drift_query("Drifted features"), samples)
