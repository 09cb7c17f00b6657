"""PMML backend: scores ``.pmml`` files with pypmml (PMML4S) on an in-process JVM via JPype.

The JVM: pypmml 1.5.8 picks its bridge once per process, in ``PMMLContext.getOrCreate(
gateway="jpype")``; ``Model.fromFile`` takes no gateway argument and, called first, would
start the default py4j bridge (a ``java`` subprocess, ~10x slower per call). So ``load``
creates the JPype context itself before loading. A JVM cannot be restarted in a process:
every PMML model shares the first one and ``unload`` never shuts it down (``Model.close()``
would). The JVM starts with ``-Xrs``: without it, it replaces a SIGTERM handler installed
before it (uvicorn's) and SIGTERM kills the process with no Python cleanup.

``java`` is looked up in ``JAVA_HOME`` then ``PATH`` before anything starts; without it
``load`` raises ``BackendUnavailable`` saying what to install. The file must be well-formed
XML (``runtime.backends.diagnosis``): PMML4S loads a document cut short, or with a mistyped
closing tag, as a model missing what came after, which then fails or answers wrongly.

Metadata conventions (the project's tabular form, one column tensor per feature):

- inputs: one per PMML input field, shape ``[-1, 1]``; ``double``/``float`` -> ``FP64``,
  ``integer`` -> ``INT64``, ``boolean`` -> ``BOOL``, ``string`` and date/time types -> ``BYTES``.
  Categorical fields (other than boolean) carry the data dictionary's valid values as
  ``allowed_values`` (their text, e.g. ``("1", "2", "3")`` for an integer class).
- ``nullable`` is true only where the mining schema gives a ``missingValueReplacement``: there
  the PMML says how a missing value is scored. Elsewhere PMML4S still answers something (a
  categorical predictor that contributes nothing, a missing result), which is rarely what the
  client meant, so a null is better refused up front with a 400.
- outputs: one per PMML output field (the ``Output`` element, or PMML4S's defaults such as
  ``predicted_<target>`` and ``probability_<class>``), shape ``[-1, 1]``, datatype mapped as
  above (PMML4S reports computed probabilities as ``real`` -> ``FP64``).

``predict`` calls the Java model once per row with an ``Object[]`` in input order (~17 us per
row, against ~30 us for a ``HashMap`` and ~80-110 us for pypmml's dict wrapper), mapping NaN
and None to missing, and converts the Java results with ``float``/``int``/``bool``/``str``. A
missing float output is NaN; a missing integer, boolean or text output (PMML4S returns
null, or ``Long.MIN_VALUE`` for an integer, when an input was invalid) is a ``BadRequest``.
PMML4S models are read-only and safe to call from several threads.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from runtime.backends.diagnosis import diagnose
from runtime.errors import BackendUnavailable, BadRequest
from runtime.tensors import ModelMetadata, TensorSpec, numpy_dtype

JAVA_INSTALL_HINT = (
    "install a Java runtime (Java 8 or newer), e.g. `apt-get install default-jre-headless`, "
    "or point JAVA_HOME at one"
)
JVM_OPTIONS = ["-Xrs"]
TABULAR_SHAPE = (-1, 1)
_LONG_MIN = -(2**63)

PMML_TO_DATATYPE: dict[str, str] = {
    "double": "FP64",
    "float": "FP64",
    "real": "FP64",
    "integer": "INT64",
    "boolean": "BOOL",
    "string": "BYTES",
}


def find_java() -> Path | None:
    """The ``java`` executable from ``JAVA_HOME``, else from ``PATH``; ``None`` if neither."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file():
            return candidate
    found = shutil.which("java")
    return Path(found) if found else None


def jvm_library(java: Path) -> str | None:
    """``libjvm`` of the Java installation ``java`` belongs to, so JPype starts that one."""
    home = java.resolve().parent.parent
    for relative in (
        "lib/server/libjvm.so",
        "jre/lib/amd64/server/libjvm.so",
        "lib/server/libjvm.dylib",
    ):
        if (home / relative).is_file():
            return str(home / relative)
    return None


def pmml_datatype(data_type: str) -> str:
    # Date and time types travel as ISO text, which PMML4S parses.
    return PMML_TO_DATATYPE.get(data_type, "BYTES")


def start_jpype_context(java: Path) -> None:
    """Create pypmml's process-wide JPype context, or check that the existing one is JPype."""
    import jpype
    from pypmml import PMMLContext

    if PMMLContext.gateway() is None and jpype.isJVMStarted():
        raise RuntimeError(
            "a JVM is already running in this process without pypmml's classpath; "
            "PMML models need pypmml to start the JVM"
        )
    PMMLContext.getOrCreate(gateway="jpype", java_opts=JVM_OPTIONS, java_path=jvm_library(java))
    if PMMLContext.gateway() != "JPype":
        raise RuntimeError(
            f"pypmml already runs on the {PMMLContext.gateway()} bridge in this process; "
            "the PMML backend needs JPype (create no pypmml model before it)"
        )


