"""A model version served by a runtime replica, as an explainer's ``PredictFn``.

The explain job does not load models: it asks the runtime that serves them, so every
format (and a whole pipeline) is explained exactly as it answers traffic. ``RuntimePredict``
learns the version's inputs and outputs once from ``GET /v1/models/{m}/versions/{v}/describe``,
then turns each frame into eval requests (``POST /v1/models/{m}/versions/{v}/eval``, the
column form of ``runtime.codecs.simple``) of at most ``chunk_rows`` rows each:

- a feature goes to the input of the same name (else the one equal ignoring case), as
  ``[[v], ...]`` for a ``[-1, 1]`` input and ``[v, ...]`` for a ``[-1]`` one; NaN and None
  are sent as null; a number goes to a BYTES input as its text (``3.0`` as ``"3"``) and
  text to a numeric input as its number, so a log that typed a column differently from
  the model still explains;
- the explained output is ``output`` or, by default, the first output whose datatype is
  floating point (a probability or a score, rather than a class); an ``[n, k]`` output is
  reduced to its column ``index``, by default the last one: the positive class of a
  binary classifier (for more classes, name the class's column). The result is float64
  ``[n]``, null read back as NaN.

``calls`` and ``rows`` count the eval requests sent and the rows they carried: what an
explanation cost. A runtime that answers anything but 200 raises ``RuntimePredictError``
with the runtime's own message; so does one that cannot be reached. ``first_replica``
picks, among replicas of one repository, the first that serves the version.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np

from explain.frame import Frame, frame_rows

#: Rows per eval request: bodies of a few hundred kB for tabular models.
CHUNK_ROWS = 5_000
FLOAT_DATATYPES = frozenset({"FP16", "BF16", "FP32", "FP64"})
INTEGER_DATATYPES = frozenset(
    {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
)


class RuntimePredictError(RuntimeError):
    """The runtime could not be asked, or refused; the message says which and why."""


@dataclass(frozen=True)
class TensorContract:
    """One input or output as ``describe`` lists it."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @classmethod
    def from_describe(cls, raw: Mapping[str, Any]) -> TensorContract:
        return cls(str(raw["name"]), str(raw["datatype"]), tuple(int(d) for d in raw["shape"]))


