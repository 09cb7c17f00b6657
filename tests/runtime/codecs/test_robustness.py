"""Whatever a client sends, the codecs answer a client error, never a crash (seeded fuzzing)."""

from __future__ import annotations

import contextlib
import json
import random
from typing import Any

import pytest

from runtime.codecs import oip, simple, tfserving
from runtime.errors import BadRequest
from runtime.tensors import MAX_RANK
from runtime.validation import validate_inputs
from tests.runtime.codecs import titanic_metadata

ATOMS: list[Any] = [
    None, True, 0, -1, 2**70, 1.5, 1e308, "", "male", "S",
    {"b64": "aGk="}, {"b64": 3}, {"b64": "@@"}, {"a": 1}, [], [[]], [1, [2]],
]  # fmt: skip
NAMES = ["fare", "sex", "embarked", "pclass", "age", "zzz"]


def value(rng: random.Random, depth: int = 0) -> Any:
    if depth > 3 or rng.random() < 0.5:
        return rng.choice(ATOMS)
    return [value(rng, depth + 1) for _ in range(rng.randint(0, 3))]


def by_name(rng: random.Random) -> dict[str, Any]:
    return {name: value(rng) for name in rng.sample(NAMES, rng.randint(0, len(NAMES)))}


def oip_body(rng: random.Random) -> dict[str, Any]:
    tensors = [
        {
            "name": rng.choice(NAMES),
            "shape": rng.choice([[1], [1, 1], [2, 1], [0], []]),
            "datatype": rng.choice(["FP32", "BYTES", "INT8", "BOOL", "FP16", "UINT64", "X"]),
            "data": value(rng),
        }
        for _ in range(rng.randint(0, 3))
    ]
    return {"inputs": tensors, "outputs": value(rng)} if rng.random() < 0.2 else {"inputs": tensors}


@pytest.mark.parametrize("dialect", ["simple", "tfserving", "oip"])
def test_random_bodies_are_only_ever_bad_requests(dialect: str) -> None:
    rng = random.Random(dialect)
    metadata = titanic_metadata()
    for _ in range(1500):
        with contextlib.suppress(BadRequest):
            if dialect == "simple":
                request, _ = simple.decode_eval(json.dumps(by_name(rng)).encode(), metadata)
            elif dialect == "tfserving":
                rows = [by_name(rng) for _ in range(rng.randint(0, 3))]
                payload = rng.choice([{"instances": rows}, {"inputs": by_name(rng)}])
                request, _ = tfserving.decode_predict(json.dumps(payload).encode(), metadata)
            else:
                request, _ = oip.decode_infer_request(json.dumps(oip_body(rng)).encode())
            validate_inputs(metadata, request.inputs)


def test_random_binary_tails_are_only_ever_bad_requests() -> None:
    rng = random.Random(7)
    for _ in range(1500):
        tensors = [
            {
                "name": f"x{index}",
                "shape": [rng.randint(0, 3)],
                "datatype": rng.choice(["FP32", "BYTES", "BOOL", "FP16", "INT64"]),
                "parameters": {"binary_data_size": rng.randint(0, 20)},
            }
            for index in range(rng.randint(1, 3))
        ]
        head = json.dumps({"inputs": tensors}).encode()
        tail = bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        with contextlib.suppress(BadRequest):
            oip.decode_infer_request(head + tail, len(head))


def nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


@pytest.mark.parametrize("depth", [33, 65, 70])
def test_lists_nested_past_the_rank_limit_are_refused_by_every_dialect(depth: int) -> None:
    """numpy holds at most 64 dimensions; past that, reshape raised and the client got 500."""
    metadata = titanic_metadata()
    deep = nested(depth, 7)
    decoders = {
        "simple": lambda: simple.decode_eval(json.dumps({"fare": deep}).encode(), metadata),
        "tfserving": lambda: tfserving.decode_predict(
            json.dumps({"inputs": {"fare": deep}}).encode(), metadata
        ),
        "oip": lambda: oip.decode_infer_request(
            json.dumps(
                {"inputs": [{"name": "fare", "shape": [1], "datatype": "FP32", "data": deep}]}
            ).encode()
        ),
    }
    for dialect, decode in decoders.items():
        with pytest.raises(BadRequest, match=f"nested more than {MAX_RANK} deep") as info:
            decode()
        assert "input '" in info.value.message, dialect


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ([0, 2**62], "is too large"),
        ([0, 2**63], "is too large"),
        ([0, 2**40, 2**40], "is too large"),
        ([1] * 65, "shape has 65 dimensions; a tensor has at most 32"),
    ],
)
@pytest.mark.parametrize("form", ["json", "binary", "binary-bytes"])
def test_shapes_numpy_cannot_hold_are_refused(shape: list[int], expected: str, form: str) -> None:
    """Zero elements pass the element count; the reshape that followed answered 500."""
    count = 1 if 0 not in shape else 0
    datatype = "BYTES" if form == "binary-bytes" else "FP32"
    tensor: dict[str, Any] = {"name": "x", "shape": shape, "datatype": datatype}
    if form == "json":
        body, header_length = json.dumps({"inputs": [{**tensor, "data": [1.0] * count}]}), None
        raw = body.encode()
    else:
        tail = (b"\x01\x00\x00\x00a" if datatype == "BYTES" else b"\x00\x00\x80?") * count
        head = json.dumps(
            {"inputs": [{**tensor, "parameters": {"binary_data_size": len(tail)}}]}
        ).encode()
        raw, header_length = head + tail, len(head)
    with pytest.raises(BadRequest, match="input 'x': ") as info:
        oip.decode_infer_request(raw, header_length)
    assert expected in info.value.message
