"""Text processors: the regex word tokenizer.

``Tokenizer`` doubles as the worked example of a processor (``docs/pipelines.md``, "Adding
a processor"): parameters checked in ``__init__``, the input checked in ``output_specs``, a
``__call__`` that keeps no state, so concurrent requests can share one instance.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

from runtime.processors.base import (
    Params,
    check_column,
    check_count,
    check_kind,
    require,
    to_text,
)
from runtime.tensors import TensorSpec


class Tokenizer:
    """Text -> INT64 token ids ``[-1, max_length]``, the input of a text model.

    Splits each text with ``pattern`` (default ``\\w+``) after optional ``lowercase``
    (default true), maps tokens through ``vocabulary`` (a list: ids start at 2, so 0 pads and
    1 is the unknown token, as Keras' TextVectorization does; or a mapping token -> id), and
    pads with ``pad_id`` or truncates to ``max_length``. ``unknown_id`` defaults to 1.
    """

    def __init__(self, params: Params) -> None:
        vocabulary = require(params, "vocabulary")
        if isinstance(vocabulary, Mapping):
            self._ids = {str(token): int(index) for token, index in vocabulary.items()}
        elif isinstance(vocabulary, Sequence) and not isinstance(vocabulary, str):
            self._ids = {str(token): index + 2 for index, token in enumerate(vocabulary)}
        else:
            raise ValueError("params.vocabulary must be a list of tokens or a token -> id mapping")
        try:
            self._pattern = re.compile(str(params.get("pattern", r"\w+")))
        except re.error as exc:
            raise ValueError(f"params.pattern is not a regular expression: {exc}") from None
        self._lowercase = bool(params.get("lowercase", True))
        self._max_length = int(require(params, "max_length"))
        if self._max_length < 1:
            raise ValueError("params.max_length must be at least 1")
        self._pad = int(params.get("pad_id", 0))
        self._unknown = int(params.get("unknown_id", 1))

    def output_specs(self, input_specs: Sequence[TensorSpec]) -> list[TensorSpec]:
        check_count(input_specs, 1)
        check_kind(input_specs[0], frozenset({"BYTES"}), "text (BYTES)")
        check_column(input_specs[0])
        return [TensorSpec(input_specs[0].name, "INT64", (-1, self._max_length))]

    def __call__(self, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
        texts = inputs[0].reshape(-1)
        ids = np.full((len(texts), self._max_length), self._pad, dtype=np.int64)
        for row, value in enumerate(texts):
            text = to_text(value) or ""
            tokens = self._pattern.findall(text.lower() if self._lowercase else text)
            for col, token in enumerate(tokens[: self._max_length]):
                ids[row, col] = self._ids.get(token, self._unknown)
        return [ids]


#: Built-in processors by the name a ``pipeline.yaml`` step gives in ``processor:``.
