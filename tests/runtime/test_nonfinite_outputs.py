"""A model that answers NaN or infinities is answered with JSON null and a 200, so the
runtime counts those values (``driftgate_nonfinite_output_values_total``): otherwise only the
clients that got them would know. Through the runtime app, with the fake ``scale`` backend
(``tests.runtime.fakes``), its factor infinite."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from runtime.app import create_app
from runtime.settings import RuntimeSettings

METRIC = "driftgate_nonfinite_output_values_total"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:  # type: ignore[type-arg]
    for model, factor in (("wild", "inf"), ("tame", "2")):
        (tmp_path / model / "1").mkdir(parents=True)
        (tmp_path / model / "1" / "factor.txt").write_text(factor)
        (tmp_path / model / "config.yaml").write_text("format: scale\n")
    with TestClient(create_app(RuntimeSettings(repository=tmp_path, poll_interval_s=0))) as test:
        deadline = time.monotonic() + 30
        while test.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "the runtime never became ready"
            time.sleep(0.05)
        yield test


def counted(client: TestClient, model: str) -> list[str]:  # type: ignore[type-arg]
    return [
        line
        for line in client.get("/metrics").text.splitlines()
        if line.startswith(METRIC) and f'model="{model}"' in line
    ]


@pytest.mark.filterwarnings("ignore:invalid value encountered in multiply:RuntimeWarning")
def test_nan_and_infinities_in_an_answer_are_counted_by_output(client: TestClient) -> None:  # type: ignore[type-arg]
    body = {"x": [[1.0], [0.0], [-2.0], [3.0]]}  # inf, nan (0 * inf), -inf, inf
    answer = client.post("/v1/models/wild/eval", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"]["y"] == [[None], [None], [None], [None]]

    infer = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [5.0]}]}
    assert client.post("/v2/models/wild/infer", json=infer).status_code == 200
    assert counted(client, "wild") == [f'{METRIC}{{model="wild",output="y",version="1"}} 5.0']


def test_each_floating_output_is_counted_from_0_at_load_so_a_first_burst_shows(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    zero = f'{METRIC}{{model="tame",output="y",version="1"}} 0.0'
    assert counted(client, "tame") == [zero]  # before any call: rate() sees the first NaN
    answer = client.post("/v1/models/tame/eval", json={"x": [[1.0], [2.0]]})
    assert answer.status_code == 200 and answer.json()["outputs"]["y"] == [[2.0], [4.0]]
    assert counted(client, "tame") == [zero]
