"""A real ``driftgate gateway`` that finds its replica by DNS, in front of a real runtime.

``localhost`` is the name: the system resolver gives its loopback address(es), one of them
the shared runtime's. An address where nothing listens (``::1`` on some machines) fails
its health check and gets no traffic.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.processes import RunningProcess, driftgate_process, free_port

pytestmark = pytest.mark.e2e

PASSENGER = {"fare": 7, "sex": "male", "embarked": "Q", "pclass": "3", "age": 27}


def test_a_gateway_serves_through_the_replicas_a_dns_name_resolves_to(
    runtime_server: RunningProcess, tmp_path: Path
) -> None:
    runtime_port = int(runtime_server.url.rsplit(":", 1)[1])
    port = free_port()
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": {"host": "127.0.0.1", "port": port},
                "replicas": {"dns": "localhost", "port": runtime_port, "interval_s": 1},
                "auth": {"enabled": False},
            }
        )
    )
    args = ["gateway", "--config", str(config)]

    with driftgate_process(args, port, log_path=tmp_path / "gateway.log") as gateway:
        answer = httpx.post(f"{gateway.url}/v1/models/titanic/eval", json=PASSENGER, timeout=10)
        listed = httpx.get(f"{gateway.url}/admin/replicas", timeout=5).json()
        metrics = httpx.get(f"{gateway.url}/metrics", timeout=5).text

    assert answer.status_code == 200, answer.text
    assert answer.json()["model"] == "titanic"
    replicas = {r["url"]: r for r in listed["replicas"]}
    assert replicas[f"http://127.0.0.1:{runtime_port}"]["healthy"] is True
    assert listed["discovery"]["dns"] == "localhost"
    assert listed["discovery"]["last_error"] is None
    assert 'driftgate_replica_discoveries_total{outcome="changed"} 1.0' in metrics
    assert 'driftgate_replica_discoveries_total{outcome="unchanged"}' in metrics
