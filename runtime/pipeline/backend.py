"""``PipelineBackend``: loads a ``pipeline.yaml`` into runnable steps and runs them in order.

``load`` parses the file (``runtime.pipeline.spec``), then builds each step in order so that
every step sees the specs of the tensors it reads: a processor step instantiates its class
and asks it for its output specs; a model step finds the artefact, picks its format (the
step's ``format:`` or the file's suffix), loads it through ``runtime.backends`` and checks
the bindings against the model's own metadata. Any failure unloads what was already loaded.

``predict`` keeps a dict of named arrays, runs each step on the arrays it reads and adds what
it writes. Client errors raised by a step (``BadRequest`` and friends) are re-raised with the
step's name in front of the message; anything else a step raises (a bug, a framework error)
becomes a ``PipelineStepError`` naming the step, which the runtime answers with a 500.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from runtime.backends import FORMATS, check_backend_options, create_backend
from runtime.backends.base import ModelBackend
from runtime.backends.diagnosis import OptionLoadError, diagnose
from runtime.errors import BadRequest, InferenceServerError
from runtime.pipeline.spec import PipelineConfigError, PipelineSpec, StepSpec, parse_pipeline
from runtime.processors import resolve_processor
from runtime.tensors import ModelMetadata, TensorSpec, format_shape, numpy_dtype, shape_matches

_SUFFIX_FORMATS = {
    ".onnx": "onnx",
    ".h5": "keras",
    ".hdf5": "keras",
    ".keras": "keras",
    ".pmml": "pmml",
    ".yaml": "pipeline",
    ".yml": "pipeline",
}
StepFunction = Callable[[list[np.ndarray]], list[np.ndarray]]


class PipelineStepError(RuntimeError):
    """A step failed for a reason that is not the client's (its cause is chained)."""


@dataclass(frozen=True)
class _Runnable:
    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    run: StepFunction


class PipelineBackend:
    """Serves a ``pipeline.yaml``: processors and models of any format, chained by name."""

    format = "pipeline"

    def __init__(
        self, options: Mapping[str, Any] | None = None, *, parents: tuple[str, ...] = ()
    ) -> None:
        """``options``: the user's (config.yaml ``backend:``, a step's ``options:``), of which
        a pipeline takes none (``create_backend`` checks them). ``parents``: the pipeline files
        that include this one, passed by the pipeline that does, so that one that (indirectly)
        includes itself fails instead of recursing forever; not an option, which users set."""
        self._parents = parents
        self._steps: list[_Runnable] = []
        self._backends: list[ModelBackend] = []
        self._metadata: ModelMetadata | None = None

    def load(self, path: Path) -> None:
        if self._metadata is not None:
            self.unload()
        path = Path(path)
        if path.is_dir():
            path = path / "pipeline.yaml"
        spec = parse_pipeline(_read_yaml(path), str(path))
        parents = (*self._parents, str(path.resolve()))
        try:
            self._build(spec, path.parent, parents)
        except BaseException:
            self.unload()
            raise

    def metadata(self) -> ModelMetadata:
        if self._metadata is None:
            raise RuntimeError("PipelineBackend.metadata() called before load()")
        return self._metadata

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        metadata = self.metadata()
        tensors: dict[str, np.ndarray] = {}
        for spec in metadata.inputs:
            if spec.name not in inputs:
                raise BadRequest(f"missing input '{spec.name}'")
            tensors[spec.name] = inputs[spec.name]
        if _has_no_rows(metadata, tensors):
            # Zero rows answer zero rows; processors and models need not handle empty arrays.
            return {spec.name: _empty(spec) for spec in metadata.outputs}
        for step in self._steps:
            try:
                produced = step.run([tensors[name] for name in step.reads])
            except InferenceServerError as exc:
                raise type(exc)(f"step '{step.name}': {exc.message}") from exc
            except Exception as exc:
                raise PipelineStepError(
                    f"step '{step.name}' failed: {type(exc).__name__}: {exc}"
                ) from exc
            if len(produced) != len(step.writes):
                raise InferenceServerError(
                    f"step '{step.name}' returned {len(produced)} tensors "
                    f"instead of {len(step.writes)}"
                )
            tensors.update(zip(step.writes, produced, strict=True))
        return {spec.name: tensors[spec.name] for spec in metadata.outputs}

    def unload(self) -> None:
        backends, self._backends = self._backends, []
        for backend in reversed(backends):
            backend.unload()
        self._steps = []
        self._metadata = None

    # --- building ---------------------------------------------------------------------------

    def _build(self, spec: PipelineSpec, folder: Path, parents: tuple[str, ...]) -> None:
        specs: dict[str, TensorSpec] = {s.name: s for s in spec.inputs}
        producers = {s.name: "a pipeline input" for s in spec.inputs}
        described: list[dict[str, Any]] = []
        for step in spec.steps:
            if step.processor is not None:
                runnable, outputs = _build_processor(spec.source, step, specs)
                described.append({"name": step.name, "processor": step.processor})
            else:
                backend, fmt, runnable, outputs = _build_model(
                    spec.source, step, _Available(specs, producers), folder, parents
                )
                self._backends.append(backend)
                described.append({"name": step.name, "model": step.model, "format": fmt})
            self._steps.append(runnable)
            specs.update((s.name, s) for s in outputs)
            producers.update((s.name, f"written by step '{step.name}'") for s in outputs)
        self._metadata = ModelMetadata(
            inputs=spec.inputs,
            outputs=tuple(replace(specs[name], nullable=False) for name in spec.outputs),
            platform=self.format,
            extra={"steps": described, "description": spec.description},
        )


