"""``pipeline.yaml``: validation errors that name the step, and pipelines that run end to end.

A tiny stand-in backend (``StandIn``, format ``standin``) checks model-step bindings and
unloading without a framework; a hand-made ONNX model runs a real processor + ONNX chain.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from runtime.backends import FORMATS, create_backend
from runtime.backends.base import ModelBackend
from runtime.errors import BadRequest
from runtime.pipeline import PipelineBackend, PipelineConfigError, PipelineStepError
from runtime.tensors import ModelMetadata, TensorSpec


class StandIn:
    """A model of format ``standin``: ``y = 2 * x`` on ``x`` FP64 ``[-1, 2]``."""

    format = "standin"
    unloaded: list[Path] = []

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = dict(options)
        self.path: Path | None = None

    def load(self, path: Path) -> None:
        if path.read_text().strip() == "broken":
            raise OSError("corrupt artefact")
        self.path = path

    def metadata(self) -> ModelMetadata:
        return ModelMetadata(
            inputs=(TensorSpec("x", "FP64", (-1, 2)),),
            outputs=(TensorSpec("y", "FP64", (-1, 2)),),
            platform=self.format,
        )

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert inputs["x"].dtype == np.float64  # the pipeline casts FP32 -> FP64
        return {"y": inputs["x"] * 2}

    def unload(self) -> None:
        if self.path is not None:
            StandIn.unloaded.append(self.path)
        self.path = None


@pytest.fixture(autouse=True)
def standin_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FORMATS, "standin", f"{__name__}:StandIn")
    StandIn.unloaded = []


def write_pipeline(folder: Path, document: dict[str, Any] | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pipeline.yaml"
    text = document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False)
    path.write_text(text)
    return path


def load(path: Path) -> PipelineBackend:
    backend = PipelineBackend({})
    backend.load(path)
    return backend


INPUTS = [
    {"name": "a", "datatype": "FP32", "shape": [-1, 1], "nullable": True},
    {"name": "b", "datatype": "FP32", "shape": [-1, 1]},
    {"name": "color", "datatype": "BYTES", "shape": [-1, 1], "allowed_values": ["red", "blue"]},
]


def standin_pipeline(**model_step: Any) -> dict[str, Any]:
    step = {"name": "double", "model": "model.standin", "format": "standin",
            "inputs": {"x": "ab"}, "outputs": {"y": "doubled"}, **model_step}  # fmt: skip
    return {
        "inputs": INPUTS,
        "steps": [
            {"name": "fill", "processor": "impute", "inputs": ["a"], "outputs": ["a_filled"],
             "params": {"value": 0.5}},
            {"name": "join", "processor": "concat", "inputs": ["a_filled", "b"], "outputs": ["ab"]},
            step,
        ],
        "outputs": ["doubled"],
    }  # fmt: skip


@pytest.fixture
def standin_folder(tmp_path: Path) -> Path:
    (tmp_path / "model.standin").write_text("ok")
    return tmp_path


# --- running ------------------------------------------------------------------------------


def test_processors_and_a_model_step_run_in_order(standin_folder: Path):
    backend = load(write_pipeline(standin_folder, standin_pipeline()))
    assert isinstance(backend, ModelBackend)
    out = backend.predict(
        {
            "a": np.array([[np.nan], [1.0]], np.float32),
            "b": np.array([[2.0], [3.0]], np.float32),
            "color": np.array([["red"], ["blue"]], dtype=object),
        }
    )
    assert out["doubled"].tolist() == [[1.0, 4.0], [2.0, 6.0]]


def test_metadata_carries_declared_inputs_and_derives_outputs(standin_folder: Path):
    metadata = load(write_pipeline(standin_folder, standin_pipeline())).metadata()
    assert metadata.platform == "pipeline"
    assert metadata.input("a") == TensorSpec("a", "FP32", (-1, 1), nullable=True)
    color = metadata.input("color")
    assert color is not None and color.allowed_values == ("red", "blue")
    assert metadata.outputs == (TensorSpec("doubled", "FP64", (-1, 2)),)
    assert [step["name"] for step in metadata.extra["steps"]] == ["fill", "join", "double"]


def test_create_backend_builds_a_pipeline(standin_folder: Path):
    backend = create_backend("pipeline", {})
    backend.load(write_pipeline(standin_folder, standin_pipeline()))
    assert backend.metadata().output("doubled") is not None


def test_unload_unloads_model_steps_and_is_safe_twice(standin_folder: Path):
    backend = load(write_pipeline(standin_folder, standin_pipeline()))
    backend.unload()
    backend.unload()
    assert StandIn.unloaded == [standin_folder / "model.standin"]


def test_a_client_error_in_a_step_names_the_step(tmp_path: Path):
    document = {
        "inputs": INPUTS,
        "steps": [{"name": "encode", "processor": "onehot", "inputs": ["color"],
                   "outputs": ["onehot"],
                   "params": {"categories": ["red", "blue"], "handle_unknown": "error"}}],
        "outputs": ["onehot"],
    }  # fmt: skip
    backend = load(write_pipeline(tmp_path, document))
    inputs = {"a": np.zeros((1, 1)), "b": np.zeros((1, 1)), "color": np.array([["green"]], object)}
    with pytest.raises(BadRequest, match="step 'encode': input 'color' has value 'green'"):
        backend.predict(inputs)
    with pytest.raises(BadRequest, match="missing input 'color'"):
        backend.predict({"a": np.zeros((1, 1)), "b": np.zeros((1, 1))})


def test_a_user_processor_class_is_an_extension_point(tmp_path: Path):
    document = {
        "inputs": INPUTS,
        "steps": [{"name": "twice", "processor": "tests.runtime.test_processors:Doubler",
                   "inputs": ["b"], "outputs": ["b2"], "params": {"factor": 3}}],
        "outputs": ["b2"],
    }  # fmt: skip
    backend = load(write_pipeline(tmp_path, document))
    out = backend.predict({"a": None, "b": np.array([[2.0]]), "color": None})  # type: ignore[dict-item]
    assert out["b2"].tolist() == [[6.0]]


def test_a_pipeline_can_include_another(standin_folder: Path):
    write_pipeline(standin_folder / "inner", standin_pipeline(model="../model.standin"))
    # The inner pipeline's model lies outside its own folder: refused, named by file and step.
    outer = {
        "inputs": INPUTS,
        "steps": [{"name": "inner", "model": "inner/pipeline.yaml", "inputs": ["a", "b", "color"],
                   "outputs": ["doubled"]}],
        "outputs": ["doubled"],
    }  # fmt: skip
    with pytest.raises(PipelineConfigError, match=r"step 'inner'.*step 'double'.*points outside"):
        load(write_pipeline(standin_folder, outer))
    (standin_folder / "inner" / "model.standin").write_text("ok")
    write_pipeline(standin_folder / "inner", standin_pipeline())
    backend = load(write_pipeline(standin_folder, outer))
    out = backend.predict(
        {"a": np.array([[1.0]], np.float32), "b": np.array([[1.0]], np.float32),
         "color": np.array([["red"]], object)}
    )  # fmt: skip
    assert out["doubled"].tolist() == [[2.0, 2.0]]


def test_a_pipeline_cannot_include_itself(tmp_path: Path):
    document = {
        "inputs": INPUTS,
        "steps": [{"name": "loop", "model": "pipeline.yaml", "inputs": ["a"], "outputs": ["x"]}],
        "outputs": ["x"],
    }
    with pytest.raises(PipelineConfigError, match=r"step 'loop'.*includes itself"):
        load(write_pipeline(tmp_path, document))


def test_a_pipeline_cannot_include_its_own_folder(tmp_path: Path):
    # "." names the folder, whose pipeline.yaml is this file: a cycle, not a deep recursion.
    document = {
        "inputs": INPUTS,
        "steps": [{"name": "loop", "model": ".", "format": "pipeline", "inputs": ["a"],
                   "outputs": ["x"]}],
        "outputs": ["x"],
    }  # fmt: skip
    path = write_pipeline(tmp_path, document)
    with pytest.raises(PipelineConfigError, match=r"step 'loop'.*includes itself") as raised:
        load(path)
    assert str(raised.value).count(str(path)) == 1


class Exploding(StandIn):
    """A ``standin`` whose framework fails on a row of 13s (a bug, not a client error)."""

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if (inputs["x"] == 13).any():
            raise RuntimeError("kernel crashed")
        return super().predict(inputs)


def test_a_tensor_declared_loosely_is_checked_against_the_model_when_the_request_runs(
    standin_folder: Path,
):
    # Input "wide" is [-1, -1]: the load cannot know its width, so the request is checked.
    document = {
        "inputs": [{"name": "wide", "datatype": "FP32", "shape": [-1, -1]}],
        "steps": [model_step(name="double", inputs={"x": "wide"}, outputs={"y": "out"})],
        "outputs": ["out"],
    }
    backend = load(write_pipeline(standin_folder, document))
    assert backend.predict({"wide": np.ones((1, 2), np.float32)})["out"].tolist() == [[2, 2]]
    with pytest.raises(
        BadRequest,
        match=r"step 'double': tensor 'wide' has shape \[1, 3\] but model input 'x' "
        r"wants \[\?, 2\]",
    ):
        backend.predict({"wide": np.ones((1, 3), np.float32)})


def test_a_step_that_fails_unexpectedly_is_named_in_the_error(
    standin_folder: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(FORMATS, "standin", f"{__name__}:Exploding")
    backend = load(write_pipeline(standin_folder, standin_pipeline()))
    inputs = {"a": np.array([[13.0]], np.float32), "b": np.array([[1.0]], np.float32),
              "color": np.array([["red"]], object)}  # fmt: skip
    with pytest.raises(PipelineStepError, match=r"step 'double' failed: RuntimeError: kernel") as e:
        backend.predict(inputs)
    assert isinstance(e.value.__cause__, RuntimeError)


def test_a_mismatch_between_two_steps_names_both(standin_folder: Path):
    fill = step(name="fill", outputs=["a_filled"])
    join = {**JOIN, "inputs": ["a", "b", "a_filled"]}  # [-1, 3], the model takes [-1, 2]
    with pytest.raises(
        PipelineConfigError,
        match=r"step 'm'.*inputs: x: tensor 'ab' \(written by step 'join'\) has shape "
        r"\[-1, 3\] but the model wants \[-1, 2\]",
    ):
        load(write_pipeline(standin_folder, pipeline(fill, join, model_step())))


# --- validation: every error names the file, the step and the field -----------------------


def step(**fields: Any) -> dict[str, Any]:
    return {"name": "s", "processor": "impute", "inputs": ["a"], "outputs": ["out"],
            "params": {"value": 0.0}, **fields}  # fmt: skip


def pipeline(*steps: dict[str, Any], outputs: list[str] | None = None) -> dict[str, Any]:
    return {"inputs": INPUTS, "steps": list(steps), "outputs": outputs or ["out"]}


def case(document: Any, message: str, id: str) -> Any:
    return pytest.param(document, message, id=id)


def no_model(**fields: Any) -> dict[str, Any]:
    return {"name": "m", "inputs": ["a"], "outputs": ["out"], **fields}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        case(
            pipeline(step(processor="one_hot")),
            r"step 's' \(steps\[0\]\): processor: unknown processor 'one_hot'",
            "unknown processor",
        ),
        case(
            pipeline(step(inputs=["nope"])),
            r"step 's' \(steps\[0\]\): inputs: unknown tensor 'nope' "
            r"\(known at this point: a, b, color\)",
            "unknown tensor",
        ),
        case(
            pipeline(step(inputs=["later"]), step(name="t", outputs=["later"])),
            r"step 's' \(steps\[0\]\): inputs: tensor 'later' is used before it is produced "
            r"\(by step 't'\)",
            "used before produced",
        ),
        case(
            pipeline(step(outputs=["b"])),
            r"step 's'.*outputs: tensor 'b' is already written by the pipeline's inputs",
            "tensor written twice",
        ),
        case(
            pipeline(step(), step()),
            r"step 's' \(steps\[1\]\): another step has the same name",
            "duplicate step",
        ),
        case(
            pipeline(step(params={"value": "zero"})),
            r"step 's'.*impute: input 'a' is numeric; its fill value must be a number",
            "bad params",
        ),
        case(
            pipeline(step(params={})),
            r"step 's'.*impute: set exactly one of params\.value or params\.values",
            "missing params",
        ),
        case(
            pipeline(step(outputs=["x", "y"]), outputs=["x"]),
            r"step 's'.*outputs: processor 'impute' produces 1 tensor\(s\) here but 2",
            "output count",
        ),
        case(
            pipeline(step(colour="red")),
            r"step 's'.*unknown key\(s\) \['colour'\]",
            "unknown step key",
        ),
        case(
            pipeline(step(model="m.onnx")),
            r"step 's'.*set exactly one of 'processor'",
            "processor and model",
        ),
        case(
            pipeline(step(), outputs=["missing"]),
            r"outputs: unknown tensor 'missing'",
            "unknown output",
        ),
        case(
            pipeline(no_model(model="m.onnx", params={"value": 0})),
            r"step 'm'.*'params' belongs to processor steps",
            "params on a model step",
        ),
        case(
            pipeline(no_model(model="absent.onnx")),
            r"step 'm' \(steps\[0\]\): model: file 'absent.onnx' not found",
            "missing model file",
        ),
        case(
            pipeline(no_model(model="../x.onnx")),
            r"step 'm'.*model: '../x.onnx' points outside",
            "model outside the folder",
        ),
        case(
            {"inputs": [{"name": "a", "datatype": "FLOAT"}], "outputs": ["a"]},
            r"input 'a' \(inputs\[0\]\): datatype: unknown datatype 'FLOAT'",
            "bad datatype",
        ),
        case(
            {"inputs": [{"name": "a", "datatype": "FP32", "shape": [0]}], "outputs": ["a"]},
            r"input 'a'.*shape must be",
            "bad shape",
        ),
        case(
            {"inputs": INPUTS, "steps": [], "output": ["a"]},
            r"the file: unknown key\(s\) \['output'\]",
            "unknown top-level key",
        ),
        case("inputs: [unclosed", "not valid YAML", "bad YAML"),
    ],
)
def test_load_refuses_an_invalid_pipeline(tmp_path: Path, document: Any, message: str):
    path = write_pipeline(tmp_path, document)
    with pytest.raises(PipelineConfigError, match=message) as raised:
        load(path)
    assert str(raised.value).startswith(str(path))


def model_step(**fields: Any) -> dict[str, Any]:
    return {"name": "m", "model": "model.standin", "format": "standin", "inputs": {"x": "ab"},
            "outputs": {"y": "out"}, **fields}  # fmt: skip


JOIN = {"name": "join", "processor": "concat", "inputs": ["a", "b"], "outputs": ["ab"]}


@pytest.mark.parametrize(
    ("model", "message"),
    [
        case(
            model_step(inputs={"z": "ab"}),
            r"step 'm'.*inputs: the model has no input 'z' \(its inputs: x\)",
            "unknown model input",
        ),
        case(
            model_step(outputs={"w": "out"}),
            r"step 'm'.*outputs: the model has no output 'w'",
            "unknown model output",
        ),
        case(
            model_step(inputs={"x": "color"}),
            r"step 'm'.*inputs: x: tensor 'color' \(a pipeline input\) is BYTES but the model "
            r"wants FP64; "
            r"add a 'cast' step",
            "text into numbers",
        ),
        case(
            model_step(inputs={"x": "a"}),
            r"step 'm'.*tensor 'a' \(a pipeline input\) has shape \[-1, 1\] but the model "
            r"wants \[-1, 2\]",
            "shape mismatch",
        ),
        case(
            model_step(format="tensorflow"),
            r"step 'm'.*format: unknown format 'tensorflow'",
            "unknown format",
        ),
        case(
            model_step(format=None),
            r"step 'm'.*cannot tell the format of 'model.standin'.*add 'format:'",
            "unknown suffix",
        ),
    ],
)
def test_load_checks_model_steps_against_the_model(standin_folder: Path, model, message):
    model = {k: v for k, v in model.items() if v is not None}
    with pytest.raises(PipelineConfigError, match=message):
        load(write_pipeline(standin_folder, pipeline(JOIN, model)))
    # A model that loaded and then failed its checks is unloaded; format errors come earlier.
    built = "format" not in message
    assert StandIn.unloaded == ([standin_folder / "model.standin"] if built else [])


def test_a_model_that_fails_to_load_is_reported_and_earlier_ones_unloaded(standin_folder: Path):
    (standin_folder / "broken.standin").write_text("broken")
    first = model_step(name="first", outputs={"y": "mid"})
    second = model_step(name="second", model="broken.standin", inputs={"x": "mid"})
    with pytest.raises(
        PipelineConfigError,
        match=r"step 'second'.*cannot load 'broken.standin' \(standin\): corrupt",
    ):
        load(write_pipeline(standin_folder, pipeline(JOIN, first, second)))  # fmt: skip
    assert StandIn.unloaded == [standin_folder / "model.standin"]


# --- a real ONNX model --------------------------------------------------------------------


def tiny_onnx(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``probabilities = softmax(x @ w + b)`` on ``x`` FP32 ``[N, 3]``, ``label`` its argmax."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.array([[1.0, -1.0], [0.5, 0.25], [-2.0, 2.0]], np.float32)
    b = np.array([0.1, -0.1], np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
            helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=1),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch", 1]),
        ],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return w, b


def test_end_to_end_with_an_onnx_model(tmp_path: Path):
    pytest.importorskip("onnxruntime")
    w, b = tiny_onnx(tmp_path / "tiny.onnx")
    document = {
        "inputs": INPUTS,
        "steps": [
            {"name": "fill", "processor": "impute", "inputs": ["a"], "outputs": ["a_filled"],
             "params": {"value": 1.0}},
            {"name": "encode", "processor": "onehot", "inputs": ["color"], "outputs": ["color_1h"],
             "params": {"categories": {"color": ["red", "blue"]}}},
            {"name": "features", "processor": "concat", "inputs": ["a_filled", "color_1h"],
             "outputs": ["x"]},
            {"name": "classifier", "model": "tiny.onnx", "inputs": {"x": "x"},
             "outputs": {"probabilities": "probabilities", "label": "label"}},
            {"name": "positive", "processor": "select", "inputs": ["probabilities"],
             "outputs": ["probability"], "params": {"column": 1}},
        ],
        "outputs": ["label", "probability"],
    }  # fmt: skip
    backend = load(write_pipeline(tmp_path, document))
    metadata = backend.metadata()
    assert metadata.output("label") == TensorSpec("label", "INT64", (-1, 1))
    assert metadata.output("probability") == TensorSpec("probability", "FP32", (-1, 1))
    assert metadata.extra["steps"][3] == {
        "name": "classifier",
        "model": "tiny.onnx",
        "format": "onnx",
    }

    out = backend.predict(
        {
            "a": np.array([[np.nan], [3.0], [-1.0]], np.float32),
            "b": np.zeros((3, 1), np.float32),
            "color": np.array([["red"], ["blue"], ["red"]], dtype=object),
        }
    )
    x = np.array([[1.0, 1, 0], [3.0, 0, 1], [-1.0, 1, 0]], np.float32)
    logits = x @ w + b
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(out["probability"], expected[:, [1]], rtol=1e-6)
    assert out["label"].tolist() == logits.argmax(axis=1).reshape(-1, 1).tolist()
    backend.unload()


# --- docs/pipelines.md: every example runs -------------------------------------------------

DOCS = Path(__file__).resolve().parents[2] / "docs" / "pipelines.md"


def docs_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), flags=re.DOTALL)


def test_docs_titanic_example_is_the_demo_pipeline(demo_repository: Path, tmp_path: Path):
    example = docs_blocks("yaml")[0]
    shutil.copy(demo_repository / "titanic" / "1" / "classifier.onnx", tmp_path)
    backend = load(write_pipeline(tmp_path, example))
    demo = load(demo_repository / "titanic" / "1" / "pipeline.yaml")

    def without_descriptions(specs: tuple[TensorSpec, ...]) -> list[TensorSpec]:
        return [dataclasses.replace(spec, description="") for spec in specs]

    assert without_descriptions(backend.metadata().inputs) == without_descriptions(
        demo.metadata().inputs
    )
    assert backend.metadata().outputs == demo.metadata().outputs
    seeds = {
        "fare": np.array([[7.0], [9.0]], np.float32),
        "sex": np.array([["male"], ["female"]], dtype=object),
        "embarked": np.array([["Q"], [None]], dtype=object),
        "pclass": np.array([["3"], ["2"]], dtype=object),
        "age": np.array([[27.0], [np.nan]], np.float32),
    }
    out, expected = backend.predict(seeds), demo.predict(seeds)
    assert out["survived"].tolist() == expected["survived"].tolist() == [[0], [1]]
    np.testing.assert_allclose(out["probability"], expected["probability"], rtol=1e-6)


def test_docs_custom_processor_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (code,) = docs_blocks("python")
    (tmp_path / "my_processors.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "my_processors", raising=False)
    example = next(block for block in docs_blocks("yaml") if "my_processors:Log1p" in block)
    backend = load(write_pipeline(tmp_path / "model", example))
    out = backend.predict({"fare": np.array([[0.0], [np.e - 1], [-5.0]], np.float32)})
    np.testing.assert_allclose(out["log_fare"], [[0.0], [1.0], [0.0]], atol=1e-6)
    assert backend.metadata().outputs == (TensorSpec("log_fare", "FP32", (-1, 1)),)
    monkeypatch.delitem(sys.modules, "my_processors", raising=False)


def test_docs_image_contract_is_the_demo_digits_config(demo_repository: Path):
    example = next(block for block in docs_blocks("yaml") if block.startswith("image:"))
    config = yaml.safe_load((demo_repository / "digits" / "config.yaml").read_text())
    assert yaml.safe_load(example) == config


def nesting_pipeline(**inner_step: Any) -> dict[str, Any]:
    return {
        "inputs": INPUTS,
        "steps": [{"name": "inner", "model": "inner/pipeline.yaml", "inputs": ["a", "b", "color"],
                   "outputs": ["doubled"], **inner_step}],
        "outputs": ["doubled"],
    }  # fmt: skip


def test_a_step_may_not_set_the_pipelines_own_bookkeeping(standin_folder: Path):
    """`options: {pipeline_parents: []}` reset the files a nested pipeline was told about."""
    (standin_folder / "inner" / "model.standin").parent.mkdir()
    (standin_folder / "inner" / "model.standin").write_text("ok")
    write_pipeline(standin_folder / "inner", standin_pipeline())
    outer = write_pipeline(standin_folder, nesting_pipeline(options={"pipeline_parents": []}))
    with pytest.raises(
        PipelineConfigError,
        match=r"step 'inner' \(steps\[0\]\): options: unknown backend option\(s\) "
        r"\['pipeline_parents'\] for format 'pipeline'",
    ):
        load(outer)


def test_a_pipeline_told_the_files_that_include_it_refuses_a_step_including_one(
    standin_folder: Path,
):
    """What a nesting pipeline passes to the one it includes, as no option can."""
    (standin_folder / "inner" / "model.standin").parent.mkdir()
    (standin_folder / "inner" / "model.standin").write_text("ok")
    inner = write_pipeline(standin_folder / "inner", standin_pipeline())
    outer = write_pipeline(standin_folder, nesting_pipeline())
    assert load(outer).metadata().outputs[0].name == "doubled"
    with pytest.raises(PipelineConfigError, match=r"step 'inner'.*includes itself"):
        PipelineBackend({}, parents=(str(inner.resolve()),)).load(outer)
