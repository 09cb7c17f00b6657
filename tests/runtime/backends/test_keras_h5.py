"""The Keras backend: Keras 3 and Keras 2 (tf-keras) files served by Keras 3."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.backends import create_backend
from runtime.backends.keras_h5 import KerasBackend
from runtime.errors import BackendUnavailable, BadRequest


def loaded(path) -> KerasBackend:
    backend = KerasBackend({})
    backend.load(path)
    return backend


def test_registry_builds_the_backend() -> None:
    assert isinstance(create_backend("keras"), KerasBackend)


@pytest.mark.parametrize("kind", ["h5", "keras"])
def test_keras3_files(keras3_files, kind) -> None:
    artefact = keras3_files[kind]
    backend = loaded(artefact.path)
    meta = backend.metadata()
    assert meta.platform == "keras"
    assert [(s.name, s.datatype, s.shape) for s in meta.inputs] == [
        ("features", "FP32", (-1, 3)),
        ("extra", "FP32", (-1, 1)),
    ]
    assert [(s.name, s.datatype, s.shape) for s in meta.outputs] == [
        ("scores", "FP32", (-1, 2)),
        ("value", "FP32", (-1, 1)),
    ]
    assert meta.extra["call"] == "concrete_function"
    outputs = backend.predict(artefact.inputs)
    for name, expected in artefact.expected.items():
        np.testing.assert_allclose(outputs[name], expected, rtol=1e-5, atol=1e-6)


def test_keras3_sequential_is_named_after_its_last_layer(keras3_files) -> None:
    artefact = keras3_files["sequential"]
    backend = loaded(artefact.path)
    assert [s.name for s in backend.metadata().inputs] == ["pixels"]
    assert [s.name for s in backend.metadata().outputs] == ["logits"]
    outputs = backend.predict(artefact.inputs)
    np.testing.assert_allclose(outputs["logits"], artefact.expected["logits"], rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Do not pass an `input_shape`:UserWarning")
@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_keras2_files_written_by_tf_keras(keras2_files, kind) -> None:
    artefact = keras2_files[kind]
    backend = loaded(artefact.path)
    meta = backend.metadata()
    assert [(s.name, s.shape) for s in meta.inputs] == [(next(iter(artefact.inputs)), (-1, 3))]
    assert [(s.name, s.shape) for s in meta.outputs] == [(next(iter(artefact.expected)), (-1, 2))]
    outputs = backend.predict(artefact.inputs)
    for name, expected in artefact.expected.items():
        np.testing.assert_allclose(outputs[name], expected, rtol=1e-5, atol=1e-6)


def test_batches_of_any_size_use_the_one_traced_function(keras3_files) -> None:
    artefact = keras3_files["keras"]
    backend = loaded(artefact.path)
    one_row = {name: array[:1] for name, array in artefact.inputs.items()}
    assert backend.predict(one_row)["scores"].shape == (1, 2)
    assert backend.predict(artefact.inputs)["scores"].shape == (4, 2)


def test_a_model_that_cannot_be_traced_runs_eagerly(keras3_files, monkeypatch) -> None:
    import tensorflow as tf

    def untraceable(*args, **kwargs):
        raise TypeError("pretend a custom layer cannot be traced")

    monkeypatch.setattr(tf, "function", untraceable)
    artefact = keras3_files["keras"]
    backend = loaded(artefact.path)
    assert backend.metadata().extra["call"] == "eager"
    outputs = backend.predict(artefact.inputs)
    np.testing.assert_allclose(outputs["scores"], artefact.expected["scores"], rtol=1e-5, atol=1e-6)


def test_every_input_is_required(keras3_files) -> None:
    artefact = keras3_files["h5"]
    with pytest.raises(BadRequest, match="missing: extra"):
        loaded(artefact.path).predict({"features": artefact.inputs["features"]})


def test_other_files_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="not a Keras file"):
        KerasBackend({}).load(tmp_path / "model.onnx")


def test_unload_is_idempotent(keras3_files) -> None:
    artefact = keras3_files["h5"]
    backend = loaded(artefact.path)
    backend.unload()
    backend.unload()
    with pytest.raises(RuntimeError, match="before load"):
        backend.predict(artefact.inputs)


@pytest.mark.parametrize("module", ["tensorflow", "keras"])
def test_missing_framework_names_the_extra(keras3_files, block_import, module) -> None:
    block_import(module)
    with pytest.raises(BackendUnavailable, match=rf"'{module}'.*driftgate\[tensorflow\]"):
        KerasBackend({}).load(keras3_files["h5"].path)


def test_a_batch_of_zero_rows_answers_zero_rows(keras3_files) -> None:
    backend = loaded(keras3_files["h5"].path)
    outputs = backend.predict(
        {"features": np.empty((0, 3), np.float32), "extra": np.empty((0, 1), np.float32)}
    )
    assert outputs["scores"].shape == (0, 2) and outputs["value"].shape == (0, 1)
