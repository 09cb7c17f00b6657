"""ONNX backend: serves a ``.onnx`` file through an onnxruntime ``InferenceSession``.

The session runs on ``CPUExecutionProvider``. Options (from the model's ``config.yaml``):

- ``intra_op_threads`` (default 1): threads one operator may use. One thread per model keeps
  replicas and concurrent models from fighting over cores; raise it for large models.
- ``inter_op_threads`` (default: onnxruntime's choice): threads running independent nodes.

Metadata is read from the graph: ONNX element types map to Open Inference Protocol datatypes
(``tensor(float)`` -> ``FP32``, ``tensor(string)`` -> ``BYTES``...), symbolic or unknown
dimensions become ``-1``. Outputs that are not tensors (the ``seq(map(...))`` a scikit-learn
``ZipMap`` produces) are **skipped**, not converted: the class keys needed to rebuild a
probability matrix live in the ZipMap node, not in the session's type information. Skipped
outputs are listed in ``metadata().extra["skipped_outputs"]`` with the reason; convert the
model with ``zipmap=False`` (skl2onnx) to serve plain probability tensors.

A model that onnxruntime refuses for its opset or IR version (made by a newer converter)
fails with one line saying so, the highest it takes, and what to do; onnxruntime's own
message (a C++ source location and function signature first) follows in parentheses.

``predict`` casts each input to the exact dtype the graph declares. Text inputs become numpy
object arrays of ``str``: onnxruntime turns a ``bytes`` element into its ``repr`` (``"b'ab'"``)
instead of decoding it, so bytes are decoded as UTF-8 here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends.diagnosis import LoadDiagnosis
from runtime.errors import BackendUnavailable, BadRequest
from runtime.tensors import ModelMetadata, TensorSpec, numpy_dtype

#: onnxruntime type strings of tensors -> Open Inference Protocol datatypes.
ONNX_TO_DATATYPE: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}


#: onnxruntime's words for a model newer than it, and what the runtime says of them.
_OPSET_REFUSAL = re.compile(
    r"Opset (?P<opset>\d+) is under development.*?"
    r"Current official support for domain (?P<domain>[\w.]+) is till opset (?P<highest>\d+)",
    re.DOTALL,
)
_IR_REFUSAL = re.compile(
    r"Unsupported model IR version: (?P<ir>\d+), max supported IR version: (?P<highest>\d+)"
)


def explain_refusal(message: str, onnxruntime_version: str) -> str | None:
    """One line for onnxruntime's refusal of a model made for a newer onnxruntime (an opset
    or IR version it does not have), saying what to do; ``None`` for any other message."""
    runtime = f"onnxruntime {onnxruntime_version}"
    if found := _OPSET_REFUSAL.search(message):
        opset, domain, highest = found["opset"], found["domain"], found["highest"]
        if domain != "ai.onnx":  # a converter's opset setting is ai.onnx's alone
            return (
                f"ONNX opset {opset} of domain {domain} is not supported by {runtime} "
                f"(highest {highest}): upgrade onnxruntime, or convert the model without "
                f"that domain's newer operators"
            )
        return (
            f"ONNX opset {opset} is not supported by {runtime} (highest {highest}): "
            f"convert the model for opset {highest} or lower (skl2onnx's target_opset, "
            "torch.onnx.export's opset_version), or upgrade onnxruntime"
        )
    if found := _IR_REFUSAL.search(message):
        ir, highest = found["ir"], found["highest"]
        return (
            f"ONNX IR version {ir} is not supported by {runtime} (highest {highest}): save "
            f"the model with IR version {highest} or lower (onnx.helper.make_model's "
            "ir_version), or upgrade onnxruntime"
        )
    return None


def onnx_shape(dims: list[Any] | None) -> tuple[int, ...]:
    """An onnxruntime shape as a tuple of ints: symbolic (``"batch"``) or ``None`` -> -1."""
    return tuple(dim if isinstance(dim, int) and dim >= 0 else -1 for dim in dims or [])


def to_text_array(name: str, array: np.ndarray) -> np.ndarray:
    """An object array of ``str``, decoding ``bytes`` elements as UTF-8."""
    flat = np.asarray(array, dtype=object).reshape(-1)
    out = np.empty(flat.shape, dtype=object)
    for index, value in enumerate(flat):
        if isinstance(value, bytes):
            try:
                out[index] = value.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(f"input '{name}' holds bytes that are not UTF-8 text") from None
        else:
            out[index] = str(value)
    return out.reshape(np.shape(array))


def thread_count(options: Mapping[str, Any], key: str, default: int = 0) -> int:
    """A thread-count option: a whole number >= 0 (0 lets onnxruntime choose)."""
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(
            f"backend option '{key}' must be a whole number >= 0 (0: onnxruntime chooses), "
            f"not {value!r}"
        )
    return value


class OnnxBackend:
    """A model in ONNX format, run by onnxruntime on the CPU."""

    format = "onnx"

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.intra_op_threads = thread_count(options, "intra_op_threads", 1)
        inter = options.get("inter_op_threads")
        self.inter_op_threads = None if inter is None else thread_count(options, "inter_op_threads")
        self._session: Any = None
        self._metadata: ModelMetadata | None = None
        self._output_names: list[str] = []
        self._input_dtypes: dict[str, np.dtype[Any]] = {}
        self._invalid_argument: type[Exception] = Exception

    def load(self, path: Path) -> None:
        try:
            import onnxruntime
            from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument
        except ImportError:
            raise BackendUnavailable.missing_module("onnxruntime", "onnx") from None
        session_options = onnxruntime.SessionOptions()
        session_options.intra_op_num_threads = self.intra_op_threads
        if self.inter_op_threads is not None:
            session_options.inter_op_num_threads = self.inter_op_threads
        try:
            session = onnxruntime.InferenceSession(
                str(path), sess_options=session_options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            explained = explain_refusal(str(exc), onnxruntime.__version__)
            if explained is None:
                raise
            detail = f"{type(exc).__name__}: {str(exc).strip()}"
            raise LoadDiagnosis(f"{explained} ({detail})") from exc
        inputs = tuple(self._spec(node, "input") for node in session.get_inputs())
        outputs: list[TensorSpec] = []
        skipped: dict[str, str] = {}
        for node in session.get_outputs():
            if node.type in ONNX_TO_DATATYPE:
                outputs.append(self._spec(node, "output"))
            else:
                skipped[node.name] = (
                    f"{node.type} is not a tensor (a ZipMap?); "
                    "convert the model with zipmap=False to serve it"
                )
        meta = session.get_modelmeta()
        extra: dict[str, Any] = {
            "producer": meta.producer_name,
            "graph_name": meta.graph_name,
            "model_version": meta.version,
        }
        if meta.custom_metadata_map:
            extra["custom_metadata"] = dict(meta.custom_metadata_map)
        if skipped:
            extra["skipped_outputs"] = skipped
        self._metadata = ModelMetadata(inputs, tuple(outputs), platform=self.format, extra=extra)
        self._input_dtypes = {spec.name: numpy_dtype(spec.datatype) for spec in inputs}
        self._output_names = [spec.name for spec in outputs]
        self._invalid_argument = InvalidArgument
        self._session = session

    @staticmethod
    def _spec(node: Any, role: str) -> TensorSpec:
        try:
            datatype = ONNX_TO_DATATYPE[node.type]
        except KeyError:
            raise ValueError(
                f"ONNX {role} '{node.name}' has type {node.type}, which the runtime cannot serve"
            ) from None
        return TensorSpec(name=node.name, datatype=datatype, shape=onnx_shape(node.shape))

    def metadata(self) -> ModelMetadata:
        if self._metadata is None:
            raise RuntimeError("OnnxBackend.metadata() called before load()")
        return self._metadata

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._session is None:
            raise RuntimeError("OnnxBackend.predict() called before load()")
        feed: dict[str, np.ndarray] = {}
        for name, dtype in self._input_dtypes.items():
            if name not in inputs:
                continue
            if dtype == np.dtype(object):
                feed[name] = to_text_array(name, inputs[name])
            else:
                feed[name] = np.asarray(inputs[name], dtype=dtype)
        try:
            results = self._session.run(self._output_names, feed)
        except self._invalid_argument as exc:
            raise BadRequest(f"the ONNX model rejected the inputs: {exc}") from None
        return {
            name: np.asarray(value) for name, value in zip(self._output_names, results, strict=True)
        }

    def unload(self) -> None:
        self._session = None
