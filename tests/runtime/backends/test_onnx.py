"""The ONNX backend against real onnxruntime sessions."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from runtime.backends import create_backend
from runtime.backends.base import ModelBackend
from runtime.backends.diagnosis import LoadDiagnosis, load_failure
from runtime.backends.onnx import OnnxBackend
from runtime.errors import BackendUnavailable, BadRequest
from runtime.repository import ModelRepository


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


def identity_model(path: Path, opsets: dict[str, int], ir_version: int = 9) -> Path:
    """A real ONNX file, ``y = x``, stamped with the given opsets and IR version."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
    )
    imports = [helper.make_opsetid(domain, version) for domain, version in opsets.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=imports, ir_version=ir_version), path)
    return path


@pytest.mark.parametrize(
    ("opsets", "ir_version", "first_line"),
    [
        ({"": 99}, 9, r"ONNX opset 99 is not supported by onnxruntime {} \(highest \d+\): "
         r"convert the model for opset \d+ or lower \(skl2onnx's target_opset, "
         r"torch.onnx.export's opset_version\), or upgrade onnxruntime"),
        ({"": 17, "ai.onnx.ml": 99}, 9,
         r"ONNX opset 99 of domain ai.onnx.ml is not supported by onnxruntime {} \(highest \d+\): "
         r"upgrade onnxruntime, or convert the model without that domain's newer operators$"),
        ({"": 17}, 99, r"ONNX IR version 99 is not supported by onnxruntime {} \(highest \d+\): "
         r"save the model with IR version \d+ or lower"),
    ],
    ids=["opset", "ml-opset", "ir-version"],
)  # fmt: skip
def test_a_model_too_new_for_onnxruntime_is_said_so_in_a_line_before_its_words(
    tmp_path: Path, opsets: dict[str, int], ir_version: int, first_line: str
) -> None:
    """The load error was onnxruntime's C++ text: a source file, a function signature, and
    the opset somewhere in the middle of a paragraph."""
    import onnxruntime

    path = identity_model(tmp_path / "model.onnx", opsets, ir_version)
    with pytest.raises(LoadDiagnosis) as failed:
        OnnxBackend({}).load(path)
    line, detail = str(failed.value).split(" (Fail: [ONNXRuntimeError] : 1 : FAIL : ", 1)
    assert re.match(first_line.format(re.escape(onnxruntime.__version__)), line)
    assert f"Load model from {path} failed:" in detail  # onnxruntime's own words, kept after
    assert load_failure("onnx", path, failed.value) == f"{path}: {failed.value}"


def test_a_repository_version_too_new_for_onnxruntime_leads_with_the_file_and_the_line(
    tmp_path: Path,
) -> None:
    identity_model(tmp_path / "m" / "1" / "model.onnx", {"": 99})
    repository = ModelRepository(tmp_path)
    try:
        repository.scan()
        error = repository.entry("m").versions[1].error
    finally:
        repository.close()
    assert error is not None
    assert error.startswith(f"{tmp_path}/m/1/model.onnx: ONNX opset 99 is not supported by ")
