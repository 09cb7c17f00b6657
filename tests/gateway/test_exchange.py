"""Requests and answers of every dialect become prediction-log rows."""

from __future__ import annotations

import io
import json

import pytest

from gateway.exchange import MISREAD, request_rows, response_rows
from monitoring.sampling import SamplingPolicy, hash_fraction

PASSENGER = {"fare": 7, "sex": "male", "embarked": "Q", "pclass": "3", "age": 27}
COLUMNS = {"fare": [[7], [9]], "sex": [["male"], ["female"]]}


def rows_of(dialect: str, body: object, content_type: str = "application/json"):
    return request_rows(dialect, json.dumps(body).encode(), content_type, {})


def test_eval_single_instance_is_one_row_of_scalars() -> None:
    assert rows_of("eval", PASSENGER) == ([PASSENGER], True, None)


def test_eval_columns_become_one_row_per_instance() -> None:
    rows, single, _ = rows_of("eval", COLUMNS)
    assert not single
    assert rows == [{"fare": 7, "sex": "male"}, {"fare": 9, "sex": "female"}]


def test_non_tabular_rows_stay_lists() -> None:
    rows, _, _ = rows_of("eval", {"features": [[5.1, 3.5, 1.4, 0.2]]})
    assert rows == [{"features": [5.1, 3.5, 1.4, 0.2]}]


IRIS_INSTANCE = {"features": [5.1, 3.5, 1.4, 0.2]}  # one instance of a [-1, 4] input


def eval_rows(body: object, form: str | None) -> tuple[list, bool, str | None]:
    return request_rows("eval", json.dumps(body).encode(), "application/json", {}, eval_form=form)


def test_the_runtime_s_eval_form_header_decides_a_vector_instance() -> None:
    assert eval_rows(IRIS_INSTANCE, "instance") == ([IRIS_INSTANCE], True, None)
    assert eval_rows(PASSENGER, "instance") == ([PASSENGER], True, None)
    # The same body read as a [-1, 1] input's column: four instances.
    rows, single, _ = eval_rows(IRIS_INSTANCE, "columns")
    assert not single and rows == [{"features": v} for v in (5.1, 3.5, 1.4, 0.2)]


def test_without_the_header_the_form_is_guessed() -> None:
    """An older runtime: one instance when no value is a list (right for tabular
    inputs), columns otherwise."""
    assert eval_rows(PASSENGER, None) == ([PASSENGER], True, None)
    assert eval_rows(COLUMNS, None)[1] is False


def test_columns_of_different_lengths_are_one_row_of_whole_tensors() -> None:
    """Never padded with NULL: the values would be paired with another instance's."""
    body = {"fare": [[7], [9], [11]], "sex": [["male"], ["female"]]}
    rows, _, note = eval_rows(body, "columns")
    assert rows == [{"fare": [7, 9, 11], "sex": ["male", "female"]}]
    assert note == MISREAD
    answer = json.dumps({"outputs": {"p": [0.1, 0.9, 0.3], "label": [1, 0]}}).encode()
    assert response_rows("eval", answer, {}, False) == (
        [{"p": [0.1, 0.9, 0.3], "label": [1, 0]}],
        None,
        MISREAD,
    )


def test_tfserving_instances_and_inputs() -> None:
    assert rows_of("tfserving", {"instances": [PASSENGER]})[0] == [PASSENGER]
    assert rows_of("tfserving", {"inputs": COLUMNS})[0][1] == {"fare": 9, "sex": "female"}


def test_open_inference_protocol_flat_data_is_reshaped() -> None:
    body = {
        "inputs": [
            {"name": "fare", "shape": [2, 1], "datatype": "FP32", "data": [7, 9]},
            {"name": "features", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3, 4]},
        ]
    }
    assert rows_of("v2", body)[0] == [
        {"fare": 7, "features": [1, 2]},
        {"fare": 9, "features": [3, 4]},
    ]


