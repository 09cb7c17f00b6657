"""The arrays of dynamic batching: which requests merge into one call, and each one's share.

``runtime.batching`` keeps the queue and runs the calls; these pure functions say what a
merged call is made of. Requests stack when every input has the same name, dtype and shape
past dimension 0 (``stack_key``); their inputs are concatenated along dimension 0 in
arrival order (``stack_inputs``), and each request gets its own rows of every output back
(``split_outputs``), or ``None`` when an output is not one row per input row (the batch
then runs request by request).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Arrays = dict[str, np.ndarray]
StackKey = tuple[tuple[str, str, tuple[int, ...]], ...] | None  # None: stacks with nothing


def stack_key(inputs: Arrays) -> StackKey:
    """Requests stack when every input has the same name, dtype and shape past dimension 0
    (a scalar input has no dimension 0: its request runs alone)."""
    if any(array.ndim == 0 for array in inputs.values()):
        return None
    return tuple(
        (name, array.dtype.str, tuple(array.shape[1:])) for name, array in sorted(inputs.items())
    )


def stack_inputs(requests: Sequence[Arrays]) -> Arrays:
    """The inputs of requests with one ``stack_key``, concatenated along dimension 0 in
    their order (the first request's inputs name them)."""
    return {name: np.concatenate([inputs[name] for inputs in requests]) for name in requests[0]}


def split_outputs(outputs: Arrays, rows: list[int]) -> list[Arrays] | None:
    """Each request's rows of every output; ``None`` when an output is not one row per row."""
    total = sum(rows)
    if any(array.ndim == 0 or array.shape[0] != total for array in outputs.values()):
        return None
    offsets = np.cumsum(rows)[:-1]
    pieces = {name: np.split(array, offsets) for name, array in outputs.items()}
    return [{name: pieces[name][i] for name in outputs} for i in range(len(rows))]
