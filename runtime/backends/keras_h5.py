"""Keras backend: serves ``.h5`` / ``.hdf5`` / ``.keras`` files with Keras 3.

``keras.models.load_model(path, compile=False)`` reads HDF5 files written by Keras 3 and by
Keras 2 (tf-keras), and the Keras 3 ``.keras`` zip. Inputs are named after the model's input
tensors (the ``Input`` layers' names), outputs after ``model.output_names`` or, for a
``Sequential`` model which has none, its last layer's name. Shapes come from the model
(``None`` -> ``-1``), datatypes from the tensors' dtypes as in the SavedModel backend.

How a request reaches the model, measured on the shared 2-core dev machine (Keras 3.15,
TF 2.21, CPU, a two-input dense model of a few dozen weights; best of 3 x 300 calls):

==============================================  ===========  ============
call                                            1 row        256 rows
==============================================  ===========  ============
``model.predict(x)``                            ~65-75 ms    (never per request)
eager ``model(x, training=False)``              ~1.5 ms      ~1-2.4 ms
``tf.function`` without signature, per call     ~0.3 ms      ~0.4-0.5 ms
``KerasBackend.predict`` (concrete function,    ~0.2 ms      ~0.2-0.3 ms
including numpy <-> tensor conversion)
==============================================  ===========  ============

So ``load`` traces the model once into a concrete function whose input signature has a
``None`` batch dimension and calls that. A model that cannot be traced (a custom layer with
Python side effects) falls back to the eager call; ``metadata().extra["call"]`` says which.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from runtime.backends.savedmodel import from_tf_tensor, import_tensorflow, tensor_spec, to_tf_tensor
from runtime.errors import BackendUnavailable, BadRequest
from runtime.tensors import ModelMetadata

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")


class KerasBackend:
    """A Keras model saved as HDF5 or ``.keras``."""

    format = "keras"

    def __init__(self, options: Mapping[str, Any]) -> None:
        self.options = dict(options)
        self._tf: ModuleType | None = None
        self._model: Any = None
        self._call: Callable[..., Mapping[str, Any]] | None = None
        self._input_dtypes: dict[str, Any] = {}
        self._metadata: ModelMetadata | None = None

    def load(self, path: Path) -> None:
        if path.suffix.lower() not in KERAS_SUFFIXES:
            raise ValueError(f"{path} is not a Keras file (expected {', '.join(KERAS_SUFFIXES)})")
        tf = import_tensorflow()
        try:
            import keras
        except ImportError:
            raise BackendUnavailable.missing_module("keras", "tensorflow") from None
        try:
            model = keras.models.load_model(str(path), compile=False)
        except (TypeError, ValueError) as exc:
            clearer = custom_code_error(exc)
            if clearer is None:
                raise
            raise clearer from exc
        input_names = [tensor.name for tensor in model.inputs]
        output_names = keras_output_names(model)
        signature = [
            tf.TensorSpec(shape=(None, *tensor.shape[1:]), dtype=tensor.dtype, name=name)
            for name, tensor in zip(input_names, model.inputs, strict=True)
        ]
        # One input: pass the tensor itself (what Sequential and single-Input models expect,
        # without Keras' structure warning); several: a dict by input name.
        pass_dict = len(input_names) > 1

        def call(*tensors: Any) -> dict[str, Any]:
            arg = dict(zip(input_names, tensors, strict=True)) if pass_dict else tensors[0]
            return name_outputs(model(arg, training=False), output_names)

        try:
            self._call = tf.function(call, input_signature=signature).get_concrete_function()
            mode = "concrete_function"
        except Exception:  # any tracing failure leaves the eager call working
            self._call = call
            mode = "eager"
        outputs = [
            tensor_spec(name, tf.TensorSpec(shape=tensor.shape, dtype=tensor.dtype))
            for name, tensor in zip(output_names, model.outputs, strict=True)
        ]
        self._metadata = ModelMetadata(
            inputs=tuple(tensor_spec(spec.name, spec) for spec in signature),
            outputs=tuple(outputs),
            platform=self.format,
            extra={"call": mode, "keras_class": type(model).__name__},
        )
        self._input_dtypes = {spec.name: spec.dtype for spec in signature}
        self._tf, self._model = tf, model

    def metadata(self) -> ModelMetadata:
        if self._metadata is None:
            raise RuntimeError("KerasBackend.metadata() called before load()")
        return self._metadata

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._call is None or self._tf is None:
            raise RuntimeError("KerasBackend.predict() called before load()")
        missing = [name for name in self._input_dtypes if name not in inputs]
        if missing:
            raise BadRequest(f"the Keras model needs every input; missing: {', '.join(missing)}")
        tensors = [
            to_tf_tensor(self._tf, inputs[name], dtype)
            for name, dtype in self._input_dtypes.items()
        ]
        results = self._call(*tensors)
        return {name: from_tf_tensor(value) for name, value in results.items()}

    def unload(self) -> None:
        self._call = None
        self._model = None
        self._tf = None


def keras_output_names(model: Any) -> list[str]:
    """Output names: ``model.output_names``, else (``Sequential``) the last layer's name."""
    count = len(model.outputs)
    names = list(getattr(model, "output_names", None) or [])
    if len(names) != count:
        names = [model.layers[-1].name] if count == 1 else [f"output_{i}" for i in range(count)]
    return [str(name) for name in names]


def name_outputs(result: Any, names: list[str]) -> dict[str, Any]:
    """A model call's result (tensor, list or dict) as a dict keyed by output name."""
    if isinstance(result, Mapping):
        return {name: result[name] for name in names} if set(names) <= set(result) else dict(result)
    if isinstance(result, list | tuple):
        return dict(zip(names, result, strict=True))
    return {names[0]: result}


#: Keras' words for an object it cannot rebuild without the Python code that defined it.
_CUSTOM_OBJECT = re.compile(r"Unknown (?:layer|object): '([^']+)'|Could not locate \w+ '([^']+)'")


def custom_code_error(exc: Exception) -> ValueError | None:
    """A load failure caused by custom Python code in the file, said with what to do instead.

    Keras asks for ``custom_object_scope`` or ``safe_mode=False``, neither of which a model
    repository can give: the runtime imports no model code. A SavedModel carries the
    computation without the code, so that is the way to serve such a model.
    """
    text = str(exc)
    found = _CUSTOM_OBJECT.search(text)
    if found is not None:
        what = f"the custom object '{found.group(1) or found.group(2)}'"
        why = "the runtime does not import"
    elif "safe_mode" in text and "Lambda" in text:
        what, why = "a Lambda layer", "Keras refuses to load from a file (safe_mode)"
    else:
        return None
    return ValueError(
        f"the model uses {what}, whose Python code {why}; export the model as a TensorFlow "
        "SavedModel, which needs no Python code to serve: "
        "`model.export('models/<name>/<version>')` in the program that built it"
    )
