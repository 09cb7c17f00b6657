"""What config.yaml's ``format:`` and ``backend:`` hand a backend, and a pipeline model step
given the wrong file: mistakes are named, not ignored.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.backends import artefact_for_format, create_backend, detect_format
from runtime.backends.onnx import OnnxBackend
from runtime.pipeline import PipelineBackend
from runtime.pipeline.spec import PipelineConfigError
from runtime.repository import ModelRepository, VersionState


def test_an_option_the_backend_does_not_take_is_an_error_naming_those_it_takes() -> None:
    """``intra_op_thread: 4`` was ignored without a word."""
    with pytest.raises(ValueError) as failed:
        create_backend("onnx", {"intra_op_thread": 4})
    assert str(failed.value) == (
        "unknown backend option(s) ['intra_op_thread'] for format 'onnx' (config.yaml "
        "`backend:`, or a pipeline model step's `options:`); onnx takes: inter_op_threads, "
        "intra_op_threads"
    )
    with pytest.raises(ValueError, match=r"\['threads'\] for format 'keras'.*keras takes: none"):
        create_backend("keras", {"threads": 2})
    # config.yaml's own `signature:` key reaches the backend through the same options.
    assert create_backend("savedmodel", {"signature": "classify"}) is not None


@pytest.mark.parametrize("fmt", ["onnx", "keras", "pmml", "pipeline"])
def test_a_signature_for_a_model_that_has_none_is_an_error_saying_what_it_names(fmt: str) -> None:
    """Every format took `signature` without a word, a step's `options:` included."""
    with pytest.raises(ValueError) as failed:
        create_backend(fmt, {"signature": "serving_default"})
    assert f"unknown backend option(s) ['signature'] for format '{fmt}'" in str(failed.value)
    assert str(failed.value).endswith(
        "(`signature` names a SavedModel's signature, set by config.yaml's `signature:` or a "
        f"step's `options:`; a {fmt} model has none)"
    )


@pytest.mark.parametrize("value", ["two", -1, 1.5, True])
def test_a_thread_count_that_is_no_whole_number_says_which_option(value: object) -> None:
    """``intra_op_threads: two`` said "invalid literal for int() with base 10: 'two'"."""
    with pytest.raises(ValueError, match=r"backend option 'intra_op_threads' must be a whole"):
        OnnxBackend({"intra_op_threads": value})
    assert OnnxBackend({"intra_op_threads": 0, "inter_op_threads": 2}).inter_op_threads == 2


def test_with_format_set_hidden_files_and_a_readme_do_not_count(tmp_path: Path) -> None:
    """`format: onnx` failed on "holds 2 files" with a README.md or .DS_Store beside."""
    (tmp_path / "model.onnx").write_bytes(b"\x08\x08")
    (tmp_path / ".DS_Store").write_bytes(b"\x00")
    assert artefact_for_format(tmp_path, "onnx") == tmp_path / "model.onnx"
    (tmp_path / "README.md").write_text("trained on 2024 data\n")
    assert artefact_for_format(tmp_path, "onnx") == tmp_path / "model.onnx"
    (tmp_path / "extra.bin").write_bytes(b"\x00")
    (tmp_path / "model.onnx").rename(tmp_path / "model.bin")
    with pytest.raises(ValueError, match=r"holds 3 files \(README.md, extra.bin, model.bin\)"):
        artefact_for_format(tmp_path, "onnx")


def test_with_format_savedmodel_the_model_may_sit_in_one_sub_folder(tmp_path: Path) -> None:
    """As without `format:`; it said "SavedModel file does not exist at: 1/saved_model.pb"."""
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "saved_model.pb").write_bytes(b"")
    assert artefact_for_format(tmp_path, "savedmodel") == tmp_path / "export"
    (tmp_path / "saved_model.pb").write_bytes(b"")
    assert artefact_for_format(tmp_path, "savedmodel") == tmp_path


PIPELINE = """
inputs:
  - {name: x, datatype: FP32, shape: [-1, 1]}
steps:
  - name: model
    model: model.onnx
    inputs: [x]
    outputs: [y]
    OPTIONS
outputs: [y]
"""


def test_a_pipeline_step_with_the_wrong_file_says_what_the_file_is(tmp_path: Path) -> None:
    import h5py

    with h5py.File(tmp_path / "model.onnx", "w") as file:
        file.create_dataset("weights", data=[1.0])
    (tmp_path / "pipeline.yaml").write_text(PIPELINE.replace("OPTIONS", ""))
    with pytest.raises(PipelineConfigError) as failed:
        PipelineBackend().load(tmp_path / "pipeline.yaml")
    assert (
        "step 'model' (steps[0]): cannot load 'model.onnx' (onnx): it is not an ONNX model: it "
        "is an HDF5 file, as Keras writes `.h5` models; rename it to model.h5"
    ) in str(failed.value)


def test_a_pipeline_step_option_its_backend_does_not_take_is_named(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"")
    options = "options: {intra_op_thread: 2}"
    (tmp_path / "pipeline.yaml").write_text(PIPELINE.replace("OPTIONS", options))
    with pytest.raises(
        PipelineConfigError,
        match=r"step 'model' \(steps\[0\]\): options: unknown backend option\(s\) "
        r"\['intra_op_thread'\] for format 'onnx'",
    ):
        PipelineBackend().load(tmp_path / "pipeline.yaml")


def test_without_format_hidden_files_do_not_count_either(tmp_path: Path) -> None:
    """A copy from macOS leaves `._model.onnx` beside model.onnx: "more than one model
    artefact (._model.onnx, model.onnx)", where `format: onnx` took model.onnx."""
    (tmp_path / "model.onnx").write_bytes(b"\x08\x08")
    (tmp_path / "._model.onnx").write_bytes(b"\x00\x05\x16\x07")
    assert detect_format(tmp_path) == ("onnx", tmp_path / "model.onnx")
    assert artefact_for_format(tmp_path, "onnx") == tmp_path / "model.onnx"


@pytest.mark.parametrize("fmt", ["pipeline", "onnx"])
def test_the_pipelines_own_bookkeeping_is_no_option_a_user_may_set(fmt: str) -> None:
    """`backend: {pipeline_parents: [...]}` was taken without a word, by every format."""
    with pytest.raises(ValueError) as failed:
        create_backend(fmt, {"pipeline_parents": ["/models/m/1/pipeline.yaml"]})
    assert str(failed.value).startswith(
        f"unknown backend option(s) ['pipeline_parents'] for format '{fmt}' (config.yaml "
        "`backend:`, or a pipeline model step's `options:`)"
    )


def test_a_config_yaml_setting_pipeline_parents_fails_the_load_naming_it(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "1" / "pipeline.yaml").write_text(
        "inputs: [{name: x, datatype: FP32}]\noutputs: [x]\n"
    )
    (tmp_path / "m" / "config.yaml").write_text("backend: {pipeline_parents: []}\n")
    repository = ModelRepository(tmp_path)
    try:
        repository.scan()
        version = repository.entry("m").versions[1]
    finally:
        repository.close()
    assert version.state is VersionState.FAILED
    assert version.error == (
        "ValueError: unknown backend option(s) ['pipeline_parents'] for format 'pipeline' "
        "(config.yaml `backend:`, or a pipeline model step's `options:`); pipeline takes: none"
    )
