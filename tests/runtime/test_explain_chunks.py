"""An explanation calls its model in bounded chunks, so that a hang-up stops it soon.

On the demo's titanic pipeline (a real ONNX model behind five original inputs), the
largest request the endpoint takes (32 rows against 200 background rows, all 30
coalitions: 192,232 predicted rows) is sent in calls of at most
``ExplainSettings.max_call_rows`` coalition rows, and gets exactly the attributions of one
single call. A client that hangs up during a call stops the explanation at the next one.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from driftgate.reference import build_reference
from explain.attributions import Attribution
from explain.frame import Frame
from runtime.backends import create_backend, detect_format
from runtime.backends.base import ModelBackend
from runtime.demo.titanic_data import DATA_DIR, FILES
from runtime.errors import ClientClosedRequest
from runtime.explain_background import background_from_profile
from runtime.explaining import (
    MAX_CALL_ROWS,
    ExplainSettings,
    explain_rows,
    explained_output_of,
)
from runtime.tensors import ModelMetadata

BACKGROUND_ROWS = 200
EXPLAINED_ROWS = 32


class RecordedCalls:
    """The titanic backend's ``predict``, recording the rows of every call."""

    def __init__(self, backend: ModelBackend) -> None:
        self.backend = backend
        self.rows: list[int] = []

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.rows.append(len(next(iter(inputs.values()))))
        return self.backend.predict(inputs)


@pytest.fixture(scope="module")
def titanic(
    demo_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[ModelBackend, ModelMetadata, Frame, Frame]:
    """The loaded titanic version 1, a background from its profile and rows to explain."""
    root = tmp_path_factory.mktemp("chunks") / "models"
    # Other tests may have built profiles in the shared demo: build one of our own.
    shutil.copytree(
        demo_repository / "titanic", root / "titanic", ignore=shutil.ignore_patterns("references")
    )
    _, profile = build_reference(
        root, "titanic", "1", DATA_DIR / FILES["reference"], label="Survived"
    )
    fmt, artefact = detect_format(root / "titanic" / "1")
    backend = create_backend(fmt, {})
    backend.load(artefact)
    metadata = backend.metadata()
    background = background_from_profile(metadata, profile, BACKGROUND_ROWS, seed=0)
    rows = background_from_profile(metadata, profile, EXPLAINED_ROWS, seed=7)
    return backend, metadata, background, rows


def explain(
    titanic: tuple[ModelBackend, ModelMetadata, Frame, Frame],
    call: RecordedCalls,
    stop: threading.Event | None = None,
    **settings: int,
) -> Attribution:
    _, metadata, background, rows = titanic
    output, index = explained_output_of(metadata, None, None)
    return explain_rows(
        call,
        metadata,
        rows,
        background,
        output=output,
        index=index,
        settings=ExplainSettings(background_rows=BACKGROUND_ROWS, **settings),
        stop=stop,
    )


def test_the_largest_request_is_predicted_in_bounded_calls_with_the_same_attributions(
    titanic: tuple[ModelBackend, ModelMetadata, Frame, Frame],
) -> None:
    chunked_calls, one_call = RecordedCalls(titanic[0]), RecordedCalls(titanic[0])
    chunked = explain(titanic, chunked_calls)
    whole = explain(titanic, one_call, max_call_rows=1_000_000)

    assert one_call.rows == [BACKGROUND_ROWS + EXPLAINED_ROWS + EXPLAINED_ROWS * 30 * 200]
    assert sum(chunked_calls.rows) == one_call.rows[0]
    assert len(chunked_calls.rows) > 1
    # The first call also carries the background and the explained rows.
    assert max(chunked_calls.rows) <= MAX_CALL_ROWS + BACKGROUND_ROWS + EXPLAINED_ROWS
    assert chunked.method == whole.method == "kernel_shap"
    for field in ("values", "predictions", "base_value"):
        np.testing.assert_array_equal(getattr(chunked, field), getattr(whole, field))


def test_a_hang_up_during_a_call_stops_the_explanation_at_the_next_one(
    titanic: tuple[ModelBackend, ModelMetadata, Frame, Frame],
) -> None:
    stop = threading.Event()

    class HangUpDuringTheFirstCall(RecordedCalls):
        def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
            stop.set()  # the client goes while this call runs
            return super().__call__(inputs)

    calls = HangUpDuringTheFirstCall(titanic[0])
    with pytest.raises(ClientClosedRequest, match="stopped"):
        explain(titanic, calls, stop)
    assert len(calls.rows) == 1
    assert calls.rows[0] <= MAX_CALL_ROWS + BACKGROUND_ROWS + EXPLAINED_ROWS
