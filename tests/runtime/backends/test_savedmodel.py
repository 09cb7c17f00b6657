"""The SavedModel backend: signature selection, metadata from signatures, string tensors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from runtime.backends import create_backend
from runtime.backends.savedmodel import SavedModelBackend
from runtime.errors import BackendUnavailable
from runtime.pipeline import PipelineBackend, PipelineConfigError
from runtime.repository import ModelRepository


def loaded(path, **options) -> SavedModelBackend:
    backend = SavedModelBackend(options)
    backend.load(path)
    return backend


def test_registry_builds_the_backend_with_its_signature_option() -> None:
    backend = create_backend("savedmodel", {"signature": "greet"})
    assert isinstance(backend, SavedModelBackend)
    assert backend.signature_name == "greet"


def test_keras_export_serves_serving_default(exported_savedmodel, keras3_files) -> None:
    backend = loaded(exported_savedmodel)
    meta = backend.metadata()
    assert [(s.name, s.datatype, s.shape) for s in meta.inputs] == [
        ("extra", "FP32", (-1, 1)),
        ("features", "FP32", (-1, 3)),
    ]
    # Keras export names outputs output_0, output_1 in model order; both lists are sorted.
    assert [(s.name, s.shape) for s in meta.outputs] == [
        ("output_0", (-1, 2)),
        ("output_1", (-1, 1)),
    ]
    assert meta.extra == {
        "signature": "serving_default",
        "signatures": ["serve", "serving_default"],
    }
    reference = keras3_files["h5"]
    outputs = backend.predict(reference.inputs)
    np.testing.assert_allclose(outputs["output_0"], reference.expected["scores"], rtol=1e-5)
    np.testing.assert_allclose(outputs["output_1"], reference.expected["value"], rtol=1e-5)


def test_a_named_signature_is_served(two_signature_savedmodel) -> None:
    backend = loaded(two_signature_savedmodel, signature="double")
    meta = backend.metadata()
    assert [(s.name, s.datatype, s.shape) for s in meta.inputs] == [("x", "FP32", (-1, 2))]
    assert [(s.name, s.datatype, s.shape) for s in meta.outputs] == [
        ("rows", "INT64", (1,)),
        ("y", "FP32", (-1, 2)),
    ]
    outputs = backend.predict({"x": np.array([[1, 2], [3, 4], [5, 6]], dtype=np.float64)})
    np.testing.assert_array_equal(outputs["y"], [[2, 4], [6, 8], [10, 12]])
    assert outputs["y"].dtype == np.float32
    assert outputs["rows"].tolist() == [3]


def test_string_tensors_in_and_out(two_signature_savedmodel) -> None:
    backend = loaded(two_signature_savedmodel, signature="greet")
    assert backend.metadata().inputs[0].datatype == "BYTES"
    names = np.array([["ada"], [b"caf\xc3\xa9"]], dtype=object)
    outputs = backend.predict({"name": names})
    assert outputs["greeting"].dtype == object
    assert outputs["greeting"].tolist() == [["hello ada"], ["hello café"]]
    # Bytes that are not UTF-8 stay bytes.
    assert outputs["raw"].tolist() == [b"\xff\x00"]


def test_an_unknown_signature_lists_the_available_ones(two_signature_savedmodel) -> None:
    with pytest.raises(
        ValueError, match=r"no signature 'serving_default' \(available: double, greet\)"
    ):
        loaded(two_signature_savedmodel)


def test_unload_is_idempotent(two_signature_savedmodel) -> None:
    backend = loaded(two_signature_savedmodel, signature="double")
    backend.unload()
    backend.unload()
    with pytest.raises(RuntimeError, match="before load"):
        backend.predict({"x": np.zeros((1, 2), np.float32)})


def test_missing_tensorflow_names_the_extra(two_signature_savedmodel, block_import) -> None:
    block_import("tensorflow")
    with pytest.raises(BackendUnavailable, match=r"'tensorflow'.*driftgate\[tensorflow\]"):
        SavedModelBackend({}).load(two_signature_savedmodel)


def test_a_batch_of_zero_rows_answers_zero_rows(exported_savedmodel) -> None:
    outputs = loaded(exported_savedmodel).predict(
        {"features": np.empty((0, 3), np.float32), "extra": np.empty((0, 1), np.float32)}
    )
    assert outputs["output_0"].shape == (0, 2) and outputs["output_1"].shape == (0, 1)


def test_a_repository_version_without_the_signature_says_to_set_it_in_config_yaml(
    two_signature_savedmodel: Path, tmp_path: Path
) -> None:
    shutil.copytree(two_signature_savedmodel, tmp_path / "m" / "1")
    repository = ModelRepository(tmp_path)
    try:
        repository.scan()
        error = repository.entry("m").versions[1].error
    finally:
        repository.close()
    assert error == (
        f"{tmp_path}/m/1: the SavedModel has no signature 'serving_default' (available: "
        "double, greet); set `signature:` in the model's config.yaml"
    )


def test_a_pipeline_step_without_the_signature_says_to_set_it_in_the_steps_options(
    two_signature_savedmodel: Path, tmp_path: Path
) -> None:
    """It said to set `signature:` in the model's config.yaml, where a pipeline step's
    signature is not read."""
    shutil.copytree(two_signature_savedmodel, tmp_path / "toy")
    (tmp_path / "pipeline.yaml").write_text(
        "inputs: [{name: x, datatype: FP32, shape: [-1, 2]}]\n"
        "steps: [{name: double, model: toy, inputs: [x], outputs: [y]}]\n"
        "outputs: [y]\n"
    )
    with pytest.raises(PipelineConfigError) as failed:
        PipelineBackend({}).load(tmp_path / "pipeline.yaml")
    assert str(failed.value) == (
        f"{tmp_path}/pipeline.yaml: step 'double' (steps[0]): cannot load 'toy' (savedmodel): "
        "the SavedModel has no signature 'serving_default' (available: double, greet); set "
        "`options: {signature: ...}` in this step"
    )
