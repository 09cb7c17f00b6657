"""The ONNX backend against real onnxruntime sessions."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.backends import create_backend
from runtime.backends.base import ModelBackend
from runtime.backends.onnx import OnnxBackend
from runtime.errors import BackendUnavailable, BadRequest


def loaded(path, **options) -> OnnxBackend:
    backend = OnnxBackend(options)
    backend.load(path)
    return backend


def test_registry_builds_the_backend_without_loading_anything() -> None:
    backend = create_backend("onnx", {"intra_op_threads": 2})
    assert isinstance(backend, OnnxBackend)
    assert isinstance(backend, ModelBackend)
    assert backend.intra_op_threads == 2


def test_metadata_is_read_from_the_graph(onnx_logreg) -> None:
    meta = loaded(onnx_logreg.path).metadata()
    assert meta.platform == "onnx"
    assert [(s.name, s.datatype, s.shape) for s in meta.inputs] == [("X", "FP32", (-1, 3))]
    assert [(s.name, s.datatype, s.shape) for s in meta.outputs] == [
        ("label", "INT64", (-1,)),
        ("probabilities", "FP32", (-1, 2)),
    ]
    assert meta.extra["producer"] == "skl2onnx"
    assert "skipped_outputs" not in meta.extra


def test_predictions_match_scikit_learn(onnx_logreg) -> None:
    outputs = loaded(onnx_logreg.path).predict(onnx_logreg.inputs)
    np.testing.assert_array_equal(outputs["label"], onnx_logreg.expected["label"])
    np.testing.assert_allclose(
        outputs["probabilities"], onnx_logreg.expected["probabilities"], rtol=1e-5
    )


def test_inputs_are_cast_to_the_graph_dtype(onnx_logreg) -> None:
    as_float64 = {"X": onnx_logreg.inputs["X"].astype(np.float64)}
    outputs = loaded(onnx_logreg.path).predict(as_float64)
    np.testing.assert_array_equal(outputs["label"], onnx_logreg.expected["label"])


def test_zipmap_output_is_skipped_and_explained(onnx_zipmap) -> None:
    backend = loaded(onnx_zipmap.path)
    meta = backend.metadata()
    assert [s.name for s in meta.outputs] == ["output_label"]
    assert "zipmap=False" in meta.extra["skipped_outputs"]["output_probability"]
    outputs = backend.predict(onnx_zipmap.inputs)
    assert list(outputs) == ["output_label"]
    np.testing.assert_array_equal(outputs["output_label"], onnx_zipmap.expected["label"])


def test_float16_bool_and_string_tensors(onnx_mixed) -> None:
    backend = loaded(onnx_mixed)
    meta = backend.metadata()
    assert [(s.name, s.datatype, s.shape) for s in meta.inputs] == [
        ("x", "FP16", (-1, 2)),
        ("s", "BYTES", (-1, 1)),
    ]
    assert [(s.name, s.datatype) for s in meta.outputs] == [
        ("y", "FP16"),
        ("s_out", "BYTES"),
        ("positive", "BOOL"),
    ]
    text = np.array([["héllo"], [b"caf\xc3\xa9"]], dtype=object)
    outputs = backend.predict({"x": np.array([[1.5, -2.0], [0.0, 3.0]]), "s": text})
    assert outputs["y"].dtype == np.float16
    np.testing.assert_array_equal(outputs["y"], [[3.0, -4.0], [0.0, 6.0]])
    assert outputs["s_out"].tolist() == [["héllo"], ["café"]]
    np.testing.assert_array_equal(outputs["positive"], [[True, False], [False, True]])


def test_bytes_that_are_not_text_are_a_bad_request(onnx_mixed) -> None:
    inputs = {"x": np.zeros((1, 2), np.float16), "s": np.array([[b"\xff"]], dtype=object)}
    with pytest.raises(BadRequest, match=r"'s'.*UTF-8"):
        loaded(onnx_mixed).predict(inputs)


def test_a_shape_the_graph_rejects_is_a_bad_request(onnx_logreg) -> None:
    with pytest.raises(BadRequest, match="ONNX model rejected"):
        loaded(onnx_logreg.path).predict({"X": np.zeros((2, 5), np.float32)})


def test_unload_is_idempotent(onnx_logreg) -> None:
    backend = loaded(onnx_logreg.path)
    backend.unload()
    backend.unload()
    with pytest.raises(RuntimeError, match="before load"):
        backend.predict(onnx_logreg.inputs)


def test_missing_onnxruntime_names_the_extra(onnx_logreg, block_import) -> None:
    block_import("onnxruntime")
    with pytest.raises(BackendUnavailable, match=r"'onnxruntime'.*driftgate\[onnx\]"):
        OnnxBackend({}).load(onnx_logreg.path)


def test_a_batch_of_zero_rows_answers_zero_rows(onnx_logreg, onnx_mixed) -> None:
    outputs = loaded(onnx_logreg.path).predict({"X": np.empty((0, 3), np.float32)})
    assert outputs["label"].shape == (0,) and outputs["probabilities"].shape == (0, 2)
    mixed = loaded(onnx_mixed).predict(
        {"x": np.empty((0, 2), np.float16), "s": np.empty((0, 1), dtype=object)}
    )
    assert {name: array.shape for name, array in mixed.items()} == {
        "y": (0, 2), "s_out": (0, 1), "positive": (0, 2)
    }  # fmt: skip
