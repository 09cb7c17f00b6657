"""Reading ``pipeline.yaml``: structure and data flow, before anything is loaded.

``parse_pipeline(document, source)`` turns the YAML document into a ``PipelineSpec`` and
checks what can be checked without loading a model or building a processor: known keys,
field types, unique step names, and that every tensor a step or the pipeline's outputs
read is a pipeline input or was written by an earlier step. Every error is a
``PipelineConfigError`` whose message starts with the file and the step and field at fault.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from runtime.tensors import TensorSpec, numpy_dtype

_TOP_KEYS = {"inputs", "steps", "outputs", "description"}
_INPUT_KEYS = {"name", "datatype", "shape", "nullable", "allowed_values", "description"}
_STEP_KEYS = {"name", "processor", "model", "format", "options", "inputs", "outputs", "params"}


class PipelineConfigError(ValueError):
    """``pipeline.yaml`` is invalid; the message names the file, the step and the field."""


@dataclass(frozen=True)
class StepSpec:
    """One step as written. ``reads``/``writes`` pair a step-side name (a model's input or
    output name; for processors the tensor name itself) with a pipeline tensor name."""

    index: int
    name: str
    reads: tuple[tuple[str, str], ...]
    writes: tuple[tuple[str, str], ...]
    processor: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None
    format: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"step '{self.name}' (steps[{self.index}])"


@dataclass(frozen=True)
class PipelineSpec:
    source: str
    inputs: tuple[TensorSpec, ...]
    steps: tuple[StepSpec, ...]
    outputs: tuple[str, ...]
    description: str = ""


def parse_pipeline(document: Any, source: str) -> PipelineSpec:
    """Check a loaded ``pipeline.yaml`` document; ``source`` names it in error messages."""
    fail = _Fail(source)
    if not isinstance(document, Mapping):
        fail("the file", "must be a mapping with inputs, steps and outputs")
    _check_keys(fail, "the file", document, _TOP_KEYS)
    raw_inputs = _require(fail, "the file", document, "inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        fail("inputs", "must be a non-empty list of {name, datatype, shape}")
    inputs = tuple(_parse_input(fail, i, item) for i, item in enumerate(raw_inputs))
    raw_steps = document.get("steps") or []
    if not isinstance(raw_steps, list):
        fail("steps", "must be a list")
    steps = tuple(_parse_step(fail, i, item) for i, item in enumerate(raw_steps))
    outputs = tuple(_names(fail, "outputs", _require(fail, "the file", document, "outputs")))
    _check_data_flow(fail, inputs, steps, outputs)
    return PipelineSpec(source, inputs, steps, outputs, str(document.get("description", "")))


class _Fail:
    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, where: str, message: str) -> NoReturn:
        raise PipelineConfigError(f"{self.source}: {where}: {message}")


def _check_keys(fail: _Fail, where: str, item: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(item) - allowed)
    if unknown:
        fail(where, f"unknown key(s) {unknown}; expected some of {sorted(allowed)}")


def _require(fail: _Fail, where: str, item: Mapping[str, Any], key: str) -> Any:
    if key not in item or item[key] is None:
        fail(where, f"'{key}' is required")
    return item[key]


def _names(fail: _Fail, where: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        fail(where, "must be a non-empty list of tensor names")
    if not all(isinstance(name, str) and name for name in value):
        fail(where, "every entry must be a tensor name (text)")
    if len(set(value)) != len(value):
        fail(where, "lists a name twice")
    return list(value)


def _parse_input(fail: _Fail, index: int, item: Any) -> TensorSpec:
    where = f"inputs[{index}]"
    if not isinstance(item, Mapping):
        fail(where, "must be a mapping {name, datatype, shape}")
    _check_keys(fail, where, item, _INPUT_KEYS)
    name = _require(fail, where, item, "name")
    if not isinstance(name, str) or not name:
        fail(where, "name must be text")
    where = f"input '{name}' ({where})"
    datatype = str(_require(fail, where, item, "datatype"))
    try:
        numpy_dtype(datatype)
    except ValueError as exc:
        fail(where, f"datatype: {exc}")
    shape = item.get("shape", [-1, 1])
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and (d > 0 or d == -1) for d in shape
    ):
        fail(where, f"shape must be a list of positive sizes or -1, not {shape!r}")
    allowed = item.get("allowed_values")
    if allowed is not None and (not isinstance(allowed, list) or not allowed):
        fail(where, "allowed_values must be a non-empty list")
    return TensorSpec(
        name=name,
        datatype=datatype,
        shape=tuple(shape),
        allowed_values=None if allowed is None else tuple(str(v) for v in allowed),
        nullable=bool(item.get("nullable", False)),
        description=str(item.get("description", "")),
    )


def _parse_step(fail: _Fail, index: int, item: Any) -> StepSpec:
    where = f"steps[{index}]"
    if not isinstance(item, Mapping):
        fail(where, "must be a mapping with name, processor or model, inputs and outputs")
    name = _require(fail, where, item, "name")
    if not isinstance(name, str) or not name:
        fail(where, "name must be text")
    where = f"step '{name}' ({where})"
    _check_keys(fail, where, item, _STEP_KEYS)
    if ("processor" in item) == ("model" in item):
        fail(where, "set exactly one of 'processor' (a transform) or 'model' (an artefact)")
    if "processor" in item:
        for key in ("format", "options"):
            if key in item:
                fail(where, f"'{key}' belongs to model steps; this is a processor step")
        params = item.get("params") or {}
        if not isinstance(params, Mapping):
            fail(f"{where}: params", "must be a mapping")
        reads = [(n, n) for n in _names(fail, f"{where}: inputs", item.get("inputs"))]
        writes = [(n, n) for n in _names(fail, f"{where}: outputs", item.get("outputs"))]
        return StepSpec(
            index,
            name,
            tuple(reads),
            tuple(writes),
            processor=str(item["processor"]),
            params=params,
        )
    if "params" in item:
        fail(where, "'params' belongs to processor steps; a model step takes 'options'")
    options = item.get("options") or {}
    if not isinstance(options, Mapping):
        fail(f"{where}: options", "must be a mapping")
    model = item["model"]
    if not isinstance(model, str) or not model:
        fail(f"{where}: model", "must be a path relative to the pipeline's folder")
    fmt = item.get("format")
    return StepSpec(
        index,
        name,
        tuple(_bindings(fail, f"{where}: inputs", item.get("inputs"))),
        tuple(_bindings(fail, f"{where}: outputs", item.get("outputs"))),
        model=model,
        format=None if fmt is None else str(fmt),
        options=options,
    )


def _bindings(fail: _Fail, where: str, value: Any) -> list[tuple[str, str]]:
    """A model step's ``{model name: tensor}`` mapping, or a list when the names agree."""
    if isinstance(value, Mapping):
        if not value:
            fail(where, "must not be empty")
        pairs = [(str(k), v) for k, v in value.items()]
        if not all(isinstance(tensor, str) and tensor for _, tensor in pairs):
            fail(where, "every value must be a pipeline tensor name")
        return pairs
    if isinstance(value, list):
        return [(n, n) for n in _names(fail, where, value)]
    fail(where, "must map model names to pipeline tensors ({model_name: tensor}) or list them")