@dataclass(frozen=True)
class _Available:
    """The tensors a step can read: their specs, and who wrote each (for error messages)."""

    specs: Mapping[str, TensorSpec]
    producers: Mapping[str, str]

    def describe(self, tensor: str) -> str:
        return f"tensor '{tensor}' ({self.producers[tensor]})"


def _has_no_rows(metadata: ModelMetadata, tensors: Mapping[str, np.ndarray]) -> bool:
    return any(
        spec.shape and spec.shape[0] == -1 and np.shape(tensors[spec.name])[:1] == (0,)
        for spec in metadata.inputs
    )


def _empty(spec: TensorSpec) -> np.ndarray:
    shape = (0, *(max(dim, 0) for dim in spec.shape[1:]))
    return np.empty(shape, dtype=numpy_dtype(spec.datatype))


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PipelineConfigError(f"{path}: cannot read the pipeline file: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PipelineConfigError(f"{path}: not valid YAML: {exc}") from None


def _build_processor(
    source: str, step: StepSpec, specs: Mapping[str, TensorSpec]
) -> tuple[_Runnable, list[TensorSpec]]:
    where = f"{source}: {step.where}"
    assert step.processor is not None
    try:
        processor_class = resolve_processor(step.processor)
    except ValueError as exc:
        raise PipelineConfigError(f"{where}: processor: {exc}") from None
    try:
        processor = processor_class(dict(step.params))
        produced = processor.output_specs([specs[tensor] for _, tensor in step.reads])
    except (ValueError, TypeError, KeyError) as exc:
        raise PipelineConfigError(f"{where}: {step.processor}: {exc}") from None
    if len(produced) != len(step.writes):
        raise PipelineConfigError(
            f"{where}: outputs: processor '{step.processor}' produces {len(produced)} "
            f"tensor(s) here but {len(step.writes)} output name(s) are given"
        )
    outputs = [
        replace(s, name=tensor) for s, (_, tensor) in zip(produced, step.writes, strict=True)
    ]
    reads = tuple(tensor for _, tensor in step.reads)
    writes = tuple(tensor for _, tensor in step.writes)
    return _Runnable(step.name, reads, writes, processor), outputs


def _model_format(where: str, step: StepSpec, artefact: Path) -> str:
    if step.format is not None:
        return step.format
    if artefact.is_dir():
        if (artefact / "saved_model.pb").is_file():
            return "savedmodel"
        raise PipelineConfigError(f"{where}: model: folder {artefact} holds no saved_model.pb")
    fmt = _SUFFIX_FORMATS.get(artefact.suffix.lower())
    if fmt is None:
        raise PipelineConfigError(
            f"{where}: model: cannot tell the format of '{artefact.name}' from its suffix; "
            "add 'format:' to the step"
        )
    return fmt


def _build_model(
    source: str,
    step: StepSpec,
    available: _Available,
    folder: Path,
    parents: tuple[str, ...],
) -> tuple[ModelBackend, str, _Runnable, list[TensorSpec]]:
    where = f"{source}: {step.where}"
    assert step.model is not None
    artefact = (folder / step.model).resolve()
    if not artefact.is_relative_to(folder.resolve()):
        raise PipelineConfigError(f"{where}: model: '{step.model}' points outside {folder}")
    if not artefact.exists():
        raise PipelineConfigError(f"{where}: model: file '{step.model}' not found in {folder}")
    fmt = _model_format(where, step, artefact)
    if fmt == "pipeline":
        if artefact.is_dir():  # a folder means its pipeline.yaml, as for the repository
            artefact = artefact / "pipeline.yaml"
        if str(artefact) in parents:
            raise PipelineConfigError(f"{where}: model: '{step.model}' includes itself")
    try:
        if fmt == "pipeline":  # told the files open above it, which no option can say
            check_backend_options(fmt, step.options)
            backend: ModelBackend = PipelineBackend(step.options, parents=parents)
        else:
            backend = create_backend(fmt, step.options)
    except ValueError as exc:  # an unknown format, or options its backend does not take
        field = "options" if fmt in FORMATS else "format"
        raise PipelineConfigError(f"{where}: {field}: {exc}") from None
    try:
        backend.load(artefact)
    except (InferenceServerError, PipelineConfigError) as exc:
        raise type(exc)(f"{where}: {exc}") from exc
    except Exception as exc:
        hint = diagnose(fmt, artefact)
        detail = f"it {hint} ({exc})" if hint and hint not in str(exc) else str(exc)
        if isinstance(exc, OptionLoadError):
            detail = f"{detail}; set `options: {{{exc.option}: ...}}` in this step"
        raise PipelineConfigError(f"{where}: cannot load '{step.model}' ({fmt}): {detail}") from exc
    try:
        runnable, outputs = _bind_model(where, step, available, backend)
    except BaseException:
        backend.unload()
        raise
    return backend, fmt, runnable, outputs


def _bind_model(
    where: str, step: StepSpec, available: _Available, backend: ModelBackend
) -> tuple[_Runnable, list[TensorSpec]]:
    """Check a model step's bindings against the model's metadata and make its runner."""
    metadata = backend.metadata()
    model_inputs = {s.name: s for s in metadata.inputs}
    model_outputs = {s.name: s for s in metadata.outputs}
    fed = {name for name, _ in step.reads}
    for name, _ in step.reads:
        if name not in model_inputs:
            raise PipelineConfigError(
                f"{where}: inputs: the model has no input '{name}' "
                f"(its inputs: {', '.join(model_inputs)})"
            )
    unfed = [name for name in model_inputs if name not in fed]
    if unfed:
        raise PipelineConfigError(f"{where}: inputs: model input(s) {unfed} are not fed")
    adapters = [
        _input_adapter(
            f"{where}: inputs: {name}",
            available.specs[tensor],
            model_inputs[name],
            available.describe(tensor),
        )
        for name, tensor in step.reads
    ]
    outputs = []
    for name, tensor in step.writes:
        if name not in model_outputs:
            raise PipelineConfigError(
                f"{where}: outputs: the model has no output '{name}' "
                f"(its outputs: {', '.join(model_outputs)})"
            )
        outputs.append(replace(model_outputs[name], name=tensor))
    feed_names = [name for name, _ in step.reads]
    result_names = [name for name, _ in step.writes]

    def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
        feed = {
            name: adapt(array)
            for name, array, adapt in zip(feed_names, arrays, adapters, strict=True)
        }
        result = backend.predict(feed)
        return [result[name] for name in result_names]

    reads = tuple(tensor for _, tensor in step.reads)
    writes = tuple(tensor for _, tensor in step.writes)
    return _Runnable(step.name, reads, writes, run), outputs


def _input_adapter(
    where: str, have: TensorSpec, want: TensorSpec, described: str
) -> Callable[[np.ndarray], np.ndarray]:
    """How a pipeline tensor enters a model input: as it is, cast, or reshaped.

    Numeric types convert silently, and a column ``[-1, 1]`` meets a vector ``[-1]`` either
    way; text and numbers do not mix (add a ``cast`` step), nor do other shapes. A size the
    pipeline leaves open (``-1``) where the model fixes one is checked on every request: a
    client's wrong width is its 400 naming the step, not the framework's 500."""
    if (have.datatype == "BYTES") != (want.datatype == "BYTES"):
        raise PipelineConfigError(
            f"{where}: {described} is {have.datatype} but the model wants "
            f"{want.datatype}; add a 'cast' step"
        )
    dtype = None
    if want.datatype not in (have.datatype, "BYTES"):
        dtype = numpy_dtype(want.datatype)
    reshape: tuple[int, ...] | None = None
    open_sizes = False  # a size -1 here that the model fixes: checked per request
    if len(have.shape) != len(want.shape):
        if not all(d == 1 for d in (*have.shape[1:], *want.shape[1:])):
            raise PipelineConfigError(
                f"{where}: {described} has shape {list(have.shape)} but the model "
                f"wants {list(want.shape)}; add a 'reshape' step"
            )
        reshape = (-1, *want.shape[1:])
    elif any(a != b and -1 not in (a, b) for a, b in zip(have.shape, want.shape, strict=True)):
        raise PipelineConfigError(
            f"{where}: {described} has shape {list(have.shape)} but the model wants "
            f"{list(want.shape)}"
        )
    else:
        open_sizes = any(a == -1 != b for a, b in zip(have.shape[1:], want.shape[1:], strict=True))

    def adapt(array: np.ndarray) -> np.ndarray:
        if open_sizes and not shape_matches(want.shape, array.shape):
            raise BadRequest(
                f"tensor '{have.name}' has shape {list(array.shape)} but model input "
                f"'{want.name}' wants {format_shape(want.shape)}"
            )
        if dtype is not None:
            array = array.astype(dtype, copy=False)
        return array if reshape is None else array.reshape(reshape)

    return adapt
