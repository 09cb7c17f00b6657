"""Built-in pipeline processors: what each computes, and how each refuses bad params/data."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import BadRequest
from runtime.processors import PROCESSORS, Processor, resolve_processor
from runtime.tensors import TensorSpec


def column(name: str, datatype: str = "FP32", **extra) -> TensorSpec:
    return TensorSpec(name, datatype, (-1, 1), **extra)


def text(*values) -> np.ndarray:
    return np.array(values, dtype=object).reshape(-1, 1)


def build(name: str, params: dict, specs: list[TensorSpec]):
    processor = PROCESSORS[name](params)
    return processor, processor.output_specs(specs)


class Doubler:
    """A user processor, as a pipeline names it: ``tests.runtime.test_processors:Doubler``."""

    def __init__(self, params):
        self.factor = params.get("factor", 2)

    def output_specs(self, input_specs):
        return list(input_specs)

    def __call__(self, inputs):
        return [x * self.factor for x in inputs]


def test_every_builtin_satisfies_the_processor_protocol():
    assert isinstance(Doubler({}), Processor)
    assert set(PROCESSORS) >= {"standard_scaler", "onehot", "ordinal", "impute", "concat",
                               "cast", "select", "argmax", "threshold", "tokenizer"}  # fmt: skip


# --- standard_scaler ------------------------------------------------------------------------


def test_scaler_uses_per_input_mean_and_scale():
    scaler, specs = build(
        "standard_scaler",
        {"mean": {"fare": 10.0, "age": 30.0}, "scale": {"fare": 5.0, "age": 10.0}},
        [column("fare"), column("age", "INT64")],
    )
    fare, age = scaler([np.array([[20.0]], np.float32), np.array([[50]], np.int64)])
    assert fare.tolist() == [[2.0]] and fare.dtype == np.float32
    assert age.tolist() == [[2.0]] and age.dtype == np.float32
    assert [s.datatype for s in specs] == ["FP32", "FP32"]


def test_scaler_broadcasts_a_list_over_columns():
    scaler, _ = build(
        "standard_scaler",
        {"mean": [1.0, 2.0], "scale": [1.0, 4.0]},
        [TensorSpec("x", "FP64", (-1, 2))],
    )
    (out,) = scaler([np.array([[1.0, 10.0]])])
    assert out.tolist() == [[0.0, 2.0]] and out.dtype == np.float64


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"mean": 0.0}, "params.scale is required"),
        ({"mean": 0.0, "scale": 0.0}, "must not contain 0"),
        ({"mean": {"other": 1.0}, "scale": 1.0}, "not inputs of this step"),
        ({"mean": [1.0, 2.0], "scale": 1.0}, "has 2 values for 1 column"),
    ],
)
def test_scaler_rejects_bad_params(params, message):
    with pytest.raises(ValueError, match=message):
        build("standard_scaler", params, [column("fare")])


def test_scaler_rejects_text_inputs():
    with pytest.raises(ValueError, match="input 'sex' is BYTES"):
        build("standard_scaler", {"mean": 0, "scale": 1}, [column("sex", "BYTES")])


# --- onehot ---------------------------------------------------------------------------------


def test_onehot_concatenates_blocks_and_zeroes_unknown_and_missing_values():
    onehot, specs = build(
        "onehot",
        {"categories": {"sex": ["female", "male"], "pclass": ["1", "2", "3"]}},
        [column("sex", "BYTES"), column("pclass", "INT64")],
    )
    assert specs == [TensorSpec("onehot", "FP32", (-1, 5))]
    (out,) = onehot([text("male", "unknown", None, b"female"), np.array([[3], [1], [2], [9]])])
    assert out.tolist() == [
        [0, 1, 0, 0, 1],
        [0, 0, 1, 0, 0],
        [0, 0, 0, 1, 0],
        [1, 0, 0, 0, 0],
    ]


def test_onehot_matches_numbers_to_text_categories():
    onehot, _ = build("onehot", {"categories": [1, 2, 3]}, [column("pclass")])
    (out,) = onehot([np.array([[2.0], [3.0]], np.float32)])
    assert out.tolist() == [[0, 1, 0], [0, 0, 1]]


def test_onehot_can_refuse_unknown_categories():
    onehot, _ = build(
        "onehot",
        {"categories": ["C", "Q", "S"], "handle_unknown": "error"},
        [column("port", "BYTES")],
    )
    with pytest.raises(BadRequest, match=r"input 'port' has value 'X'.*\['C', 'Q', 'S'\]"):
        onehot([text("C", "X")])


def test_onehot_needs_one_column_per_input():
    with pytest.raises(ValueError, match=r"expected \[-1, 1\]"):
        build("onehot", {"categories": ["a"]}, [TensorSpec("m", "BYTES", (-1, 3))])


def test_onehot_checks_handle_unknown():
    with pytest.raises(ValueError, match=r"params\.handle_unknown is 'drop'"):
        PROCESSORS["onehot"]({"categories": ["a"], "handle_unknown": "drop"})


def test_onehot_needs_output_specs_before_a_call():
    with pytest.raises(RuntimeError, match="call output_specs"):
        PROCESSORS["onehot"]({"categories": ["a"]})([text("a")])


# --- ordinal --------------------------------------------------------------------------------


def test_ordinal_codes_with_configurable_unknown_value():
    ordinal, specs = build(
        "ordinal",
        {"categories": {"size": ["S", "M", "L"]}, "unknown_value": 99},
        [column("size", "BYTES")],
    )
    assert specs == [TensorSpec("size", "INT64", (-1, 1))]
    (out,) = ordinal([text("L", "XL", None, "S")])
    assert out.tolist() == [[2], [99], [99], [0]]


def test_ordinal_unknowns_default_to_minus_one_or_can_be_refused():
    lenient, _ = build("ordinal", {"categories": ["a", "b"]}, [column("x", "BYTES")])
    assert lenient([text("b", "z")])[0].tolist() == [[1], [-1]]
    strict, _ = build(
        "ordinal", {"categories": ["a", "b"], "handle_unknown": "error"}, [column("x", "BYTES")]
    )
    with pytest.raises(BadRequest, match="input 'x' has value 'z'"):
        strict([text("z")])


# --- impute ---------------------------------------------------------------------------------


def test_impute_fills_nan_and_missing_text_per_input():
    impute, specs = build(
        "impute",
        {"values": {"age": 28.0, "port": "S"}},
        [column("age", nullable=True), column("port", "BYTES", nullable=True)],
    )
    assert not any(spec.nullable for spec in specs)
    age, port = impute(
        [np.array([[np.nan], [40.0]], np.float32), text(None, "", "C", float("nan"))]
    )
    assert age.tolist() == [[28.0], [40.0]] and age.dtype == np.float32
    assert port.ravel().tolist() == ["S", "S", "C", "S"]


def test_impute_one_value_for_every_input():
    impute, _ = build("impute", {"value": 0}, [column("a"), column("b", "FP64")])
    a, b = impute([np.array([[np.nan]], np.float32), np.array([[1.5]])])
    assert a.tolist() == [[0.0]] and b.tolist() == [[1.5]]


def test_impute_refuses_a_fill_value_of_the_wrong_kind():
    with pytest.raises(ValueError, match="input 'port' is BYTES; its fill value must be text"):
        build("impute", {"value": 1}, [column("port", "BYTES")])
    with pytest.raises(ValueError, match=r"set exactly one of params\.value or params\.values"):
        PROCESSORS["impute"]({})


# --- concat, cast, select, reshape ----------------------------------------------------------


def test_concat_joins_columns_into_one_matrix():
    concat, specs = build(
        "concat",
        {},
        [column("a"), TensorSpec("b", "FP64", (-1, 2)), TensorSpec("c", "INT64", (-1,))],
    )
    assert specs == [TensorSpec("concat", "FP32", (-1, 4))]
    (out,) = concat([np.array([[1.0]]), np.array([[2.0, 3.0]]), np.array([4])])
    assert out.tolist() == [[1, 2, 3, 4]] and out.dtype == np.float32


def test_cast_converts_numbers_and_parses_text():
    cast, specs = build("cast", {"datatype": "FP64"}, [column("n", "BYTES")])
    assert specs[0].datatype == "FP64"
    assert cast([text("1.5", None)])[0][0, 0] == 1.5
    with pytest.raises(BadRequest, match="'abc' is not a number"):
        cast([text("abc")])
    to_text, _ = build("cast", {"datatype": "BYTES"}, [column("n", "INT64")])
    assert to_text([np.array([[3]])])[0].tolist() == [["3"]]


def test_select_takes_columns():
    select, specs = build("select", {"column": 1}, [TensorSpec("p", "FP32", (-1, 2))])
    assert specs == [TensorSpec("p", "FP32", (-1, 1))]
    assert select([np.array([[0.2, 0.8]])])[0].tolist() == [[0.8]]
    several, _ = build("select", {"columns": [2, 0]}, [TensorSpec("p", "FP32", (-1, 3))])
    assert several([np.array([[1, 2, 3]])])[0].tolist() == [[3, 1]]
    with pytest.raises(ValueError, match="out of range"):
        build("select", {"column": 5}, [TensorSpec("p", "FP32", (-1, 2))])


def test_reshape_turns_a_vector_into_a_column():
    reshape, specs = build("reshape", {"shape": [-1, 1]}, [TensorSpec("label", "INT64", (-1,))])
    assert specs[0].shape == (-1, 1)
    assert reshape([np.array([0, 1])])[0].tolist() == [[0], [1]]


# --- argmax, threshold ----------------------------------------------------------------------


def test_argmax_gives_indices_or_labels():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    argmax, specs = build("argmax", {}, [TensorSpec("p", "FP32", (-1, 3))])
    assert specs[0].datatype == "INT64" and argmax([scores])[0].tolist() == [[1], [0]]
    named, specs = build(
        "argmax",
        {"labels": ["setosa", "versicolor", "virginica"]},
        [TensorSpec("p", "FP32", (-1, 3))],
    )
    assert specs[0].allowed_values == ("setosa", "versicolor", "virginica")
    assert named([scores])[0].tolist() == [["versicolor"], ["setosa"]]


def test_threshold_decides_on_a_score_column():
    threshold, _ = build("threshold", {"threshold": 0.5}, [column("p")])
    assert threshold([np.array([[0.49], [0.5]])])[0].tolist() == [[0], [1]]
    of_matrix, _ = build("threshold", {"column": 1}, [TensorSpec("p", "FP32", (-1, 2))])
    assert of_matrix([np.array([[0.3, 0.7]])])[0].tolist() == [[1]]


# --- tokenizer ------------------------------------------------------------------------------


def test_tokenizer_lowercases_maps_pads_and_truncates():
    tokenizer, specs = build(
        "tokenizer",
        {"vocabulary": ["the", "ship", "sank"], "max_length": 4},
        [column("text", "BYTES")],
    )
    assert specs == [TensorSpec("text", "INT64", (-1, 4))]
    (ids,) = tokenizer([text("The SHIP sank!", "the iceberg", "the ship the ship sank", None)])
    # 0 pads, 1 is the unknown token, the vocabulary starts at 2.
    assert ids.tolist() == [[2, 3, 4, 0], [2, 1, 0, 0], [2, 3, 2, 3], [0, 0, 0, 0]]


def test_tokenizer_with_explicit_ids_and_pattern():
    tokenizer, _ = build(
        "tokenizer",
        {"vocabulary": {"a": 10, "b-c": 11}, "max_length": 3, "pattern": r"[\w-]+",
         "lowercase": False, "unknown_id": 99, "pad_id": -1},
        [column("text", "BYTES")],
    )  # fmt: skip
    assert tokenizer([text("a b-c A")])[0].tolist() == [[10, 11, 99]]
    assert tokenizer([text("a")])[0].tolist() == [[10, -1, -1]]


def test_tokenizer_needs_text_and_a_vocabulary():
    with pytest.raises(ValueError, match=r"params\.vocabulary is required"):
        PROCESSORS["tokenizer"]({"max_length": 3})
    with pytest.raises(ValueError, match="not a regular expression"):
        PROCESSORS["tokenizer"]({"vocabulary": ["a"], "max_length": 3, "pattern": "(["})
    with pytest.raises(ValueError, match="expected text"):
        build("tokenizer", {"vocabulary": ["a"], "max_length": 2}, [column("n")])


# --- resolve_processor (the extension point) ------------------------------------------------


def test_resolve_processor_finds_builtins_and_user_classes():
    assert resolve_processor("onehot") is PROCESSORS["onehot"]
    assert resolve_processor(f"{__name__}:Doubler") is Doubler


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("one_hot", "unknown processor 'one_hot'.*package.module:Class"),
        ("no_such_module_xyz:Thing", "cannot import processor module 'no_such_module_xyz'"),
        (f"{__name__}:Missing", "has no class 'Missing'"),
        (f"{__name__}:column", "has no class 'column'"),
    ],
)
def test_resolve_processor_explains_what_is_wrong(name, message):
    with pytest.raises(ValueError, match=message):
        resolve_processor(name)