def _check_data_flow(
    fail: _Fail, inputs: Sequence[TensorSpec], steps: Sequence[StepSpec], outputs: Sequence[str]
) -> None:
    producer: dict[str, str] = {}
    for spec in inputs:
        if spec.name in producer:
            fail(f"input '{spec.name}'", "is declared twice")
        producer[spec.name] = "the pipeline's inputs"
    written_later = {tensor: s.name for s in reversed(steps) for _, tensor in s.writes}
    step_names: set[str] = set()
    for step in steps:
        if step.name in step_names:
            fail(step.where, "another step has the same name")
        step_names.add(step.name)
        for _, tensor in step.reads:
            _check_known(fail, f"{step.where}: inputs", tensor, producer, written_later)
        for _, tensor in step.writes:
            if tensor in producer:
                fail(
                    f"{step.where}: outputs",
                    f"tensor '{tensor}' is already written by {producer[tensor]}; "
                    "pick another name",
                )
            producer[tensor] = f"step '{step.name}'"
    for tensor in outputs:
        _check_known(fail, "outputs", tensor, producer, {})


def _check_known(
    fail: _Fail, where: str, tensor: str, producer: Mapping[str, str], later: Mapping[str, str]
) -> None:
    if tensor in producer:
        return
    if tensor in later:
        fail(where, f"tensor '{tensor}' is used before it is produced (by step '{later[tensor]}')")
    known = ", ".join(sorted(producer)) or "none"
    fail(where, f"unknown tensor '{tensor}' (known at this point: {known})")
