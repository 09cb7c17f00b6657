"""Built-in pipeline processors: small, pure-numpy transforms between pipeline tensors.

A processor is one step of a ``pipeline.yaml`` (see ``runtime.pipeline`` and
``docs/pipelines.md``). It is a class with three members:

- ``__init__(params)``: takes the step's ``params`` mapping and checks it (``ValueError``
  naming the parameter when it is wrong);
- ``output_specs(input_specs) -> list[TensorSpec]``: called once when the pipeline loads,
  with the specs of the tensors the step reads, in order. It checks them (``ValueError``)
  and returns one spec per output (the pipeline renames them to the step's output names).
  Parameters keyed by input tensor name are resolved here, so it always runs before the
  first call;
- ``__call__(inputs) -> list[np.ndarray]``: transforms a batch (dimension 0). Bad data a
  client sent raises ``BadRequest``.

``PROCESSORS`` maps the built-in names to their classes. A step may instead name any class
as ``"package.module:Class"`` (``resolve_processor``): that is the extension point.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from runtime.processors.categorical import OneHot, Ordinal
from runtime.processors.numeric import Cast, Concat, Impute, StandardScaler
from runtime.processors.shaping import Argmax, Reshape, Select, Threshold
from runtime.processors.text import Tokenizer
from runtime.tensors import TensorSpec


@runtime_checkable
class Processor(Protocol):
    """What a pipeline step needs from a processor class instance."""

    def output_specs(self, input_specs: Sequence[TensorSpec]) -> list[TensorSpec]: ...

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]: ...


#: Built-in processors by the name a step gives in ``processor:``.
PROCESSORS: dict[str, type] = {
    "standard_scaler": StandardScaler,
    "onehot": OneHot,
    "ordinal": Ordinal,
    "impute": Impute,
    "concat": Concat,
    "cast": Cast,
    "select": Select,
    "reshape": Reshape,
    "argmax": Argmax,
    "threshold": Threshold,
    "tokenizer": Tokenizer,
}


def resolve_processor(name: str) -> type:
    """The class for a step's ``processor:``: a built-in name or ``"package.module:Class"``.

    Raises ``ValueError`` saying what was expected.
    """
    if name in PROCESSORS:
        return PROCESSORS[name]
    if ":" not in name:
        known = ", ".join(sorted(PROCESSORS))
        raise ValueError(
            f"unknown processor '{name}' (built-ins: {known}; "
            "or give your own class as 'package.module:Class')"
        )
    module_name, _, class_name = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import processor module '{module_name}': {exc}") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise ValueError(f"module '{module_name}' has no class '{class_name}'")
    if not (callable(getattr(cls, "output_specs", None)) and callable(cls)):
        raise ValueError(f"processor class '{name}' must define output_specs() and __call__()")
    return cls
