"""What a merged call is made of (runtime/batch_merge.py): which requests stack, the stacked
inputs, and each request's rows of the outputs. The queue around them: test_batching.py."""

from __future__ import annotations

import numpy as np

from runtime.batch_merge import split_outputs, stack_inputs, stack_key


def test_requests_stack_when_names_dtypes_and_row_shapes_match() -> None:
    one = {"x": np.zeros((1, 3), np.float32), "s": np.array([b"a"], dtype=object)}
    many = {"s": np.array([b"b", b"c"], dtype=object), "x": np.ones((2, 3), np.float32)}
    assert stack_key(one) == stack_key(many)  # rows and the inputs' order do not matter
    assert stack_key({"x": np.zeros((1, 3), np.float64)}) != stack_key({"x": one["x"]})
    assert stack_key({"x": np.zeros((1, 4), np.float32)}) != stack_key({"x": one["x"]})
    assert stack_key({"x": np.array(1.0, np.float32)}) is None  # a scalar: no rows, runs alone


def test_stacked_inputs_split_back_into_each_requests_rows() -> None:
    requests = [{"x": np.array([[1.0]])}, {"x": np.array([[2.0], [3.0]])}]
    stacked = stack_inputs(requests)
    np.testing.assert_array_equal(stacked["x"], [[1.0], [2.0], [3.0]])
    shares = split_outputs({"y": stacked["x"] * 2}, [1, 2])
    assert shares is not None
    np.testing.assert_array_equal(shares[0]["y"], [[2.0]])
    np.testing.assert_array_equal(shares[1]["y"], [[4.0], [6.0]])


def test_outputs_that_are_not_one_row_per_row_do_not_split() -> None:
    assert split_outputs({"total": np.array([6.0])}, [1, 2]) is None
    assert split_outputs({"total": np.array(6.0)}, [1, 2]) is None
