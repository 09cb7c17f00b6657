"""Per-request explanations: the glue between a loaded model version and ``explain``.

The explain route (``runtime.routes.explain``) decodes and validates a body exactly as eval
does, then hands the rows to the functions here, run in the predictor's thread pool. No HTTP
here; every client mistake is a ``BadRequest`` naming it. The background rows come from
``runtime.explain_background``.

- **Tabular only.** The explainers (``explain.frame``) work on one value per row and input
  feature, so a model is explained when every input is ``[-1]`` or ``[-1, 1]``; an image or
  a ``[-1, 4]`` feature matrix is refused (``require_tabular``). Attributions are per
  *original* input: a pipeline's encoders and a categorical's one-hot columns are inside the
  model that the explainers call, never explained themselves.
- **Frames and tensors.** ``frame_from_inputs`` turns validated inputs into a ``Frame``
  (numbers as float64, ``BYTES`` as ``str``/``None`` objects); ``inputs_from_frame`` turns
  any frame the explainers build back into each input's dtype and shape.
- **What is explained.** One scalar per row: an output and, for an ``[n, k]`` output, a
  column (``explained_output_of``; by default the first floating-point output and its last
  column, a binary classifier's positive class).
- **Background.** Rows drawn from the version's latest reference profile, typed like the
  request rows and validated once per profile (``runtime.explain_background``).
- **Method.** ``explain_rows`` takes the exact linear fast path (``explain.linear``) when
  the model is linear in all-numeric inputs and reproduces the model's own predictions
  within ``ADDITIVITY_TOLERANCE``; otherwise Kernel SHAP (``explain.kernel_shap``), whose
  efficiency constraint makes base value plus attributions equal the prediction.
- **Stopping.** ``explain_rows`` takes a ``stop`` event (set when the request's client
  hangs up, ``runtime.explain_slots``) and checks it before every model call: an abandoned
  explanation gives its thread back after the call in progress, not after hundreds more.
  No call is long: Kernel SHAP sends at most ``max_call_rows`` coalition rows per call
  (``MAX_CALL_ROWS``), with the same attributions as in one call.
- **The model call** (``call_model``, ``Predictor.explanation_call``) takes the version's
  turn (``runtime.call_turns``): with ``batching:``, the model still sees one call at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from explain.attributions import Attribution
from explain.frame import Frame, PredictFn, frame_rows
from explain.kernel_shap import kernel_shap
from explain.linear import linear_explain
from runtime.errors import BadRequest, ClientClosedRequest, InferenceServerError
from runtime.tensors import FLOAT_DATATYPES, ModelMetadata, TensorSpec, numpy_dtype

if TYPE_CHECKING:
    from runtime.predictor import ModelCall

#: How far ``base_value + sum(attributions)`` may be from the prediction (absolute).
ADDITIVITY_TOLERANCE = 1e-6
#: Upper bounds of what a request may ask for (``ExplainSettings.with_overrides``).
MAX_SAMPLES = 4096
MAX_BACKGROUND_ROWS = 200
#: Coalition rows per Kernel SHAP model call (the first also carries the background and the
#: explained rows): bounds how long a hung-up explanation keeps its thread, and how long a
#: batched version's merged call waits for one. On the demo's titanic models (2 busy cores,
#: 32 rows x 200 background x 30 coalitions) an 8,192-row call takes 40-100 ms (ONNX) or
#: ~0.3 s (PMML), where the one 192,232-row call took 0.5-1.6 s and ~5 s; 24 calls cost
#: ~0.6 ms each over one, ~2% of the explanation (256-row calls doubled it).
MAX_CALL_ROWS = 8192


@dataclass(frozen=True)
class ExplainSettings:
    """What one explain request may cost: background rows and Kernel SHAP coalitions
    per row (``n_samples``), rows per request, rows per model call (``max_call_rows``,
    see the module docstring), and the seed of every random draw."""

    background_rows: int = 50
    n_samples: int = 512
    max_rows: int = 32
    seed: int = 0
    max_call_rows: int = MAX_CALL_ROWS

    def with_overrides(
        self, *, samples: int | None = None, background: int | None = None
    ) -> ExplainSettings:
        """These settings with a request's ``samples`` (``n_samples``, at most
        ``MAX_SAMPLES``) and ``background`` (rows, at most ``MAX_BACKGROUND_ROWS``)."""
        for name, value, high, unit in (
            ("samples", samples, MAX_SAMPLES, "Kernel SHAP coalitions per row"),
            ("background", background, MAX_BACKGROUND_ROWS, "background rows"),
        ):
            if value is not None and not 1 <= value <= high:
                raise BadRequest(f"{name}={value} is out of range: 1 to {high} {unit}")
        return replace(
            self,
            n_samples=self.n_samples if samples is None else samples,
            background_rows=self.background_rows if background is None else background,
        )

    def require_rows(self, n_rows: int) -> None:
        if n_rows < 1:
            raise BadRequest("there is no row to explain: the inputs are empty")
        if n_rows > self.max_rows:
            raise BadRequest(
                f"explain takes at most {self.max_rows} rows per request, got {n_rows}: "
                "send them in several requests"
            )

    def require_samples_for(self, n_features: int) -> None:
        """Refuse an ``n_samples`` too small for Kernel SHAP on ``n_features`` features:
        below every coalition (``2**M - 2``) it must sample, which needs ``2 * M``."""
        if n_features < 2:
            return
        needed = min(2**n_features - 2, 2 * n_features)
        if self.n_samples < needed:
            raise BadRequest(
                f"samples={self.n_samples} is too few for {n_features} input features: "
                f"Kernel SHAP needs at least {needed}"
            )


# -- tensors and frames --------------------------------------------------------------------


def is_tabular_input(spec: TensorSpec) -> bool:
    """One value per row: shape ``[-1]`` or ``[-1, 1]``."""
    return tuple(spec.shape) in ((-1,), (-1, 1))


def require_tabular(metadata: ModelMetadata) -> None:
    for spec in metadata.inputs:
        if not is_tabular_input(spec):
            raise BadRequest(
                f"explain works on tabular models: input '{spec.name}' has shape "
                f"{list(spec.shape)}; every input must hold one value per row "
                "(shape [-1] or [-1, 1])"
            )


def frame_from_inputs(metadata: ModelMetadata, inputs: Mapping[str, np.ndarray]) -> Frame:
    """Validated inputs as a ``Frame``: numbers (BOOL too) as float64, ``BYTES`` as objects
    holding ``str`` or ``None``; one column per input, in the metadata's order."""
    require_tabular(metadata)
    frame: Frame = {}
    for spec in metadata.inputs:
        if spec.name not in inputs:
            raise BadRequest(f"missing input '{spec.name}'")
        array = np.asarray(inputs[spec.name])
        if array.ndim != len(spec.shape) or array.shape[1:] not in ((), (1,)):
            raise BadRequest(
                f"explain works on tabular models: input '{spec.name}' has shape "
                f"{list(array.shape)}; expected one value per row"
            )
        column = array.reshape(len(array))
        if spec.datatype == "BYTES":
            frame[spec.name] = _texts(spec.name, column)
        else:
            frame[spec.name] = column.astype(np.float64)
    frame_rows(frame)
    return frame


