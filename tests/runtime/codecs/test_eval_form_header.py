"""The eval answer names the form its body was read as, for the gateway's prediction log.

Only the runtime knows the input shapes that decide it: iris's describe example
``{"features": [5.1, 3.5, 1.4, 0.2]}`` is one instance of its ``[-1, 4]`` input, but the
gateway, seeing a list, took it for a column of four. On the real demo model, through the
runtime app, and read back the way the gateway's recorder reads it.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from litestar.testing import TestClient

from gateway.exchange_records import Exchange, exchange_records
from runtime.app import create_app
from runtime.codecs.simple import EVAL_FORM_HEADER, EvalForm
from runtime.settings import RuntimeSettings


def test_the_header_names_the_form() -> None:
    assert EvalForm(single_instance=True).header == {EVAL_FORM_HEADER: "instance"}
    assert EvalForm(single_instance=False).header == {EVAL_FORM_HEADER: "columns"}


@pytest.fixture(scope="module")
def client(demo_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:  # type: ignore[type-arg]
    root = tmp_path_factory.mktemp("eval_form") / "models"
    shutil.copytree(demo_repository / "iris", root / "iris")  # the one model needed
    settings = RuntimeSettings(repository=root, poll_interval_s=0)
    with TestClient(create_app(settings)) as test_client:
        deadline = time.monotonic() + 120
        while test_client.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "the runtime never became ready"
            time.sleep(0.1)
        yield test_client


def logged(body: bytes, answer_body: bytes, answer_headers: dict[str, str]) -> list[tuple]:
    exchange = Exchange(
        request_id="r",
        timestamp=datetime.now(UTC),
        route="iris",
        arm="",
        role="primary",
        dialect="eval",
        model="iris",
        version="1",
        replica="",
        status=200,
        latency_s=0.0,
        trace_id=None,
        request_body=body,
        request_headers={"content-type": "application/json"},
        response_body=answer_body,
        response_headers={k.lower(): v for k, v in answer_headers.items()},
    )
    return [(r.inputs, r.outputs, r.error) for r in exchange_records(exchange)]


def test_iris_answers_say_how_the_body_was_read(client: TestClient) -> None:  # type: ignore[type-arg]
    example = client.get("/v1/models/iris/describe").json()["examples"]
    instance = {"features": [5.1, 3.5, 1.4, 0.2]}
    assert len(example["instance"]["features"]) == 4  # the describe example has this form

    answer = client.post("/v1/models/iris/eval", json=instance)
    assert answer.status_code == 200, answer.text
    assert answer.headers[EVAL_FORM_HEADER] == "instance"
    outputs = answer.json()["outputs"]
    rows = logged(answer.request.content, answer.content, dict(answer.headers))
    assert rows == [(instance, outputs, None)]  # one row, the vector a list cell

    columns = {"features": [[5.1, 3.5, 1.4, 0.2], [6.2, 2.9, 4.3, 1.3]]}
    answer = client.post("/v1/models/iris/eval", json=columns)
    assert answer.status_code == 200, answer.text
    assert answer.headers[EVAL_FORM_HEADER] == "columns"
    rows = logged(answer.request.content, answer.content, dict(answer.headers))
    assert [inputs for inputs, _, _ in rows] == [{"features": f} for f in columns["features"]]
    assert all(error is None for _, _, error in rows)