class RuntimePredict:
    """``PredictFn`` over one model version of a runtime replica; cheap to construct (the
    first call reads ``describe``). Close it (or use it as a context manager) when done."""

    def __init__(
        self,
        base_url: str,
        model: str,
        version: str,
        *,
        output: str | None = None,
        index: int | None = None,
        timeout_s: float = 30.0,
        chunk_rows: int = CHUNK_ROWS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, not {chunk_rows}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.version = version
        self.output = output
        self.index = index
        self.chunk_rows = chunk_rows
        self.calls = 0
        self.rows = 0
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, transport=transport)
        self._inputs: tuple[TensorContract, ...] | None = None
        self._explained: TensorContract | None = None
        path = f"/v1/models/{quote(model, safe='')}/versions/{quote(version, safe='')}"
        self._describe_path = f"{path}/describe"
        self._eval_path = f"{path}/eval"

    def __call__(self, frame: Frame) -> np.ndarray:
        n_rows = frame_rows(frame)
        inputs = self.inputs()
        placement = _placement(frame, inputs, self._target())
        parts = [
            self._eval(frame, placement, start, min(start + self.chunk_rows, n_rows))
            for start in range(0, n_rows, self.chunk_rows)
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)

    def inputs(self) -> tuple[TensorContract, ...]:
        """The version's inputs (read from ``describe`` on first use)."""
        if self._inputs is None:
            self._describe()
        assert self._inputs is not None
        return self._inputs

    def explained_output(self) -> str:
        """The name of the output the predictions are read from."""
        if self._explained is None:
            self._describe()
        assert self._explained is not None
        return self._explained.name

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RuntimePredict:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _target(self) -> str:
        return f"{self.model} version {self.version} at {self.base_url}"

    def _describe(self) -> None:
        described = self._request("GET", self._describe_path, None)
        try:
            inputs = tuple(TensorContract.from_describe(raw) for raw in described["inputs"])
            outputs = [TensorContract.from_describe(raw) for raw in described["outputs"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise RuntimePredictError(
                f"{self._target()}: describe answered something unexpected: {exc!r}"
            ) from None
        self._explained = _choose_output(outputs, self.output, self._target())
        self._inputs = inputs

    def _eval(
        self, frame: Frame, placement: Mapping[str, TensorContract], start: int, stop: int
    ) -> np.ndarray:
        body = {
            spec.name: _json_column(frame[feature][start:stop], spec)
            for feature, spec in placement.items()
        }
        answer = self._request("POST", self._eval_path, body)
        self.calls += 1
        self.rows += stop - start
        assert self._explained is not None
        try:
            values = answer["outputs"][self._explained.name]
        except (KeyError, TypeError):
            raise RuntimePredictError(
                f"{self._target()}: the eval answer has no output '{self._explained.name}'"
            ) from None
        return _explained_column(values, stop - start, self.index, self._target())

    def _request(self, method: str, path: str, body: Any) -> Any:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise RuntimePredictError(f"cannot reach {self._target()}: {exc}") from exc
        if response.status_code != 200:
            raise RuntimePredictError(
                f"{self._target()} answered {response.status_code} to {method} {path}: "
                f"{_error_message(response)}"
            )
        try:
            return response.json()
        except ValueError:
            raise RuntimePredictError(f"{self._target()} answered {path} with no JSON") from None


def first_replica(
    replicas: Sequence[str],
    model: str,
    version: str,
    *,
    output: str | None = None,
    index: int | None = None,
    timeout_s: float = 30.0,
    transport: Callable[[], httpx.BaseTransport] | None = None,
) -> RuntimePredict:
    """The version on the first replica that describes it (one may not have loaded it
    yet); raises the last replica's ``RuntimePredictError`` when none does. ``transport``
    makes each replica's client its transport (a ``DeadlineTransport``, say)."""
    error = RuntimePredictError("no runtime replicas to ask: pass --replica or set replicas")
    for url in replicas:
        predict = RuntimePredict(
            url,
            model,
            version,
            output=output,
            index=index,
            timeout_s=timeout_s,
            transport=None if transport is None else transport(),
        )
        try:
            predict.explained_output()
        except RuntimePredictError as exc:
            predict.close()
            error = exc
            continue
        except BaseException:  # the job run stopping (RunStopped), say
            predict.close()
            raise
        return predict
    raise error


def _choose_output(
    outputs: Sequence[TensorContract], wanted: str | None, target: str
) -> TensorContract:
    names = ", ".join(f"{o.name} ({o.datatype})" for o in outputs) or "none"
    if wanted is not None:
        for output in outputs:
            if output.name == wanted:
                return output
        raise RuntimePredictError(f"{target} has no output '{wanted}'; its outputs: {names}")
    for output in outputs:
        if output.datatype in FLOAT_DATATYPES:
            return output
    raise RuntimePredictError(
        f"{target} has no floating-point output to explain (outputs: {names}); "
        "set explain.output to the one to explain"
    )


def _placement(
    frame: Frame, inputs: Sequence[TensorContract], target: str
) -> dict[str, TensorContract]:
    """The model input each feature of ``frame`` is sent as; every input needs one."""
    by_lower = {spec.name.lower(): spec for spec in inputs}
    placement: dict[str, TensorContract] = {}
    for feature in frame:
        spec = next((s for s in inputs if s.name == feature), None) or by_lower.get(feature.lower())
        if spec is not None:
            placement[feature] = spec
    missing = [spec.name for spec in inputs if spec not in placement.values()]
    unknown = [feature for feature in frame if feature not in placement]
    if missing or unknown:
        raise RuntimePredictError(
            f"the explained features do not match the inputs of {target}: "
            f"inputs without a feature {missing}, features that are no input {unknown}"
        )
    return placement


def _json_column(values: np.ndarray, spec: TensorContract) -> list[Any]:
    """One feature's values in the eval column form of the input ``spec``."""
    plain = values.tolist()
    if values.dtype.kind == "f" and spec.datatype in FLOAT_DATATYPES:
        # The common case, kept to one cheap pass: Kernel SHAP sends ~1,000 rows per row.
        scalars = [None if math.isnan(v) else v for v in plain]
    else:
        scalars = [_json_value(value, spec.datatype) for value in plain]
    if len(spec.shape) == 1:
        return scalars
    return [[value] for value in scalars]


def _json_value(value: Any, datatype: str) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if datatype == "BYTES":
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return value if isinstance(value, str) else str(value)
    if datatype == "BOOL":
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "1.0")
    number = _number(value)
    if number is None:
        return None
    if datatype in INTEGER_DATATYPES:
        return round(number)
    return number


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _explained_column(values: Any, n_rows: int, index: int | None, target: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)  # null reads as NaN
    except (TypeError, ValueError):
        raise RuntimePredictError(f"{target}: the explained output is not numeric") from None
    if array.ndim == 2 and array.shape[1] == 1 and index in (None, 0, -1):
        array = array[:, 0]
    elif array.ndim == 2:
        column = -1 if index is None else index
        if not -array.shape[1] <= column < array.shape[1]:
            raise RuntimePredictError(
                f"{target}: explain.index {column} is out of range for {array.shape[1]} columns"
            )
        array = array[:, column]
    if array.shape != (n_rows,):
        raise RuntimePredictError(
            f"{target}: the explained output has shape {array.shape} for {n_rows} rows "
            "(one value or one row of values per row is needed)"
        )
    return array


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or "(empty body)"
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return response.text[:500]
