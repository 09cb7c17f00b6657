"""``POST /v1/models/{m}[/versions/{v}]/explain`` on the runtime, in-process.

The demo's titanic pipeline (five inputs, two categorical) answers with one attribution per
original input; base value plus attributions is the prediction, which is what eval answers
for the same row. The background comes from the version's reference profile: without one
the answer is 409 and says how to build it. Every curl example of docs/explain.md is run
here too. The glue of ``runtime.explaining`` is tested at the end on small metadata.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

import runtime.backends
from drift.profile import build_profile
from drift.references import ReferenceStore
from driftgate.reference import build_reference
from runtime.app import create_app
from runtime.demo.titanic_data import DATA_DIR, FILES
from runtime.errors import BadRequest
from runtime.explain_background import (
    BackgroundCache,
    NoReferenceProfile,
    background_from_profile,
)
from runtime.explaining import (
    ExplainSettings,
    explained_output_of,
    frame_from_inputs,
    inputs_from_frame,
)
from runtime.settings import RuntimeSettings
from runtime.tensors import ModelMetadata, TensorSpec

Client = TestClient[Litestar]
ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "explain.md"
TITANIC_INPUTS = ["fare", "sex", "embarked", "pclass", "age"]
V1 = "/v1/models/titanic/versions/1"
PASSENGER = {"fare": 7.25, "sex": "male", "embarked": "S", "pclass": "3", "age": 22}
PASSENGERS = {
    "fare": [7.25, 71.28, None],
    "sex": ["male", "female", "female"],
    "embarked": ["S", "C", None],
    "pclass": ["3", "1", "2"],
    "age": [22, 38, None],
}


@pytest.fixture(scope="module")
def repository(demo_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """titanic (a profile for version 1 only) and digits (an image model)."""
    root = tmp_path_factory.mktemp("explain") / "models"
    for name in ("titanic", "digits"):
        # Other tests may have built profiles in the shared demo: start without any.
        shutil.copytree(
            demo_repository / name, root / name, ignore=shutil.ignore_patterns("references")
        )
    build_reference(root, "titanic", "1", DATA_DIR / FILES["reference"], label="Survived")
    return root


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(scope="module")
def client(repository: Path, spans: InMemorySpanExporter) -> Iterator[Client]:
    settings = RuntimeSettings(repository=repository, poll_interval_s=0)
    with TestClient(create_app(settings, span_exporter=spans)) as test_client:
        wait_ready(test_client)
        yield test_client


def wait_ready(client: Client) -> None:
    deadline = time.monotonic() + 30
    while client.get("/v2/health/ready").status_code != 200:
        assert time.monotonic() < deadline, "runtime never became ready"
        time.sleep(0.05)


def explain(client: Client, body: Any, path: str = V1, query: str = "") -> dict[str, Any]:
    answer = client.post(f"{path}/explain{query}", json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def reconstructed(explanation: dict[str, Any], base_value: float) -> float:
    return base_value + float(sum(explanation["attributions"].values()))


# --- explaining titanic -------------------------------------------------------------------


def test_an_instance_is_explained_by_its_five_original_inputs(client, repository) -> None:
    answer = client.post(f"{V1}/explain", json=PASSENGER)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    evaluated = client.post(f"{V1}/eval", json=PASSENGER).json()["outputs"]["probability"]

    explanation = result["explanations"]  # the single-instance form: one object
    assert list(explanation["attributions"]) == TITANIC_INPUTS  # not one-hot columns
    assert abs(reconstructed(explanation, result["base_value"]) - explanation["prediction"]) < 1e-6
    assert abs(explanation["prediction"] - evaluated) < 1e-6
    assert result["additivity_error"] <= result["tolerance"] == 1e-6
    [profile_id] = ReferenceStore(repository).history("titanic", "1")
    assert {key: result[key] for key in result if key not in ("base_value", "explanations")} == {
        "model": "titanic",
        "version": "1",
        "output": "probability",
        "index": None,
        "method": "kernel_shap",
        "additivity_error": result["additivity_error"],
        "tolerance": 1e-6,
        "background_rows": 50,
        "n_samples": 512,
        "reference": profile_id,
    }
    assert answer.headers["X-Model-Version"] == "1"


def test_columns_are_explained_row_by_row(client) -> None:
    result = explain(client, PASSENGERS, query="?background=20")
    evaluated = client.post(f"{V1}/eval", json=PASSENGERS).json()["outputs"]["probability"]

    explanations = result["explanations"]
    assert len(explanations) == 3
    for explanation, [probability] in zip(explanations, evaluated, strict=True):
        assert list(explanation["attributions"]) == TITANIC_INPUTS
        assert abs(explanation["prediction"] - probability) < 1e-6
        assert (
            abs(reconstructed(explanation, result["base_value"]) - explanation["prediction"]) < 1e-6
        )
    # Being a man lowers the odds of survival, being a woman raises them.
    sex = [explanation["attributions"]["sex"] for explanation in explanations]
    assert sex[0] < 0 < sex[1] and sex[2] > 0
    assert result["background_rows"] == 20


def test_the_same_request_gets_the_same_answer(client) -> None:
    first, again = explain(client, PASSENGER), explain(client, PASSENGER)
    smaller = explain(client, PASSENGER, query="?background=10")

    assert first == again  # fixed seeds, and the background is cached per profile
    assert smaller["base_value"] != first["base_value"]  # another background


def test_another_output_can_be_explained(client) -> None:
    result = explain(client, PASSENGER, query="?output=survived")

    assert result["output"] == "survived"
    explanation = result["explanations"]
    assert explanation["prediction"] == 0.0  # the class, not the probability
    assert abs(reconstructed(explanation, result["base_value"])) < 1e-6


def test_a_version_without_a_reference_profile_is_409_naming_the_remedy(client) -> None:
    answer = client.post("/v1/models/titanic/explain", json=PASSENGER)  # the default: v2

    assert answer.status_code == 409
    message = answer.json()["error"]
    assert message.startswith("no reference profile for titanic version 2: ")
    assert "driftgate reference build --model titanic --version 2" in message


@pytest.mark.parametrize(
    ("path", "query", "body", "expected"),
    [
        (V1, "?output=nope", PASSENGER, "unknown output 'nope'; the model's outputs are"),
        (V1, "?index=1", PASSENGER, "index 1 is out of range: output 'probability' has one"),
        (V1, "?index=-1", PASSENGER, "query parameter 'index' must be 0 or more"),
        (V1, "?index=first", PASSENGER, "query parameter 'index' must be an integer"),
        (V1, "?samples=4097", PASSENGER, "samples=4097 is out of range: 1 to 4096"),
        (V1, "?samples=9", PASSENGER, "samples=9 is too few for 5 input features"),
        (V1, "?background=201", PASSENGER, "background=201 is out of range: 1 to 200"),
        (V1, "?sample=64", PASSENGER, "unknown query parameter 'sample'"),
        (V1, "", {**PASSENGER, "fares": 1.0}, "unknown input 'fares'"),
        (V1, "", {k: [v] * 33 for k, v in PASSENGER.items()}, "at most 32 rows per request"),
        (V1, "", {k: [] for k in PASSENGER}, "there is no row to explain"),
        (
            "/v1/models/digits",
            "",
            {"image": [[[0]]]},
            "explain works on tabular models: input 'image' has shape [-1, 8, 8, 1]",
        ),
    ],
    ids=[
        "unknown-output",
        "index-of-a-scalar-output",
        "negative-index",
        "index-not-a-number",
        "too-many-samples",
        "too-few-samples",
        "too-much-background",
        "unknown-parameter",
        "unknown-input",
        "too-many-rows",
        "no-rows",
        "not-tabular",
    ],
)
def test_bad_requests_are_400_naming_the_problem(
    client, path: str, query: str, body: Any, expected: str
) -> None:
    answer = client.post(f"{path}/explain{query}", json=body)

    assert answer.status_code == 400, answer.text
    assert expected in answer.json()["error"]


def test_a_body_that_is_not_json_is_400_and_not_json_at_all_is_415(client) -> None:
    broken = client.post(
        f"{V1}/explain", content=b"{", headers={"content-type": "application/json"}
    )
    text = client.post(f"{V1}/explain", content=b"fare=7", headers={"content-type": "text/plain"})

    assert broken.status_code == 400 and "JSON" in broken.json()["error"]
    assert text.status_code == 415
    assert "explain takes application/json" in text.json()["error"]


def test_explain_is_measured_and_traced(client, spans: InMemorySpanExporter) -> None:
    spans.clear()
    explain(client, PASSENGERS, query="?samples=64")

    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
    }
    timed = ("driftgate_explain_duration_seconds_count", (("model", "titanic"),))
    labels = {"model": "titanic", "version": "1", "protocol": "explain", "code": "200"}
    counted = ("driftgate_runtime_requests_total", tuple(sorted(labels.items())))
    assert samples[timed] >= 1 and samples[counted] >= 1
    [span] = [span for span in spans.get_finished_spans() if span.name == "explain titanic"]
    assert span.attributes is not None
    assert span.attributes["driftgate.explain.method"] == "kernel_shap"
    assert span.attributes["driftgate.explain.rows"] == 3
    assert span.attributes["driftgate.explain.n_samples"] == 64


# --- the linear fast path -------------------------------------------------------------------


def test_a_linear_model_takes_the_exact_fast_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The "scale" test backend answers y = 2 x (tests/runtime/fakes.py).
    monkeypatch.setitem(runtime.backends.FORMATS, "scale", "tests.runtime.fakes:ScaleBackend")
    (tmp_path / "double" / "1").mkdir(parents=True)
    (tmp_path / "double" / "config.yaml").write_text("format: scale\n")
    (tmp_path / "double" / "1" / "factor.txt").write_text("2")
    reference = np.random.default_rng(0).uniform(0.0, 1.0, 500)
    ReferenceStore(tmp_path).save(build_profile("double", "1", {"in_x": reference}, "test"))

    with TestClient(create_app(RuntimeSettings(repository=tmp_path, poll_interval_s=0))) as client:
        wait_ready(client)
        result = explain(client, {"x": [0.25, 0.75]}, path="/v1/models/double")

    assert result["method"] == "linear"
    low, high = result["explanations"]
    assert (low["prediction"], high["prediction"]) == (0.5, 1.5)  # the model's own answers
    # y = 2x: the attribution is 2 (x - mean of the background), the base 2 * that mean.
    assert high["attributions"]["x"] - low["attributions"]["x"] == pytest.approx(1.0, abs=1e-6)
    assert low["attributions"]["x"] == pytest.approx(0.5 - result["base_value"], abs=1e-6)
    assert result["additivity_error"] <= 1e-6


# --- the examples of docs/explain.md --------------------------------------------------------

FENCE = re.compile(r"```(\w*)\n(.*?)```", re.DOTALL)


def doc_examples() -> list[tuple[str, str, Any]]:
    """(path with query, body, expected answer) of every curl example, in order."""
    blocks = FENCE.findall(DOC.read_text())
    examples = []
    for position, (language, text) in enumerate(blocks):
        if language != "sh" or "curl" not in text:
            continue
        url = re.search(r"localhost:\d+(/[^\s']+)", text)
        body = re.search(r"-d '(.*?)'", text, re.DOTALL)
        assert url and body, f"cannot read the curl example:\n{text}"
        following = blocks[position + 1] if position + 1 < len(blocks) else ("", "")
        assert following[0] == "json", f"no answer after the curl example:\n{text}"
        examples.append((url[1], body[1], json.loads(following[1])))
    return examples


def close_to(actual: Any, expected: Any) -> bool:
    """Equal, floats to the 4 decimals the doc shows; a profile id matches any id."""
    if isinstance(expected, float):
        return isinstance(actual, int | float) and abs(actual - expected) <= 6e-5
    if isinstance(expected, dict):
        return actual.keys() == expected.keys() and all(
            re.fullmatch(r"profile-.+\.json", actual[key])
            if key == "reference"
            else close_to(actual[key], value)
            for key, value in expected.items()
        )
    if isinstance(expected, list):
        return len(actual) == len(expected) and all(map(close_to, actual, expected))
    return bool(actual == expected)


def test_the_doc_has_examples_and_a_place_for_the_job_section() -> None:
    assert len(doc_examples()) >= 3
    assert "<!-- explain-job -->" in DOC.read_text()


@pytest.mark.parametrize(("path", "body", "expected"), doc_examples(), ids=lambda value: None)
def test_doc_example(client, path: str, body: str, expected: Any) -> None:
    answer = client.post(path, content=body, headers={"content-type": "application/json"})

    assert close_to(answer.json(), expected), json.dumps(answer.json(), indent=1)


# --- the glue, on small metadata ------------------------------------------------------------


def metadata(*outputs: TensorSpec) -> ModelMetadata:
    return ModelMetadata(
        inputs=(
            TensorSpec("fare", "FP32", (-1, 1), nullable=True),
            TensorSpec("parch", "INT64", (-1,)),
            TensorSpec("alone", "BOOL", (-1, 1)),
            TensorSpec("pclass", "BYTES", (-1, 1), allowed_values=("1", "2", "3")),
        ),
        outputs=outputs or (TensorSpec("p", "FP32", (-1, 1)),),
        platform="test",
    )


def test_frames_and_inputs_convert_both_ways() -> None:
    spec = metadata()
    inputs: dict[str, np.ndarray] = {
        "fare": np.array([[7.25], [np.nan]], np.float32),
        "parch": np.array([0, 2], np.int64),
        "alone": np.array([[True], [False]]),
        "pclass": np.array([["3"], [b"1"]], dtype=object),
    }

    frame = frame_from_inputs(spec, inputs)
    back = inputs_from_frame(spec, frame)

    assert [frame[name].dtype.kind for name in frame] == ["f", "f", "f", "O"]
    assert list(frame["pclass"]) == ["3", "1"]  # binary values become text
    np.testing.assert_array_equal(back["fare"], inputs["fare"])
    assert back["parch"].dtype == np.int64 and back["parch"].tolist() == [0, 2]
    assert back["alone"].tolist() == [[True], [False]]
    assert back["pclass"].tolist() == [["3"], ["1"]]


@pytest.mark.parametrize(
    ("outputs", "asked", "expected"),
    [
        ((TensorSpec("label", "INT64", (-1, 1)), TensorSpec("p", "FP32", (-1, 3))), None, ("p", 2)),
        ((TensorSpec("p", "FP32", (-1, 3)),), 0, ("p", 0)),
        ((TensorSpec("p", "FP64", (-1,)),), None, ("p", None)),
        ((TensorSpec("p", "FP32", (-1, 1)),), 0, ("p", None)),
        ((TensorSpec("p", "FP32", (-1, -1)),), None, ("p", None)),
    ],
    ids=["last-class-of-the-first-float", "asked-column", "vector", "column", "unknown-width"],
)
def test_the_explained_output_defaults(
    outputs: tuple[TensorSpec, ...], asked: int | None, expected: tuple[str, int | None]
) -> None:
    assert explained_output_of(metadata(*outputs), None, asked) == expected


@pytest.mark.parametrize(
    ("outputs", "output", "index", "message"),
    [
        ((TensorSpec("label", "INT64", (-1, 1)),), None, None, "no floating-point output"),
        ((TensorSpec("name", "BYTES", (-1, 1)),), "name", None, "holds text"),
        ((TensorSpec("p", "FP32", (-1, 3)),), None, 3, "index 3 is out of range"),
        ((TensorSpec("p", "FP32", (-1, 2, 2)),), None, None, "has shape [-1, 2, 2]"),
    ],
)
def test_the_explained_output_is_checked(
    outputs: tuple[TensorSpec, ...], output: str | None, index: int | None, message: str
) -> None:
    with pytest.raises(BadRequest, match=re.escape(message)):
        explained_output_of(metadata(*outputs), output, index)


def test_a_background_is_typed_like_the_inputs() -> None:
    rng = np.random.default_rng(0)
    n = 300
    fare = rng.uniform(5, 80, n)
    fare[:30] = np.nan
    parch = rng.uniform(0, 30, n)  # numeric in the profile, INT64 in the model
    parch[:10] = np.nan  # and the model takes no missing value
    columns = {
        "in_fare": fare,
        "in_parch": parch,
        "in_alone": rng.choice([True, False], n),
        "in_pclass": rng.choice([1, 2, 3], n),  # numbers in the file, text in the model
    }
    profile = build_profile("m", "1", columns, "test")

    background = background_from_profile(metadata(), profile, 200, seed=1)

    assert np.isnan(background["fare"]).any()  # nullable: missing values stay
    assert not np.isnan(background["parch"]).any()  # replaced by present ones
    assert np.array_equal(background["parch"], np.rint(background["parch"]))
    assert set(background["alone"]) == {0.0, 1.0}
    assert set(background["pclass"]) == {"1", "2", "3"}


def test_a_profile_without_an_input_cannot_give_a_background() -> None:
    profile = build_profile("m", "1", {"in_fare": np.arange(50.0)}, "test")

    with pytest.raises(NoReferenceProfile, match="has no input 'parch'") as raised:
        background_from_profile(metadata(), profile, 10)
    assert raised.value.status_code == 409


def test_settings_bound_what_a_request_may_ask_for() -> None:
    settings = ExplainSettings().with_overrides(samples=4096, background=200)

    assert (settings.n_samples, settings.background_rows, settings.max_rows) == (4096, 200, 32)
    with pytest.raises(BadRequest, match="samples=0 is out of range"):
        ExplainSettings().with_overrides(samples=0)
    ExplainSettings(n_samples=14).require_samples_for(4)  # every coalition of 4 fits: exact
    with pytest.raises(BadRequest, match="at least 8"):
        ExplainSettings(n_samples=7).require_samples_for(4)


def test_the_background_cache_builds_once_per_key_and_forgets_the_oldest() -> None:
    cache = BackgroundCache(capacity=2)
    built: list[int] = []

    def build(rows: int) -> dict[str, np.ndarray]:
        built.append(rows)
        return {"x": np.zeros(rows)}

    for rows in (1, 1, 2, 1, 3, 2):
        cache.get_or_build(("m", "1", "profile-a.json", rows, 0), functools.partial(build, rows))

    # 1 built, 1 cached, 2 built, 1 cached (now newest), 3 built (drops 2), 2 rebuilt.
    assert built == [1, 2, 3, 2]
