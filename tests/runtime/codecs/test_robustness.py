"""Whatever a client sends, the codecs answer a client error, never a crash (seeded fuzzing)."""

from __future__ import annotations

import contextlib
import json
import random
from typing import Any

import pytest

from runtime.codecs import oip, simple, tfserving
from runtime.errors import BadRequest
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
