"""Every dialect against a real ``driftgate runtime`` process serving the demo repository."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from tests.e2e.processes import RunningProcess

pytestmark = pytest.mark.e2e

SEED_COLUMNS: dict[str, list[list[Any]]] = {
    "fare": [[7], [9]],
    "sex": [["male"], ["female"]],
    "embarked": [["Q"], ["S"]],
    "pclass": [["3"], ["2"]],
    "age": [[27], [38]],
}
SEED_INSTANCE = {"fare": 7, "sex": "male", "embarked": "Q", "pclass": "3", "age": 27}
TITANIC_MODELS = ["titanic", "titanic_pmml"]


def java_marked(model: str) -> object:
    return pytest.param(model, marks=pytest.mark.java) if "pmml" in model else model


@pytest.fixture(scope="module")
def http(runtime_server: RunningProcess) -> httpx.Client:
    return httpx.Client(base_url=runtime_server.url, timeout=30)


@pytest.mark.parametrize("model", [java_marked(m) for m in TITANIC_MODELS])
def test_eval_column_form_answers_in_columns(http: httpx.Client, model: str) -> None:
    answer = http.post(f"/v1/models/{model}/eval", json=SEED_COLUMNS).json()
    assert answer["model"] == model
    assert np.array(answer["outputs"]["survived"]).shape == (2, 1)
    probability = np.array(answer["outputs"]["probability"])
    assert probability.shape == (2, 1) and ((probability >= 0) & (probability <= 1)).all()
    # A third-class man is less likely to survive than a second-class woman, in any model.
    assert probability[0, 0] < probability[1, 0]


@pytest.mark.parametrize("model", [java_marked(m) for m in TITANIC_MODELS])
def test_eval_single_instance_form_answers_with_scalars(http: httpx.Client, model: str) -> None:
    answer = http.post(f"/v1/models/{model}/eval", json=SEED_INSTANCE).json()
    assert answer["outputs"]["survived"] in (0, 1)
    assert isinstance(answer["outputs"]["probability"], float)


@pytest.mark.parametrize("model", [java_marked(m) for m in TITANIC_MODELS])
def test_tfserving_rows_and_columns(http: httpx.Client, model: str) -> None:
    rows = [
        dict(zip(SEED_COLUMNS, values, strict=True))
        for values in zip(
            *[[column[i][0] for i in range(2)] for column in SEED_COLUMNS.values()], strict=True
        )
    ]
    predictions = http.post(f"/v1/models/{model}:predict", json={"instances": rows}).json()
    assert len(predictions["predictions"]) == 2
    assert set(predictions["predictions"][0]) == {"survived", "probability"}
    columns = http.post(f"/v1/models/{model}/versions/1:predict", json={"inputs": SEED_COLUMNS})
    assert columns.status_code == 200
    assert np.array(columns.json()["outputs"]["probability"]).shape == (2, 1)


@pytest.mark.parametrize("model", [java_marked(m) for m in TITANIC_MODELS])
def test_open_inference_protocol_json(http: httpx.Client, model: str) -> None:
    body = {
        "id": "seed-1",
        "inputs": [
            {"name": "fare", "shape": [2, 1], "datatype": "FP32", "data": [7, 9]},
            {"name": "sex", "shape": [2, 1], "datatype": "BYTES", "data": ["male", "female"]},
            {"name": "embarked", "shape": [2, 1], "datatype": "BYTES", "data": ["Q", "S"]},
            {"name": "pclass", "shape": [2, 1], "datatype": "BYTES", "data": ["3", "2"]},
            {"name": "age", "shape": [2, 1], "datatype": "FP32", "data": [[27], [38]]},
        ],
        "outputs": [{"name": "probability"}],
    }
    answer = http.post(f"/v2/models/{model}/infer", json=body).json()
    assert answer["id"] == "seed-1" and answer["model_name"] == model
    assert [o["name"] for o in answer["outputs"]] == ["probability"]
    assert answer["outputs"][0]["shape"] == [2, 1]


def test_the_standard_triton_client_works_unmodified(runtime_server: RunningProcess) -> None:
    client = triton.InferenceServerClient(url=runtime_server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("titanic") and client.is_model_ready("titanic", "1")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    metadata = client.get_model_metadata("titanic")
    assert [i["name"] for i in metadata["inputs"]] == ["fare", "sex", "embarked", "pclass", "age"]
    arrays = {
        "fare": np.array([[7], [9]], dtype=np.float32),
        "sex": np.array([["male"], ["female"]], dtype=object),
        "embarked": np.array([["Q"], ["S"]], dtype=object),
        "pclass": np.array([["3"], ["2"]], dtype=object),
        "age": np.array([[27], [38]], dtype=np.float32),
    }
    inputs = []
    for name, array in arrays.items():
        tensor = triton.InferInput(
            name, list(array.shape), "BYTES" if array.dtype == object else "FP32"
        )
        tensor.set_data_from_numpy(array)  # binary tensor data: the client's default
        inputs.append(tensor)
    result = client.infer(
        "titanic",
        inputs,
        model_version="1",
        request_id="triton-1",
        outputs=[
            triton.InferRequestedOutput("probability"),
            triton.InferRequestedOutput("survived", binary_data=False),
        ],
    )
    assert result.get_response()["id"] == "triton-1"
    probability = result.as_numpy("probability")
    assert probability is not None and probability.shape == (2, 1)
    survived = result.as_numpy("survived")
    assert survived is not None and set(survived.ravel().tolist()) <= {0, 1}


def test_v2_metadata_and_readiness(http: httpx.Client) -> None:
    assert http.get("/v2").json()["name"] == "driftgate"
    assert http.get("/v2/health/live").status_code == 200
    assert http.get("/v2/health/ready").status_code == 200
    metadata = http.get("/v2/models/titanic/versions/2").json()
    assert metadata["versions"] == ["1", "2"] and metadata["state"] == "READY"
    assert {o["name"]: o["datatype"] for o in metadata["outputs"]} == {
        "survived": "INT64",
        "probability": "FP32",
    }
    assert http.get("/v2/models/titanic/ready").json() == {"name": "titanic", "ready": True}
    assert http.get("/v2/models/titanic/versions/9/ready").status_code == 404


def test_tfserving_status_and_metadata(http: httpx.Client) -> None:
    status = http.get("/v1/models/titanic").json()["model_version_status"]
    assert {s["version"]: s["state"] for s in status} == {"1": "AVAILABLE", "2": "AVAILABLE"}
    metadata = http.get("/v1/models/diabetes/metadata").json()
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["features"]["dtype"] == "DT_FLOAT"


def test_labels_address_versions(http: httpx.Client) -> None:
    stable = http.post("/v1/models/titanic/labels/stable:predict", json={"inputs": SEED_COLUMNS})
    canary = http.post(
        "/v2/models/titanic/versions/canary/infer",
        json={
            "inputs": [
                {
                    "name": k,
                    "shape": [2, 1],
                    "datatype": "BYTES" if isinstance(v[0][0], str) else "FP32",
                    "data": [r[0] for r in v],
                }
                for k, v in SEED_COLUMNS.items()
            ]
        },
    )
    assert stable.status_code == 200 and canary.json()["model_version"] == "2"


def test_describe_shows_inputs_allowed_values_and_examples(http: httpx.Client) -> None:
    described = http.get("/v1/models/titanic/describe").json()
    sex = next(i for i in described["inputs"] if i["name"] == "sex")
    assert sex["allowed_values"] == ["female", "male"]
    example = described["examples"]["instance"]
    assert http.post("/v1/models/titanic/eval", json=example).status_code == 200


def test_every_demo_model_answers_its_own_describe_example(http: httpx.Client) -> None:
    for model in http.get("/v1/models").json()["models"]:
        name = model["name"]
        if name == "titanic_pmml" and any(v["state"] != "READY" for v in model["versions"]):
            continue  # no java here; the java-marked tests cover it
        example = http.get(f"/v1/models/{name}/describe").json()["examples"]["columns"]
        answer = http.post(f"/v1/models/{name}/eval", json=example)
        assert answer.status_code == 200, (name, answer.text)


def test_png_and_jpeg_uploads_are_classified(http: httpx.Client, tmp_path: Path) -> None:
    from PIL import Image

    from runtime.demo.digits import write_sample_digit_png

    for digit in (0, 3, 7):
        png = write_sample_digit_png(tmp_path / f"{digit}.png", digit)
        answer = http.post(
            "/v1/models/digits/eval",
            content=png.read_bytes(),
            headers={"content-type": "image/png"},
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"]["label"] == digit
        jpeg = tmp_path / f"{digit}.jpg"
        Image.open(png).convert("RGB").save(jpeg, quality=95)
        answer = http.post(
            "/v1/models/digits/eval",
            content=jpeg.read_bytes(),
            headers={"content-type": "image/jpeg"},
        )
        assert answer.json()["outputs"]["label"] == digit


def test_gzip_request_bodies_are_accepted(http: httpx.Client) -> None:
    import json

    body = gzip.compress(json.dumps(SEED_INSTANCE).encode())
    answer = http.post(
        "/v1/models/titanic/eval",
        content=body,
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert answer.status_code == 200, answer.text


def test_request_id_is_echoed(http: httpx.Client) -> None:
    answer = http.post(
        "/v1/models/titanic/eval", json=SEED_INSTANCE, headers={"x-request-id": "abc-123"}
    )
    assert answer.headers["x-request-id"] == "abc-123"
    assert answer.json()["id"] == "abc-123"


def test_metrics_are_exported_with_exemplars(http: httpx.Client) -> None:
    http.post("/v1/models/titanic/eval", json=SEED_INSTANCE)
    text = http.get("/metrics").text
    assert 'driftgate_runtime_requests_total{code="200",model="titanic"' in text
    assert 'driftgate_model_ready{model="titanic",version="2"} 1.0' in text
    openmetrics = http.get("/metrics", headers={"accept": "application/openmetrics-text"})
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert "# {trace_id=" in openmetrics.text


def test_openapi_document_lists_what_is_served(http: httpx.Client) -> None:
    paths = http.get("/docs/openapi.json").json()["paths"]
    for path in (
        "/v2/models/{model}/infer",
        "/v1/models/{model}/eval",
        "/v1/models/{model_verb}",
        "/v2/health/ready",
    ):
        assert path in paths, sorted(paths)
