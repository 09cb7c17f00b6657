"""``POST /v1/feedback`` against the rows the gateway logged for a request.

The recorder remembers each recently logged request id with its number of rows, so a label
for a row the request did not have is refused (it would join no prediction), while a
label for an id this gateway never logged is stored and counted as unknown.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.settings import GatewaySettings
from monitoring.prediction_log import run_sql
from tests.gateway.fakes import REPLICAS, Answer, FakeRuntime, Gateway, gateway_factory


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    """A gateway logging every request; it has answered the one-row request ``one`` and
    the three-row request ``three``."""
    runtime = FakeRuntime(models={"iris": ["1"]})
    settings = GatewaySettings.from_dict(
        {
            "replicas": [f"http://{r}" for r in REPLICAS],
            "auth": {"enabled": False},
            "health_check": {"interval_s": 0.05, "timeout_s": 0.5},
            "log": {"store": str(tmp_path / "store"), "flush_interval_s": 0.2},
        }
    )
    with gateway_factory(runtime) as start:
        gateway = start(settings)
        for request_id, fares, species in (
            ("one", 5, "setosa"),
            ("three", [5, 6, 7], ["setosa", "setosa", "virginica"]),
        ):
            runtime.behave(Answer({"species": species}))
            answer = gateway.client.post(
                "/v1/models/iris/eval", json={"fare": fares}, headers={"x-request-id": request_id}
            )
            assert answer.status_code == 200
        flush(gateway)
        yield gateway


def flush(gateway: Gateway) -> None:
    assert gateway.state.recorder is not None
    gateway.state.recorder.flush()


def post(gateway: Gateway, *labels: dict[str, Any]) -> httpx.Response:
    return gateway.client.post("/v1/feedback", json={"feedback": list(labels)})


def test_labels_for_rows_the_request_had_are_matched(gateway: Gateway) -> None:
    answer = post(
        gateway,
        {"request_id": "one", "label": 1},
        {"request_id": "one", "row": 0, "label": 1},
        {"request_id": "three", "row": 2, "label": 0},
        {"request_id": "never-logged", "row": 7, "label": 1},
    )

    assert answer.status_code == 202, answer.text
    assert answer.json() == {"accepted": 4, "matched": 3, "unknown": 1}


def test_a_label_for_a_row_past_the_requests_last_is_refused_and_none_stored(
    gateway: Gateway, tmp_path: Path
) -> None:
    """Row 5 of a one-row request was answered `matched: 1`, and joined nothing."""
    answer = post(
        gateway,
        {"request_id": "three", "row": 1, "label": 0},
        {"request_id": "one", "row": 5, "label": 1},
    )

    assert answer.status_code == 400
    assert answer.json()["error"] == (
        "label 1: request 'one' was logged with 1 row (row 0); row 5 labels no prediction"
    )
    flush(gateway)
    assert run_sql(tmp_path / "store", "select count(*) from feedback").rows == [(0,)]
