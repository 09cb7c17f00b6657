"""A model file that its backend cannot load: the error names the file and what it holds.

h5py said "Unable to synchronously open file (file signature not found)", PMML4S
"java.nio.charset.MalformedInputException: Input length = 1", neither naming the file, what
it was or what to do. Each case loads a real file through the repository's own load, with
the real framework.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from runtime.backends.diagnosis import diagnose, sniff
from runtime.config import ModelConfig
from runtime.model_version import ModelVersion, VersionState, load_version

PMML = """<?xml version="1.0" encoding="UTF-8"?>
<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4">
  <Header/>
  <DataDictionary numberOfFields="2">
    <DataField name="x" optype="continuous" dataType="double"/>
    <DataField name="y" optype="continuous" dataType="double"/>
  </DataDictionary>
  <RegressionModel functionName="regression">
    <MiningSchema>
      <MiningField name="x"/>
      <MiningField name="y" usageType="target"/>
    </MiningSchema>
    <RegressionTable intercept="1.0">
      <NumericPredictor name="x" coefficient="2.0"/>
    </RegressionTable>
  </RegressionModel>
</PMML>
"""


def hdf5_file(path: Path) -> Path:
    import h5py

    with h5py.File(path, "w") as file:
        file.create_dataset("weights", data=[1.0, 2.0])
    return path


def zip_file(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
    return path


def failed_load(version_dir: Path, name: str, content: bytes | str) -> str:
    """Load ``name`` (holding ``content``) as a repository version; its error."""
    version_dir.mkdir(parents=True, exist_ok=True)
    artefact = version_dir / name
    if isinstance(content, str):
        artefact.write_text(content)
    else:
        artefact.write_bytes(content)
    candidate = ModelVersion(model="m", version=1, path=version_dir)
    load_version(ModelConfig(), candidate, None)
    assert candidate.state is VersionState.FAILED
    assert candidate.error is not None
    return candidate.error


def test_an_hdf5_file_named_onnx_is_named_with_the_name_to_give_it(tmp_path: Path) -> None:
    content = hdf5_file(tmp_path / "weights.h5").read_bytes()
    error = failed_load(tmp_path / "1", "model.onnx", content)
    assert error.startswith(
        f"{tmp_path / '1' / 'model.onnx'} is not an ONNX model: it is an HDF5 file, as Keras "
        "writes `.h5` models; rename it to model.h5 to serve it as keras (InvalidProtobuf: "
    )


def test_a_keras3_archive_named_h5_is_told_to_be_renamed_keras(tmp_path: Path) -> None:
    content = zip_file(tmp_path / "model.zip").read_bytes()
    error = failed_load(tmp_path / "1", "model.h5", content)
    assert error.startswith(
        f"{tmp_path / '1' / 'model.h5'} is a zip archive, as Keras 3 writes `.keras` models, "
        "but its name ends in .h5: rename it to model.keras (OSError: Unable to synchronously"
    )


@pytest.mark.java
def test_a_pmml_document_named_h5_is_told_to_be_renamed_pmml(tmp_path: Path) -> None:
    error = failed_load(tmp_path / "1", "model.h5", PMML)
    assert "model.h5 is not a Keras model file: it is a PMML document; rename it to model.pmml" in (
        error
    )


@pytest.mark.java
def test_a_binary_file_named_pmml_is_not_xml(tmp_path: Path) -> None:
    """PMML4S said "java.nio.charset.MalformedInputException: Input length = 1"."""
    error = failed_load(tmp_path / "1", "model.pmml", b"\x08\x07\x12\x0bbackend-test\x80\xff")
    assert error == (
        f"{tmp_path / '1' / 'model.pmml'} is not well-formed XML, so not a PMML document: "
        "not well-formed (invalid token): line 1, column 0"
    )


@pytest.mark.java
@pytest.mark.parametrize(
    ("content", "where"),
    [
        (PMML[: PMML.index("<MiningSchema>")], "no element found: line 9, column 4"),
        (PMML.replace("</RegressionModel>", "</RegresionModel>"), "mismatched tag: line 16"),
    ],
    ids=["cut-short", "mistyped-closing-tag"],
)
def test_a_pmml_file_that_is_not_well_formed_fails_with_line_and_column(
    tmp_path: Path, content: str, where: str
) -> None:
    """PMML4S loaded both: the one cut short as a model with no inputs, failing every call."""
    error = failed_load(tmp_path / "1", "model.pmml", content)
    assert error.startswith(
        f"{tmp_path / '1' / 'model.pmml'} is not well-formed XML, so not a PMML document: {where}"
    )


@pytest.mark.java
def test_a_well_formed_pmml_the_evaluator_refuses_is_named_with_its_reason(tmp_path: Path) -> None:
    error = failed_load(
        tmp_path / "1", "model.pmml", PMML.replace('name="x" coef', 'name="z" coef')
    )
    assert error.startswith(f"{tmp_path / '1' / 'model.pmml'}: PMMLError: ")
    assert "'z'" in error


def test_an_empty_file_asks_whether_the_copy_finished(tmp_path: Path) -> None:
    error = failed_load(tmp_path / "1", "model.onnx", b"")
    assert error.startswith(
        f"{tmp_path / '1' / 'model.onnx'} is empty (0 bytes): was it copied completely?"
    )


def test_a_text_file_and_a_git_lfs_pointer_are_said_to_be_one(tmp_path: Path) -> None:
    text = failed_load(tmp_path / "1", "model.onnx", "this is not a model\n")
    assert "model.onnx is not an ONNX model: it is a text file (InvalidProtobuf" in text
    pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 12345\n"
    lfs = failed_load(tmp_path / "2", "model.h5", pointer)
    assert "model.h5 is a Git LFS pointer, not the model itself: fetch it with `git lfs pull`" in (
        lfs
    )


def test_files_of_the_right_kind_are_not_diagnosed(tmp_path: Path) -> None:
    """Only another format's signature counts: a file is never refused on a guess."""
    (tmp_path / "model.pmml").write_text(PMML)
    assert diagnose("pmml", tmp_path / "model.pmml") is None
    assert diagnose("keras", hdf5_file(tmp_path / "model.h5")) is None
    assert diagnose("keras", hdf5_file(tmp_path / "model.hdf5")) is None
    assert diagnose("keras", zip_file(tmp_path / "model.keras")) is None
    (tmp_path / "model.onnx").write_bytes(b"\x08\x08\x12\x07skl2onnx")
    assert sniff(tmp_path / "model.onnx") is None
    assert diagnose("onnx", tmp_path / "model.onnx") is None
    assert diagnose("savedmodel", tmp_path) is None