def test_open_inference_protocol_one_dimensional_tensors_are_one_value_per_row() -> None:
    """A tensor of shape [n] (a classifier's label output, a 1-D input) was 'an unexpected
    shape': its rows were logged without it."""
    body = {"inputs": [{"name": "x", "shape": [2], "datatype": "INT64", "data": [4, 5]}]}
    assert rows_of("v2", body) == ([{"x": 4}, {"x": 5}], False, None)
    answer = {"outputs": [{"name": "label", "shape": [2], "datatype": "INT64", "data": [1, 0]}]}
    assert response_rows("v2", json.dumps(answer).encode(), {}, False)[0] == [
        {"label": 1},
        {"label": 0},
    ]


def test_images_are_recorded_as_digest_and_size() -> None:
    rows, single, _ = request_rows("eval", b"\x89PNG....", "image/png", {})
    assert single and rows[0]["image_bytes"] == 8 and len(rows[0]["image_sha256"]) == 64
    assert "image_b64" not in rows[0]
    kept, _, _ = request_rows("eval", b"\x89PNG", "image/png", {}, keep_image_bytes=True)
    assert kept[0]["image_b64"] == "iVBORw=="


def test_readable_images_get_summary_statistics() -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 100, 0)).save(buffer, format="PNG")
    rows, _, _ = request_rows("eval", buffer.getvalue(), "image/png", {})
    row = rows[0]
    assert (row["image_width"], row["image_height"], row["image_mode"]) == (40, 30, "RGB")
    assert 100 < row["image_mean"] < 130  # the luminance of (200, 100, 0) is about 119
    broken, _, _ = request_rows("eval", b"\x89PNG not really", "image/png", {})
    assert "image_width" not in broken[0] and broken[0]["image_bytes"] == 15


def test_unreadable_bodies_give_a_note_not_an_exception() -> None:
    assert request_rows("eval", b"{not json", "application/json", {}) == (
        [],
        False,
        "request body is not JSON",
    )
    assert request_rows("v2", b'{"inputs": 3}', "application/json", {})[2] is not None


@pytest.mark.parametrize(
    ("dialect", "body", "single", "expected"),
    [
        (
            "eval",
            {"outputs": {"survived": 0, "probability": 0.2}},
            True,
            [{"survived": 0, "probability": 0.2}],
        ),
        ("eval", {"outputs": {"survived": [[0], [1]]}}, False, [{"survived": 0}, {"survived": 1}]),
        ("tfserving", {"predictions": [{"survived": [0]}]}, False, [{"survived": 0}]),
        (
            "v2",
            {"outputs": [{"name": "p", "shape": [2, 1], "datatype": "FP32", "data": [0.1, 0.9]}]},
            False,
            [{"p": 0.1}, {"p": 0.9}],
        ),
    ],
)
def test_answers_become_rows(dialect: str, body: object, single: bool, expected: list) -> None:
    assert response_rows(dialect, json.dumps(body).encode(), {}, single) == (expected, None, None)


def test_an_error_answer_gives_its_message() -> None:
    body = json.dumps({"error": "input 'fare': expected FP32"}).encode()
    assert response_rows("eval", body, {}, True) == ([], "input 'fare': expected FP32", None)


def test_sampling_is_stable_and_keeps_errors_and_shadows() -> None:
    policy = SamplingPolicy(default_rate=0.1, route_rates={"iris": 1.0})
    kept = [policy.keep("titanic", f"id-{i}", status=200, shadowed=False) for i in range(5000)]
    assert 0.08 < sum(kept) / len(kept) < 0.12
    assert kept == [
        policy.keep("titanic", f"id-{i}", status=200, shadowed=False) for i in range(5000)
    ]
    assert all(policy.keep("titanic", f"id-{i}", status=500, shadowed=False) for i in range(50))
    assert all(policy.keep("titanic", f"id-{i}", status=200, shadowed=True) for i in range(50))
    assert policy.keep("iris", "any", status=200, shadowed=False)
    assert 0 <= hash_fraction("x") < 1
    with pytest.raises(ValueError, match=r"log\.sampling\.titanic"):
        SamplingPolicy(route_rates={"titanic": 2.0})
