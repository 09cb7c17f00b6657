"""Dynamic batching on the demo's real models, in-process: merged calls answer every request
exactly as unbatched calls do, row for row. Keras (``iris``, three outputs per row) and a
TensorFlow SavedModel (``diabetes``) are the backends batching is for (BENCHMARKS.md,
"Dynamic batching"); the ONNX pipeline (``titanic``) stacks strings and nullable floats.
Also: the config.yaml example of docs/runtime.md is a valid config."""

from __future__ import annotations

import re
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from litestar.testing import TestClient

from runtime.app import create_app
from runtime.config import parse_model_config
from runtime.settings import RuntimeSettings

ROOT = Path(__file__).resolve().parents[2]
#: Long enough that every request of a test joins the one batch, which fills up first.
BATCHING = {"max_batch_size": 6, "max_queue_delay_ms": 1000}
RNG = np.random.default_rng(7)
BODIES: dict[str, list[dict[str, Any]]] = {
    "iris": [{"features": RNG.uniform(0, 7, 4).round(2).tolist()} for _ in range(6)],
    "diabetes": [{"features": RNG.uniform(-0.1, 0.1, 10).round(4).tolist()} for _ in range(6)],
    "titanic": [
        {"fare": 7.25, "sex": "male", "embarked": "S", "pclass": "3", "age": 22},
        {"fare": 71.3, "sex": "female", "embarked": "C", "pclass": "1", "age": 38},
        {"fare": None, "sex": "female", "embarked": None, "pclass": "2", "age": None},
        {"fare": 8.05, "sex": "male", "embarked": "Q", "pclass": "3", "age": 35},
        {"fare": 53.1, "sex": "female", "embarked": "S", "pclass": "1", "age": 4},
        {"fare": 13.0, "sex": "male", "embarked": "S", "pclass": "2", "age": 61},
    ],
}


@pytest.fixture(scope="module")
def twins(demo_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each model without batching, and as ``<model>_batched`` with ``BATCHING``."""
    root = tmp_path_factory.mktemp("batching") / "models"
    for model in BODIES:
        for name, batching in ((model, None), (f"{model}_batched", BATCHING)):
            shutil.copytree(demo_repository / model, root / name)
            path = root / name / "config.yaml"
            config = (yaml.safe_load(path.read_text()) if path.is_file() else None) or {}
            config["batching"] = batching
            path.write_text(yaml.safe_dump(config))
    return root


@pytest.mark.parametrize("model", sorted(BODIES))
def test_a_merged_call_answers_every_request_as_its_own_call_would(twins: Path, model: str) -> None:
    bodies = BODIES[model]
    settings = RuntimeSettings(repository=twins, poll_interval_s=0)
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 120
        while client.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "the runtime never became ready"
            time.sleep(0.1)
        alone = [client.post(f"/v1/models/{model}/eval", json=body) for body in bodies]
        with ThreadPoolExecutor(len(bodies)) as pool:  # all at once: one merged call
            merged = list(
                pool.map(
                    lambda body: client.post(f"/v1/models/{model}_batched/eval", json=body),
                    bodies,
                )
            )
        metrics = client.get("/metrics").text

    assert [a.status_code for a in alone + merged] == [200] * (2 * len(bodies))
    for one, batched in zip(alone, merged, strict=True):
        expected, got = one.json()["outputs"], batched.json()["outputs"]
        assert expected.keys() == got.keys()
        for name, value in expected.items():
            assert np.allclose(got[name], value, rtol=1e-5, atol=1e-6), (name, got, expected)
    calls = re.search(
        rf'driftgate_batch_size_count{{model="{model}_batched",version="\d+"}} (\S+)', metrics
    )
    assert calls is not None and float(calls.group(1)) == 1.0  # six requests, one call


def test_the_config_yaml_example_of_the_runtime_docs_is_valid() -> None:
    document = (ROOT / "docs" / "runtime.md").read_text()
    section = document.split("## config.yaml", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert example is not None

    config = parse_model_config(yaml.safe_load(example.group(1)), "docs/runtime.md")

    assert config.batching is not None and config.batching.max_batch_size == 32
    assert config.labels == {"stable": 1, "canary": 2}
