"""A batch of zero rows is answered with zero rows, in every dialect, by every demo model.

An empty list carries no rows, whatever one row's shape: ``{"features": []}`` for iris's
``[-1, 4]`` input is zero rows (it used to be read as one instance of nothing, ``[1, 0]``),
and TF-Serving's ``{"instances": []}`` is zero rows of every input. On the real demo models
(a Keras file, a SavedModel with dynamic batching, an ONNX image model and a pipeline),
through the runtime app.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from runtime.app import create_app
from runtime.settings import RuntimeSettings

#: model -> (its inputs, its outputs with the shape of one row).
MODELS: dict[str, tuple[list[str], dict[str, list[int]]]] = {
    "iris": (["features"], {"probabilities": [3]}),
    "diabetes": (["features"], {"progression": [1]}),
    "digits": (["image"], {"probabilities": [10], "label": [1]}),
    "titanic": (
        ["fare", "sex", "embarked", "pclass", "age"],
        {"survived": [1], "probability": [1]},
    ),
}
INPUT_SHAPES = {"features@iris": [4], "features@diabetes": [10], "image@digits": [8, 8, 1]}


@pytest.fixture(scope="module")
def client(demo_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:  # type: ignore[type-arg]
    root = tmp_path_factory.mktemp("zero_rows") / "models"
    for name in MODELS:
        shutil.copytree(demo_repository / name, root / name)
    settings = RuntimeSettings(repository=root, poll_interval_s=0)
    with TestClient(create_app(settings)) as test_client:
        deadline = time.monotonic() + 120
        while test_client.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "the runtime never became ready"
            time.sleep(0.1)
        yield test_client


def answered(client: TestClient, path: str, body: dict[str, Any]) -> Any:  # type: ignore[type-arg]
    answer = client.post(path, json=body)
    assert answer.status_code == 200, answer.text
    return answer


@pytest.mark.parametrize("model", list(MODELS))
def test_eval_columns_of_zero_rows(client: TestClient, model: str) -> None:  # type: ignore[type-arg]
    inputs, outputs = MODELS[model]
    answer = answered(client, f"/v1/models/{model}/eval", {name: [] for name in inputs})
    assert answer.headers["x-driftgate-eval-form"] == "columns"
    assert answer.json()["outputs"] == {name: [] for name in outputs}


@pytest.mark.parametrize("model", list(MODELS))
def test_tf_serving_columns_and_instances_of_zero_rows(client: TestClient, model: str) -> None:  # type: ignore[type-arg]
    inputs, outputs = MODELS[model]
    path = f"/v1/models/{model}:predict"
    columns = answered(client, path, {"inputs": {name: [] for name in inputs}}).json()
    assert columns == {"outputs": [] if len(outputs) == 1 else {name: [] for name in outputs}}
    assert answered(client, path, {"instances": []}).json() == {"predictions": []}


@pytest.mark.parametrize("model", list(MODELS))
def test_open_inference_protocol_zero_rows(client: TestClient, model: str) -> None:  # type: ignore[type-arg]
    inputs, outputs = MODELS[model]
    tensors = [
        {"name": name, "datatype": "BYTES" if name in ("sex", "embarked", "pclass") else "FP32",
         "shape": [0, *INPUT_SHAPES.get(f"{name}@{model}", [1])], "data": []}
        for name in inputs
    ]  # fmt: skip
    answer = answered(client, f"/v2/models/{model}/infer", {"inputs": tensors}).json()
    assert {out["name"]: out["shape"] for out in answer["outputs"]} == {
        name: [0, *row] for name, row in outputs.items()
    }
