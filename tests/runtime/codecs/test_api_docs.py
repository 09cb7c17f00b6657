"""Every example in docs/api.md, run through the codecs it documents.

Request bodies are decoded and validated against the demo titanic contract; a documented
400 must be exactly the error the codecs raise; a documented 200 must be exactly what the
encoder writes for the documented outputs; GET answers must be what the metadata
functions build. The Python client example runs against an in-process fake server.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton

from runtime.codecs import oip, simple, tfserving
from runtime.errors import BadRequest
from runtime.inference import InferenceResponse
from runtime.tensors import numpy_dtype
from runtime.validation import select_outputs, validate_inputs
from tests.runtime.codecs import titanic_metadata

DOC = Path(__file__).resolve().parents[3] / "docs" / "api.md"
BLOCKS = re.findall(r"```(http|python)\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
METADATA = titanic_metadata()
MODEL = r"/(?:v1|v2)/models/titanic(?:/versions/(?P<version>\w+))?"

GETS = {
    "/v1/models/titanic/describe": lambda: simple.describe(
        "titanic", "2", METADATA, labels={"stable": 1, "canary": 2}
    ),
    "/v2": lambda: oip.server_metadata("driftgate", "0.1.0"),
    "/v2/models/titanic": lambda: oip.model_metadata("titanic", ["1", "2"], "pipeline", METADATA),
    "/v1/models/titanic": lambda: tfserving.model_status(
        "titanic", [("1", "READY", None), ("2", "READY", None)]
    ),
    "/v1/models/titanic/metadata": lambda: tfserving.model_metadata("titanic", "2", METADATA),
}


def parse_http(text: str) -> tuple[str, dict[str, str], str]:
    head, _, body = text.partition("\n\n")
    first, *header_lines = head.strip().splitlines()
    headers = dict(line.split(": ", 1) for line in header_lines)
    return first, headers, body.strip()


def exchanges() -> list[tuple[str, str]]:
    pairs = []
    for index, (kind, content) in enumerate(BLOCKS):
        if kind == "http" and not content.startswith("HTTP/"):
            response_kind, response = BLOCKS[index + 1]
            assert response_kind == "http" and response.startswith("HTTP/"), content
            pairs.append((content, response))
    return pairs


def dialect(path: str) -> str:
    for name, pattern in (("eval", r"/eval"), ("predict", r":predict"), ("infer", r"/infer")):
        if re.fullmatch(MODEL + pattern, path):
            return name
    raise AssertionError(f"no codec for {path}")


def decode(path: str, body: bytes) -> tuple[Any, Any]:
    kind = dialect(path)
    if kind == "eval":
        return simple.decode_eval(body, METADATA)
    if kind == "predict":
        return tfserving.decode_predict(body, METADATA)
    return oip.decode_infer_request(body, None)


def output_arrays(kind: str, documented: dict[str, Any], form: Any) -> dict[str, np.ndarray]:
    """The model outputs that the documented response body shows."""
    if kind == "infer":
        return {
            out["name"]: np.array(out["data"], dtype=numpy_dtype(out["datatype"])).reshape(
                out["shape"]
            )
            for out in documented["outputs"]
        }
    if kind == "eval":
        values = documented["outputs"]
    elif form.row_format:
        rows = documented["predictions"]
        values = {name: [row[name] for row in rows] for name in rows[0]}
    else:
        values = documented["outputs"]
    arrays: dict[str, np.ndarray] = {}
    for name, value in values.items():
        spec = METADATA.output(name)
        assert spec is not None
        array = np.array(value, dtype=numpy_dtype(spec.datatype))
        if kind == "eval" and form.single_instance:
            array = array.reshape((1, *spec.shape[1:]))
        arrays[name] = array
    return arrays


def encode(kind: str, response: InferenceResponse, form: Any) -> tuple[Any, str]:
    if kind == "infer":
        body, headers = oip.encode_infer_response(response, form)
        return json.loads(body), headers["Content-Type"]
    if kind == "eval":
        return simple.encode_eval(response, form), "application/json"
    return tfserving.encode_predict(response, form), "application/json"


EXCHANGES = exchanges()


def test_the_doc_has_examples_of_every_dialect() -> None:
    lines = {parse_http(request)[0] for request, _ in EXCHANGES}
    for fragment in ("/eval", ":predict", "/infer", "/describe", "GET /v2", "/metadata"):
        assert any(fragment in line for line in lines), fragment


@pytest.mark.parametrize(("request_text", "response_text"), EXCHANGES)
def test_documented_exchange(request_text: str, response_text: str) -> None:
    request_line, _, request_body = parse_http(request_text)
    status_line, response_headers, response_body = parse_http(response_text)
    method, path = request_line.split()
    status = int(status_line.split()[1])
    documented = json.loads(response_body)

    if method == "GET":
        assert status == 200
        assert documented == GETS[path]()
        return
    if status == 400:
        with pytest.raises(BadRequest) as info:
            request, _ = decode(path, request_body.encode())
            validate_inputs(METADATA, request.inputs)
        assert documented == {"error": info.value.message}
        return

    assert status == 200
    request, form = decode(path, request_body.encode())
    validate_inputs(METADATA, request.inputs)
    kind = dialect(path)
    outputs = select_outputs(output_arrays(kind, documented, form), request.outputs, METADATA)
    match = re.fullmatch(MODEL + r".*", path)
    version = (match.group("version") if match else None) or "2"
    response = InferenceResponse("titanic", version, outputs, id=request.id)
    body, content_type = encode(kind, response, form)
    assert body == documented
    assert response_headers["Content-Type"] == content_type
    if kind == "eval":  # the form the runtime read, which the gateway's log splits by
        assert response_headers[simple.EVAL_FORM_HEADER] == form.header[simple.EVAL_FORM_HEADER]


class FakeServer:
    """Stands in for ``InferenceServerClient``: the real body builder and parser around
    the runtime's codecs and a titanic model that always answers the same."""

    real = triton.InferenceServerClient

    def __init__(self, url: str) -> None:
        self.url = url

    def infer(self, model_name: str, inputs: list[Any], outputs: Any = None) -> Any:
        body, header_length = self.real.generate_request_body(inputs, outputs=outputs)
        request, form = oip.decode_infer_request(body, header_length)
        validate_inputs(METADATA, request.inputs)
        produced: dict[str, np.ndarray] = {
            "survived": np.array([[0]], dtype=np.int64),
            "probability": np.array([[0.12]], dtype=np.float32),
        }
        selected = select_outputs(produced, request.outputs, METADATA)
        answer, headers = oip.encode_infer_response(
            InferenceResponse(model_name, "2", selected), form
        )
        length = headers.get(oip.HEADER_LENGTH)
        return self.real.parse_response_body(
            answer, header_length=int(length) if length is not None else None
        )


def test_the_python_client_example_runs(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (snippet,) = [content for kind, content in BLOCKS if kind == "python"]
    monkeypatch.setattr(triton, "InferenceServerClient", FakeServer)
    exec(compile(snippet, str(DOC), "exec"), {})
    assert capsys.readouterr().out.strip() == "[[0.12]]"
