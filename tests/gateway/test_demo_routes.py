"""The routes ``driftgate up`` writes into a fresh gateway.yaml (``gateway.local``)."""

from __future__ import annotations

from pathlib import Path

import yaml

from gateway.local import DEMO_PER_TRY_TIMEOUT_S, write_default_config
from gateway.settings import GatewaySettings


def test_every_demo_route_limits_a_try_so_a_hung_replica_costs_seconds_not_the_budget(
    tmp_path: Path,
) -> None:
    """An SRE stopped a replica (SIGSTOP) under load: the requests already sent to it waited
    the route's whole 15 s budget and got 504, never retried on the healthy replica."""
    config = tmp_path / "gateway.yaml"
    write_default_config(config, 8000)

    settings = GatewaySettings.from_file(config)

    assert set(yaml.safe_load(config.read_text())["routes"]) == {"titanic", "iris"}
    for name, policy in settings.routes.items():
        assert policy.per_try_timeout_s == DEMO_PER_TRY_TIMEOUT_S, name
        assert policy.per_try_timeout_s < policy.timeout_s / 2, name  # room for a retry