def test_a_zip_archive_keras_did_not_write_is_not_told_to_be_renamed_keras(
    tmp_path: Path,
) -> None:
    """Every zip archive was "as Keras 3 writes `.keras` models; rename it to model.keras":
    a PyTorch file (torch.save writes a zip archive) saved as model.onnx, too."""
    with zipfile.ZipFile(tmp_path / "model.pt", "w") as archive:
        archive.writestr("model/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("model/version", "3\n")
    error = failed_load(tmp_path / "1", "model.onnx", (tmp_path / "model.pt").read_bytes())
    assert error.startswith(
        f"{tmp_path / '1' / 'model.onnx'} is a PyTorch file (torch.save), which the runtime "
        "does not serve: export the model to ONNX (torch.onnx.export) and serve the .onnx file "
        "(InvalidProtobuf: "
    )
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:
        archive.writestr("model.onnx", b"\x08\x08")
    other = diagnose("onnx", tmp_path / "other.zip")
    assert other == (
        "is not an ONNX model: it is a zip archive that Keras 3 did not write (unzip it if it "
        "holds the model)"
    )


def test_a_keras_file_without_a_suffix_is_told_to_take_one(tmp_path: Path) -> None:
    """It said "but its name ends in : rename it to model.h5"."""
    hdf5_file(tmp_path / "model")
    assert diagnose("keras", tmp_path / "model") == (
        "is an HDF5 file, as Keras writes `.h5` models, but its name has no suffix: rename it "
        "to model.h5"
    )