def inputs_from_frame(
    metadata: ModelMetadata, frame: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """A frame as the backend takes it: each input's dtype and shape (integers rounded)."""
    inputs: dict[str, np.ndarray] = {}
    for spec in metadata.inputs:
        column = frame[spec.name]
        if spec.datatype == "BYTES":
            array = np.asarray(column, dtype=object)
        elif spec.datatype == "BOOL":
            array = np.asarray(column) != 0
        elif spec.datatype in FLOAT_DATATYPES:
            array = np.asarray(column).astype(numpy_dtype(spec.datatype))
        else:
            array = np.rint(np.asarray(column, dtype=np.float64)).astype(numpy_dtype(spec.datatype))
        inputs[spec.name] = array.reshape(-1, 1) if len(spec.shape) == 2 else array
    return inputs


def _texts(name: str, column: np.ndarray) -> np.ndarray:
    texts = np.empty(len(column), dtype=object)
    for position, value in enumerate(column):
        if not isinstance(value, bytes):
            texts[position] = value
            continue
        try:
            texts[position] = value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(
                f"input '{name}': binary value at row {position} is not UTF-8 text; "
                "explain takes categories as text"
            ) from None
    return texts


# -- the explained output ------------------------------------------------------------------


def explained_output_of(
    metadata: ModelMetadata, output: str | None, index: int | None
) -> tuple[str, int | None]:
    """The output and column to explain, checked: ``(name, index)``.

    By default the first floating-point output; an ``[n, k]`` output (k > 1) defaults to
    its last column, the positive class of a binary classifier. An output of one value per
    row has no index (``None``); ``index=0`` is accepted for it.
    """
    declared = ", ".join(f"'{spec.name}'" for spec in metadata.outputs)
    if output is None:
        spec = next((s for s in metadata.outputs if s.datatype in FLOAT_DATATYPES), None)
        if spec is None:
            raise BadRequest(
                f"the model has no floating-point output to explain by default; name one with "
                f"?output= (its outputs: {declared})"
            )
    else:
        found = metadata.output(output)
        if found is None:
            raise BadRequest(f"unknown output '{output}'; the model's outputs are {declared}")
        spec = found
    if spec.datatype == "BYTES":
        raise BadRequest(f"output '{spec.name}' holds text: explain works on numeric outputs")
    shape = tuple(spec.shape)
    if len(shape) == 1 or shape[1:] == (1,):
        if index not in (None, 0):
            raise BadRequest(
                f"index {index} is out of range: output '{spec.name}' has one value per row"
            )
        return spec.name, None
    if len(shape) != 2:
        raise BadRequest(
            f"output '{spec.name}' has shape {list(shape)}: explain works on outputs with one "
            "value, or one row of values, per row"
        )
    width = shape[1]
    if width == -1:
        return spec.name, index  # the width is known once the model answers
    if index is None:
        return spec.name, width - 1
    if index >= width:
        raise BadRequest(
            f"index {index} is out of range: output '{spec.name}' has {width} values per row "
            f"(index 0 to {width - 1})"
        )
    return spec.name, index


def model_predict(
    call_model: ModelCall,
    metadata: ModelMetadata,
    output: str,
    index: int | None,
    stop: threading.Event | None = None,
) -> PredictFn:
    """The ``PredictFn`` the explainers call: frame -> the model -> the explained column;
    ``ClientClosedRequest`` instead of a model call once ``stop`` is set."""

    def predict(frame: Frame) -> np.ndarray:
        if stop is not None and stop.is_set():
            raise ClientClosedRequest("the explanation was stopped: its client hung up")
        outputs = call_model(inputs_from_frame(metadata, frame))
        if output not in outputs:
            raise InferenceServerError(f"the model did not produce its output '{output}'")
        return _explained_column(np.asarray(outputs[output], dtype=np.float64), output, index)

    return predict


def _explained_column(values: np.ndarray, output: str, index: int | None) -> np.ndarray:
    if values.ndim == 1:
        return values
    if values.ndim != 2:
        raise InferenceServerError(
            f"output '{output}' came back with shape {list(values.shape)}: "
            "not one row per input row"
        )
    width = values.shape[1]
    if index is None:
        if width == 1:
            return values[:, 0]
        raise BadRequest(
            f"output '{output}' has {width} values per row: pick the one to explain with "
            f"?index= (0 to {width - 1})"
        )
    if index >= width:
        raise BadRequest(
            f"index {index} is out of range: output '{output}' has {width} values per row"
        )
    return values[:, index]


# -- explaining ----------------------------------------------------------------------------


def explain_rows(
    call_model: ModelCall,
    metadata: ModelMetadata,
    frame: Frame,
    background: Frame,
    *,
    output: str,
    index: int | None,
    settings: ExplainSettings,
    stop: threading.Event | None = None,
) -> Attribution:
    """Attributions of ``frame``'s rows to the model's inputs against ``background``.

    The linear fast path when it applies and reproduces the model's predictions within
    ``ADDITIVITY_TOLERANCE`` (its ``predictions`` are then the model's own), else Kernel
    SHAP with ``settings.n_samples`` coalitions per row, in calls of at most
    ``settings.max_call_rows`` coalition rows. Once ``stop`` is set, the next model call
    raises ``ClientClosedRequest`` instead. ``call_model``: a backend's ``predict``, or
    ``Predictor.explanation_call``'s, which takes turns with the version's batches.
    """
    settings.require_rows(frame_rows(frame))
    settings.require_samples_for(len(frame))
    predict = model_predict(call_model, metadata, output, index, stop)
    linear = linear_explain(predict, frame, background, seed=settings.seed)
    if linear is not None:
        predicted = predict(frame)
        if float(np.max(np.abs(linear.predictions - predicted))) <= ADDITIVITY_TOLERANCE:
            return replace(linear, predictions=predicted)
    return kernel_shap(
        predict,
        frame,
        background,
        n_samples=settings.n_samples,
        seed=settings.seed,
        max_batch_rows=settings.max_call_rows,
    )
