"""The demo model repository: every model loads through its real backend and answers sensibly.

The repository is built once per session (``demo_repository`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import filecmp
import importlib.util
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from runtime.backends import create_backend, detect_format
from runtime.backends.base import ModelBackend
from runtime.backends.pmml import find_java
from runtime.config import load_model_config
from runtime.demo import DEMO_MODELS, build_demo_repository, write_sample_digits
from runtime.demo.titanic_data import load_titanic
from runtime.images import ImageConfig

TITANIC_INPUTS = ["fare", "sex", "embarked", "pclass", "age"]
HAS_TF_KERAS = importlib.util.find_spec("tf_keras") is not None

# (model, version, format, inputs, outputs); inputs and outputs as (name, datatype, shape).
# PMML datatypes are the PMML backend's choice, so only names and shapes are listed for it.
MODELS = [
    ("titanic", 1, "pipeline",
     [("fare", "FP32", (-1, 1)), ("sex", "BYTES", (-1, 1)), ("embarked", "BYTES", (-1, 1)),
      ("pclass", "BYTES", (-1, 1)), ("age", "FP32", (-1, 1))],
     [("survived", "INT64", (-1, 1)), ("probability", "FP32", (-1, 1))]),
    ("titanic", 2, "pipeline",
     [("fare", "FP32", (-1, 1)), ("sex", "BYTES", (-1, 1)), ("embarked", "BYTES", (-1, 1)),
      ("pclass", "BYTES", (-1, 1)), ("age", "FP32", (-1, 1))],
     [("survived", "INT64", (-1, 1)), ("probability", "FP32", (-1, 1))]),
    ("titanic_pmml", 1, "pmml",
     [("fare", None, (-1, 1)), ("sex", "BYTES", (-1, 1)), ("embarked", "BYTES", (-1, 1)),
      ("pclass", "BYTES", (-1, 1)), ("age", None, (-1, 1))],
     [("survived", None, (-1, 1)), ("probability", None, (-1, 1))]),
    ("iris", 1, "keras", [("features", "FP32", (-1, 4))], [("probabilities", "FP32", (-1, 3))]),
    ("iris", 2, "keras", [("features", "FP32", (-1, 4))], [("probabilities", "FP32", (-1, 3))]),
    ("diabetes", 1, "savedmodel",
     [("features", "FP32", (-1, 10))], [("progression", "FP32", (-1, 1))]),
    ("digits", 1, "onnx",
     [("image", "FP32", (-1, 8, 8, 1))],
     [("probabilities", "FP32", (-1, 10)), ("label", "INT64", (-1, 1))]),
]  # fmt: skip

SEED_PAYLOADS = {
    "fare": np.array([[7.0], [9.0]], np.float32),
    "sex": np.array([["male"], ["female"]], dtype=object),
    "embarked": np.array([["Q"], ["S"]], dtype=object),
    "pclass": np.array([["3"], ["2"]], dtype=object),
    "age": np.array([[27.0], [38.0]], np.float32),
}


def require_java() -> None:
    if find_java() is not None:
        return
    reason = "needs a Java runtime for PMML (no `java` on PATH or in JAVA_HOME)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def load(repository: Path, name: str, version: int) -> ModelBackend:
    fmt, artefact = detect_format(repository / name / str(version))
    if fmt == "pmml":
        require_java()
    backend = create_backend(fmt, load_model_config(repository / name).backend_options())
    backend.load(artefact)
    return backend


def test_the_build_writes_every_demo_model_with_its_config(demo_repository: Path):
    assert sorted(p.name for p in demo_repository.iterdir()) == sorted(DEMO_MODELS)
    titanic = load_model_config(demo_repository / "titanic")
    assert titanic.labels == {"stable": 1, "canary": 2}
    assert titanic.version_policy.kind == "all"
    assert load_model_config(demo_repository / "diabetes").signature == "serving_default"
    image = load_model_config(demo_repository / "digits").image
    assert image is not None
    assert (image.input, image.width, image.height, image.color_mode) == (
        "image",
        8,
        8,
        "grayscale",
    )


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(model, id=f"{model[0]}-{model[1]}", marks=marks)
        for model in MODELS
        for marks in [
            [pytest.mark.java] if model[2] == "pmml" else
            [pytest.mark.skipif(not HAS_TF_KERAS, reason="tf_keras missing: no Keras 2 file")]
            if model[:2] == ("iris", 2) else []
        ]
    ],
)  # fmt: skip
def test_every_model_loads_through_its_backend(demo_repository: Path, model):
    name, version, fmt, inputs, outputs = model
    assert detect_format(demo_repository / name / str(version))[0] == fmt
    backend = load(demo_repository, name, version)
    try:
        metadata = backend.metadata()
        for specs, expected in ((metadata.inputs, inputs), (metadata.outputs, outputs)):
            assert [s.name for s in specs] == [e[0] for e in expected]
            assert [s.shape for s in specs] == [e[2] for e in expected]
            for spec, (_, datatype, _) in zip(specs, expected, strict=True):
                assert datatype is None or spec.datatype == datatype, spec
    finally:
        backend.unload()


@pytest.mark.parametrize("name", ["titanic", "titanic_pmml"])
def test_titanic_inputs_say_what_they_accept(demo_repository: Path, name: str):
    backend = load(demo_repository, name, 1)
    metadata = backend.metadata()
    allowed = {s.name: s.allowed_values for s in metadata.inputs}
    nullable = {s.name for s in metadata.inputs if s.nullable}
    backend.unload()
    assert allowed == {"fare": None, "sex": ("female", "male"), "embarked": ("C", "Q", "S"),
                       "pclass": ("1", "2", "3"), "age": None}  # fmt: skip
    assert {"age", "embarked"} <= nullable and "sex" not in nullable


@pytest.mark.parametrize(
    ("name", "version"),
    [("titanic", 1), ("titanic", 2), pytest.param("titanic_pmml", 1, marks=pytest.mark.java)],
)
def test_the_seed_payloads_get_survival_predictions(demo_repository: Path, name, version):
    backend = load(demo_repository, name, version)
    try:
        out = backend.predict(SEED_PAYLOADS)
    finally:
        backend.unload()
    # A 27-year-old man in third class drowns; a 38-year-old woman in second class survives.
    assert np.asarray(out["survived"]).tolist() == [[0], [1]]
    probability = np.asarray(out["probability"], dtype=np.float64)
    assert probability.shape == (2, 1)
    assert 0 < probability[0, 0] < 0.5 < probability[1, 0] < 1


@pytest.mark.java
def test_titanic_v1_and_its_pmml_agree_on_every_reference_passenger(demo_repository: Path):
    passengers = load_titanic("reference")
    inputs = passengers.as_inputs()
    answers = {}
    for name in ("titanic", "titanic_pmml"):
        backend = load(demo_repository, name, 1)
        answers[name] = backend.predict(inputs)
        backend.unload()
    pipeline, pmml = answers["titanic"], answers["titanic_pmml"]
    assert len(pipeline["survived"]) == len(passengers) == 891
    np.testing.assert_array_equal(
        np.asarray(pipeline["survived"]).ravel(), np.asarray(pmml["survived"]).ravel()
    )
    np.testing.assert_allclose(
        np.asarray(pipeline["probability"], np.float64),
        np.asarray(pmml["probability"], np.float64),
        atol=1e-5,
    )
    accuracy = (np.asarray(pmml["survived"]).ravel() == passengers.survived).mean()
    assert accuracy > 0.75


def decode_png(path: Path, image: ImageConfig) -> np.ndarray:
    """The image contract of ``digits/config.yaml``, applied with Pillow."""
    mode = "L" if image.color_mode == "grayscale" else "RGB"
    pixels = (
        Image.open(path)
        .convert(mode)
        .resize((image.width, image.height), Image.Resampling.BILINEAR)
    )
    values = np.asarray(pixels, dtype=np.float64)
    if image.invert:
        values = 255.0 - values
    values = values * image.scale + image.offset
    return values.reshape(1, image.height, image.width, -1).astype(np.float32)


def test_digits_reads_the_sample_pngs_correctly(demo_repository: Path, tmp_path: Path):
    image = load_model_config(demo_repository / "digits").image
    assert image is not None
    backend = load(demo_repository, "digits", 1)
    try:
        for digit, png in enumerate(write_sample_digits(tmp_path)):
            with Image.open(png) as opened:
                assert opened.format == "PNG" and opened.size == (32, 32)
            out = backend.predict({"image": decode_png(png, image)})
            assert out["label"].tolist() == [[digit]], png.name
            assert out["probabilities"][0].argmax() == digit
    finally:
        backend.unload()


def test_iris_classifies_the_iris_set(demo_repository: Path):
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    versions = [1, 2] if HAS_TF_KERAS else [1]
    probabilities = []
    for version in versions:
        backend = load(demo_repository, "iris", version)
        probabilities.append(backend.predict({"features": x.astype(np.float32)})["probabilities"])
        backend.unload()
    assert (probabilities[0].argmax(axis=1) == y).mean() > 0.95
    # Keras 3 and Keras 2 wrote the same weights.
    np.testing.assert_allclose(probabilities[0], probabilities[-1], atol=1e-6)


def test_diabetes_predicts_disease_progression(demo_repository: Path):
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    backend = load(demo_repository, "diabetes", 1)
    try:
        predicted = backend.predict({"features": x.astype(np.float32)})["progression"]
    finally:
        backend.unload()
    assert predicted.shape == (len(y), 1)
    assert np.corrcoef(predicted.ravel(), y)[0, 1] > 0.7


def test_a_rebuild_is_deterministic_and_replaces_only_demo_models(
    demo_repository: Path, tmp_path: Path
):
    repository = tmp_path / "models"
    shutil.copytree(demo_repository, repository)
    (repository / "titanic" / "3").mkdir()  # a stale version: the rebuild removes it
    (repository / "mine" / "1").mkdir(parents=True)  # not a demo model: left alone
    names = build_demo_repository(repository)
    assert sorted(names) == sorted(DEMO_MODELS)
    assert not (repository / "titanic" / "3").exists()
    assert (repository / "mine" / "1").is_dir()
    assert not [p.name for p in repository.iterdir() if p.name.startswith(".")]
    for text_file in [
        "titanic/1/pipeline.yaml",
        "titanic/2/pipeline.yaml",
        "titanic/config.yaml",
        "titanic_pmml/1/titanic.pmml",
        "digits/config.yaml",
        "titanic/1/classifier.onnx",
        "titanic/2/classifier.onnx",
        "digits/1/digits.onnx",
    ]:
        assert filecmp.cmp(demo_repository / text_file, repository / text_file, shallow=False), (
            text_file
        )