class PmmlBackend:
    """A PMML model scored by PMML4S inside this process."""

    format = "pmml"

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = dict(options)
        self._model: Any = None  # pypmml.Model: keeps the Java model referenced
        self._java_model: Any = None
        self._object_array: Any = None
        self._metadata: ModelMetadata | None = None

    def load(self, path: Path) -> None:
        try:
            import jpype
            from pypmml import Model
        except ImportError as exc:
            module = exc.name if exc.name in ("jpype", "py4j") else "pypmml"
            raise BackendUnavailable.missing_module(module, "pmml") from None
        java = find_java()
        if java is None:
            raise BackendUnavailable(
                f"PMML models run on a JVM and no `java` was found in JAVA_HOME or on PATH; "
                f"{JAVA_INSTALL_HINT}"
            )
        problem = diagnose(self.format, path)  # PMML4S loads a document cut short
        if problem is not None:
            raise ValueError(f"{path} {problem}")
        start_jpype_context(java)
        model = Model.fromFile(str(path))
        java_model = model._java_model
        schema = java_model.miningSchema()
        inputs = tuple(self._input_spec(field, schema) for field in java_model.inputFields())
        outputs = tuple(
            TensorSpec(str(field.name()), pmml_datatype(str(field.dataType())), TABULAR_SHAPE)
            for field in java_model.outputFields()
        )
        extra: dict[str, Any] = {
            "function_name": str(java_model.functionName()),
            "model_element": str(java_model.modelElement()),
            "pmml_version": str(java_model.version()),
        }
        if java_model.hasTarget():
            extra["target"] = str(java_model.targetName())
        self._metadata = ModelMetadata(inputs, outputs, platform=self.format, extra=extra)
        self._object_array = jpype.JArray(jpype.JObject)
        self._model, self._java_model = model, java_model

    @staticmethod
    def _input_spec(field: Any, schema: Any) -> TensorSpec:
        name = str(field.name())
        datatype = pmml_datatype(str(field.dataType()))
        allowed = None
        if field.isCategorical() and datatype != "BOOL":
            values = tuple(str(value.toVal()) for value in field.validValues())
            allowed = values or None
        mining_field = schema.get(name)
        nullable = bool(
            mining_field.isDefined() and mining_field.get().missingValueReplacement().isDefined()
        )
        return TensorSpec(name, datatype, TABULAR_SHAPE, allowed_values=allowed, nullable=nullable)

    def metadata(self) -> ModelMetadata:
        if self._metadata is None:
            raise RuntimeError("PmmlBackend.metadata() called before load()")
        return self._metadata

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._java_model is None or self._metadata is None:
            raise RuntimeError("PmmlBackend.predict() called before load()")
        rows = max((np.size(array) for array in inputs.values()), default=0)
        columns = [java_column(spec, inputs.get(spec.name), rows) for spec in self._metadata.inputs]
        outputs = self._metadata.outputs
        results = [np.empty(rows, dtype=numpy_dtype(spec.datatype)) for spec in outputs]
        predict_row, object_array = self._java_model.predict, self._object_array
        for row in range(rows):
            values = predict_row(object_array([column[row] for column in columns]))
            for spec, result, value in zip(outputs, results, values, strict=True):
                result[row] = python_value(spec, value, row)
        return {
            spec.name: result.reshape(rows, 1)
            for spec, result in zip(outputs, results, strict=True)
        }

    def unload(self) -> None:
        # Only the model goes: the JVM is shared by the process and cannot be restarted.
        self._java_model = None
        self._model = None


def java_column(spec: TensorSpec, array: np.ndarray | None, rows: int) -> list[Any]:
    """One input column as Python values JPype converts, with ``None`` for missing."""
    if array is None:
        return [None] * rows
    flat = np.asarray(array).reshape(-1)
    if spec.datatype == "BYTES":
        return [text_value(spec.name, value) for value in flat.tolist()]
    values: list[Any] = flat.tolist()
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


def text_value(name: str, value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"input '{name}' holds bytes that are not UTF-8 text") from None
    return str(value)


def python_value(spec: TensorSpec, value: Any, row: int) -> Any:
    """A Java result as a Python value of the output's datatype."""
    if spec.datatype == "FP64":
        return math.nan if value is None else float(value)
    if value is not None:
        if spec.datatype == "BOOL":
            return bool(value)
        if spec.datatype != "INT64":
            return str(value)
        try:
            number = int(value)
        except (TypeError, ValueError):  # a NaN where an integer was due
            number = _LONG_MIN
        if number != _LONG_MIN:
            return number
    raise BadRequest(
        f"the PMML model produced no '{spec.name}' for row {row}: "
        "an input value is invalid or missing for this model"
    )
