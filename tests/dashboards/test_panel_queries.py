"""Panels count what on-call means, however many gateways export a series.

Every gateway exports the drift job's latest results from the shared store, so a panel
that sums ``driftgate_drift_detected`` as scraped counts each drifted feature once per
gateway; so would a panel on the store's quarantined segments. These tests run the real
queries of the dashboards (variables filled in as the e2e test does) in promtool's PromQL
engine over the series two gateways export, with a feature drifted in both arms of an
A/B split, and check what the panels show; the background jobs' panels likewise, over
the series of the jobs process and two gateways.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitoring.job_runner import DURATION_BUCKETS as JOB_DURATION_BUCKETS
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


def panel_query(dashboard: str, title: str, ref_id: str = "A") -> str:
    (path,) = [p for p in dashboard_files() if p.name == dashboard]
    (query,) = [q for q in panel_queries(path) if q.panel == title and q.ref_id == ref_id]
    return substitute(query.expr)


def drift_query(title: str) -> str:
    return panel_query("drift.json", title)


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


def promql_holds(
    tmp_path: Path,
    expr: str,
    samples: list[dict[str, Any]],
    series: list[dict[str, str]] | None = None,
    eval_time: str = "3m",
) -> None:
    """``expr`` over ``series`` (by default the two gateways' drift results) gives exactly
    ``samples`` at ``eval_time`` (promtool)."""
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series_of_two_gateways() if series is None else series,
                "promql_expr_test": [
                    {"expr": expr, "eval_time": eval_time, "exp_samples": samples}
                ],
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


def test_quarantined_segments_count_a_shared_store_once(tmp_path: Path) -> None:
    # Both gateways count the same .quarantine/ folder of the store they share.
    series = [
        {
            "series": (
                f'driftgate_log_quarantined_segments{{job="driftgate-gateway", '
                f'instance="{gateway}"}}'
            ),
            "values": "2x5",
        }
        for gateway in GATEWAYS
    ]
    query = panel_query("overview.json", "Damaged segments set aside in the store (.quarantine/)")
    promql_holds(tmp_path, query, [{"labels": '{job="driftgate-gateway"}', "value": 2}], series)


#: (scrape job, instance, scheduler job) of the background jobs' series.
JOBS = [
    ("driftgate-jobs", "10.0.0.5:9464", "drift"),
    ("driftgate-gateway", GATEWAYS[0], "log_upkeep"),
    ("driftgate-gateway", GATEWAYS[1], "log_upkeep"),
]
DURATION_BUCKETS = (*(str(le) for le in JOB_DURATION_BUCKETS), "+Inf")


def job_series(job: str, instance: str, name: str, slow_from: str) -> list[dict[str, str]]:
    """A run a minute, each taking between ``slow_from`` and the next bucket's bound, and
    the last good one at 120 s (none yet on the second gateway, started since)."""
    labels = f'job="{job}", instance="{instance}", exported_job="{name}"'
    buckets = [
        {
            "series": f'driftgate_job_duration_seconds_bucket{{{labels}, le="{le}"}}',
            "values": "0+1x70" if float(le) > float(slow_from) else "0x70",
        }
        for le in DURATION_BUCKETS
    ]
    good = "0x70" if instance == GATEWAYS[1] else "120x70"
    success = f"driftgate_job_last_success_timestamp_seconds{{{labels}}}"
    return [*buckets, {"series": success, "values": good}]


def jobs_series() -> list[dict[str, str]]:
    slow_from = {"drift": "1200", "log_upkeep": "0.5"}  # drift 20-30 min, log_upkeep 0.5-1 s
    return [s for job, ins, name in JOBS for s in job_series(job, ins, name, slow_from[name])]


@pytest.mark.parametrize(("ref_id", "quantile"), [("A", 0.5), ("B", 0.99)])
def test_job_duration_quantiles_are_per_scheduler_job(
    tmp_path: Path, ref_id: str, quantile: float
) -> None:
    # Interpolated in the bucket every run falls in, to the millisecond: a drift run over a
    # large window, of 20 to 30 minutes, reads as such (not as the 300 s bucket's bound).
    query = panel_query(
        "drift.json", "Background job duration p50 / p99 over the past hour by job", ref_id
    )
    samples = [
        {"labels": '{exported_job="drift"}', "value": round(1200 + 600 * quantile, 3)},
        {"labels": '{exported_job="log_upkeep"}', "value": round(0.5 + 0.5 * quantile, 3)},
    ]
    promql_holds(tmp_path, f"round({query}, 0.001)", samples, jobs_series(), eval_time="65m")


def test_time_since_a_good_run_leaves_out_a_job_not_run_yet(tmp_path: Path) -> None:
    query = panel_query("drift.json", "Time since each job's latest good run")
    samples = [
        {"labels": f'{{exported_job="{name}", instance="{instance}"}}', "value": 65 * 60 - 120}
        for _, instance, name in JOBS[:2]
    ]
    promql_holds(tmp_path, query, samples, jobs_series(), eval_time="65m")
