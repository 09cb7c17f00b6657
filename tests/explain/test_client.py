"""``RuntimePredict`` against a fake runtime (``httpx.MockTransport``): what it sends to
eval, what it reads back, and what it says when the runtime refuses.

The fake serves ``describe`` in the runtime's format and answers eval like a model whose
``probability`` is ``fare / 100`` and whose ``scores`` are ``[1 - p, p]``; it records every
eval body so the tests can read what went over the wire.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import pytest

from explain.client import RuntimePredict, RuntimePredictError, first_replica

DESCRIBE = {
    "model": "titanic",
    "version": "1",
    "platform": "pipeline",
    "inputs": [
        {"name": "fare", "datatype": "FP32", "shape": [-1, 1], "nullable": True},
        {"name": "pclass", "datatype": "BYTES", "shape": [-1, 1], "nullable": False},
        {"name": "age", "datatype": "FP32", "shape": [-1], "nullable": True},
    ],
    "outputs": [
        {"name": "survived", "datatype": "INT64", "shape": [-1, 1], "nullable": False},
        {"name": "probability", "datatype": "FP32", "shape": [-1, 1], "nullable": False},
        {"name": "scores", "datatype": "FP64", "shape": [-1, 2], "nullable": False},
    ],
}
PATH = "/v1/models/titanic/versions/1"


class FakeRuntime:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == f"{PATH}/describe":
            return httpx.Response(200, json=DESCRIBE)
        if request.url.path != f"{PATH}/eval":
            return httpx.Response(404, json={"error": "unknown model 'nope'; served: titanic"})
        body = json.loads(request.content)
        self.bodies.append(body)
        fares = [row[0] for row in body["fare"]]
        if any(f is not None and f < 0 for f in fares):
            return httpx.Response(400, json={"error": "fare: negative prices are not allowed"})
        p = [0.5 if f is None else f / 100 for f in fares]
        outputs = {
            "survived": [[int(v >= 0.5)] for v in p],
            "probability": [[v] for v in p],
            "scores": [[1 - v, v] for v in p],
        }
        return httpx.Response(200, json={"model": "titanic", "version": "1", "outputs": outputs})


def _frame(fares: list[float]) -> dict[str, np.ndarray]:
    n = len(fares)
    return {
        "fare": np.asarray(fares, dtype=np.float64),
        "pclass": np.asarray([3.0, 1.0, 2.0, 3.0, 1.0][:n], dtype=np.float64),
        "age": np.asarray([30.0, np.nan, 4.0, 22.0, 50.0][:n], dtype=np.float64),
    }


def _predict(runtime: FakeRuntime, **kwargs: Any) -> RuntimePredict:
    return RuntimePredict(
        "http://runtime:8001/", "titanic", "1", transport=httpx.MockTransport(runtime), **kwargs
    )


def test_the_first_floating_point_output_is_explained_as_float64() -> None:
    runtime = FakeRuntime()
    with _predict(runtime) as predict:
        values = predict(_frame([10.0, 20.0, 30.0]))
        assert predict.explained_output() == "probability"  # not the INT64 class
    assert values.dtype == np.float64
    np.testing.assert_allclose(values, [0.1, 0.2, 0.3])


def test_features_are_sent_in_column_form_with_null_for_missing() -> None:
    runtime = FakeRuntime()
    with _predict(runtime) as predict:
        predict(_frame([10.0, np.nan, 30.0]))
    (body,) = runtime.bodies
    assert body["fare"] == [[10.0], [None], [30.0]]  # a [-1, 1] input: one list per row
    assert body["age"] == [30.0, None, 4.0]  # a [-1] input: one value per row
    assert body["pclass"] == [["3"], ["1"], ["2"]]  # numbers to a BYTES input, as text


def test_frames_larger_than_a_chunk_take_several_requests_and_are_counted() -> None:
    runtime = FakeRuntime()
    with _predict(runtime, chunk_rows=2) as predict:
        values = predict(_frame([10.0, 20.0, 30.0, 40.0, 50.0]))
        assert (predict.calls, predict.rows) == (3, 5)
    assert [len(body["fare"]) for body in runtime.bodies] == [2, 2, 1]
    np.testing.assert_allclose(values, [0.1, 0.2, 0.3, 0.4, 0.5])


def test_a_multi_column_output_gives_its_last_column_unless_told() -> None:
    with _predict(FakeRuntime(), output="scores") as positive:
        np.testing.assert_allclose(positive(_frame([10.0, 40.0])), [0.1, 0.4])
    with _predict(FakeRuntime(), output="scores", index=0) as negative:
        np.testing.assert_allclose(negative(_frame([10.0, 40.0])), [0.9, 0.6])


def test_the_runtimes_refusal_is_an_error_with_its_message() -> None:
    with _predict(FakeRuntime()) as predict, pytest.raises(RuntimePredictError) as caught:
        predict(_frame([10.0, -5.0]))
    message = str(caught.value)
    assert "answered 400" in message and "negative prices are not allowed" in message
    assert "titanic version 1 at http://runtime:8001" in message


def test_an_unknown_output_names_the_ones_there_are() -> None:
    with (
        _predict(FakeRuntime(), output="proba") as predict,
        pytest.raises(RuntimePredictError, match=r"no output 'proba'.*probability \(FP32\)"),
    ):
        predict(_frame([10.0]))


def test_features_that_do_not_match_the_inputs_are_named() -> None:
    frame = _frame([10.0]) | {"sex": np.asarray(["male"], dtype=object)}
    del frame["age"]
    with (
        _predict(FakeRuntime()) as predict,
        pytest.raises(RuntimeError, match=r"without a feature \['age'\].*no input \['sex'\]"),
    ):
        predict(frame)


def test_an_unreachable_runtime_and_no_runtime_at_all_are_errors() -> None:
    def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(RuntimePredictError, match="cannot reach titanic version 1"):
        RuntimePredict(
            "http://down:1", "titanic", "1", transport=httpx.MockTransport(unreachable)
        ).explained_output()
    with pytest.raises(RuntimePredictError, match="no runtime replicas"):
        first_replica([], "titanic", "1")
