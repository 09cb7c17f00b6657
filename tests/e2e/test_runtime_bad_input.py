"""Bad requests against a real ``driftgate runtime``: every one is a 4xx that says what is wrong.

Each test sends one kind of mistake, through every dialect where it applies (``eval`` = the
simple API, ``tfserving`` = ``:predict``, ``oip`` = Open Inference Protocol v2 ``infer``), and
checks the exact status and that the ``{"error": ...}`` message names the input, what was
expected and what arrived. Most tests use the session's shared runtime over the demo
repository (read-only). The body-size limit is tested on a second, small runtime started with
``DRIFTGATE_MAX_BODY_BYTES=2048``, so that 4 KiB is already too much.

Every response of this module is recorded; the last test checks that the runtime is still
alive and serving after all of them, and that none of them was a 500.
"""

from __future__ import annotations

import gzip
import io
import json
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from runtime.demo.digits import write_sample_digit_png
from tests.e2e.processes import RunningProcess, driftgate_process, free_port

pytestmark = pytest.mark.e2e

#: One Titanic passenger, valid for every dialect; tests break one thing at a time.
PASSENGER: dict[str, Any] = {"fare": 7.25, "sex": "male", "embarked": "S", "pclass": "3", "age": 22}
#: The model's datatype per input: what an Open Inference Protocol client declares.
DATATYPES = {"fare": "FP32", "sex": "BYTES", "embarked": "BYTES", "pclass": "BYTES", "age": "FP32"}
INPUTS_HINT = "the model's inputs are 'fare', 'sex', 'embarked', 'pclass', 'age'"
DIALECTS = ["eval", "tfserving", "oip"]
JSON = {"content-type": "application/json"}
PNG = {"content-type": "image/png"}

#: (method, url, status) of every response in this module, for the last test.
RESPONSES: list[tuple[str, str, int]] = []


def _record(response: httpx.Response) -> None:
    RESPONSES.append((response.request.method, str(response.request.url), response.status_code))


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=10, event_hooks={"response": [_record]})


@pytest.fixture(scope="module")
def http(runtime_server: RunningProcess) -> Iterator[httpx.Client]:
    with _client(runtime_server.url) as client:
        yield client


@pytest.fixture(scope="module")
def small_runtime(
    demo_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningProcess]:
    """A second runtime, over ``titanic`` and ``digits`` only, taking bodies of 2 KiB at most."""
    folder = tmp_path_factory.mktemp("small-runtime")
    for model in ("titanic", "digits"):
        shutil.copytree(demo_repository / model, folder / "models" / model)
    port = free_port()
    args = ["runtime", "--repository", str(folder / "models"), "--port", str(port)]
    args += ["--poll-interval", "0"]
    env = {"DRIFTGATE_MAX_BODY_BYTES": "2048"}
    with driftgate_process(args, port, log_path=folder / "runtime.log", env=env) as running:
        yield running


@pytest.fixture(scope="module")
def small_http(small_runtime: RunningProcess) -> Iterator[httpx.Client]:
    with _client(small_runtime.url) as client:
        yield client


@pytest.fixture(scope="module")
def digit_png(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return write_sample_digit_png(tmp_path_factory.mktemp("digit") / "3.png", 3).read_bytes()


# -- building requests -----------------------------------------------------------------------


def request_body(dialect: str, passenger: dict[str, Any]) -> dict[str, Any]:
    """``passenger`` (one row, by input name) as the body ``dialect`` expects."""
    if dialect == "eval":
        return passenger
    if dialect == "tfserving":
        return {"instances": [passenger]}
    return {"inputs": [oip_input(name, value) for name, value in passenger.items()]}


def oip_input(name: str, value: Any, datatype: str | None = None) -> dict[str, Any]:
    datatype = datatype or DATATYPES.get(name, "BYTES")
    return {"name": name, "shape": [1, 1], "datatype": datatype, "data": [value]}


def endpoint(dialect: str, model: str = "titanic", version: str | None = None) -> str:
    """The predict path of ``dialect``; ``version`` may be a number or a label."""
    if dialect == "eval":
        return f"/v1/models/{model}" + (f"/versions/{version}" if version else "") + "/eval"
    if dialect == "tfserving":
        if version is None:
            return f"/v1/models/{model}:predict"
        kind = "versions" if version.isdigit() else "labels"
        return f"/v1/models/{model}/{kind}/{version}:predict"
    if version is None:
        return f"/v2/models/{model}/infer"
    return f"/v2/models/{model}/versions/{version}/infer"


def send(http: httpx.Client, dialect: str, passenger: dict[str, Any]) -> httpx.Response:
    return http.post(endpoint(dialect), json=request_body(dialect, passenger))


def assert_error(response: httpx.Response, status: int, *fragments: str) -> str:
    """The response is ``status`` with a body ``{"error": message}`` holding every fragment."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"], body
    message: str = body["error"]
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


def with_changes(**changes: Any) -> dict[str, Any]:
    """The passenger with some inputs replaced; ``None`` values are sent as JSON null."""
    return {**PASSENGER, **changes}


def without(name: str) -> dict[str, Any]:
    return {key: value for key, value in PASSENGER.items() if key != name}


# -- the body is not JSON, or not the JSON the dialect wants --------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_malformed_json_is_refused(http: httpx.Client, dialect: str) -> None:
    response = http.post(endpoint(dialect), content=b'{"fare": [7.25', headers=JSON)
    assert_error(response, 400, "not valid JSON", "truncated")


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        ("eval", "the request body must be a JSON object, got a list"),
        ("tfserving", "the request body must be a JSON object, got a list"),
        ("oip", "invalid inference request: Expected `object`, got `array`"),
    ],
)
def test_a_json_array_is_not_a_request(http: httpx.Client, dialect: str, expected: str) -> None:
    response = http.post(endpoint(dialect), json=[PASSENGER])
    assert_error(response, 400, expected)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_json_has_no_nan_or_infinity_literals(
    http: httpx.Client, dialect: str, literal: str
) -> None:
    # Python's json writes NaN/Infinity literals (allow_nan): not JSON, so refused whole.
    body = json.dumps(request_body(dialect, with_changes(age=float(literal))))
    assert literal in body
    response = http.post(endpoint(dialect), content=body.encode(), headers=JSON)
    assert_error(response, 400, "not valid JSON", "malformed")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_empty_body_is_refused(http: httpx.Client, dialect: str) -> None:
    response = http.post(endpoint(dialect), content=b"", headers=JSON)
    assert_error(response, 400, "the request body is empty", "expected")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_text_that_is_not_utf8_is_refused(http: httpx.Client, dialect: str) -> None:
    body = json.dumps(request_body(dialect, with_changes(sex="\udcff")), ensure_ascii=False)
    raw = body.encode("utf-8", errors="surrogateescape")  # a lone 0xff byte inside a string
    assert b'"\xff"' in raw
    response = http.post(endpoint(dialect), content=raw, headers=JSON)
    assert_error(response, 400, "not valid JSON", "UTF-8")  # msgspec words it by version


# -- inputs by name ---------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_unknown_input_is_refused_and_the_inputs_are_listed(
    http: httpx.Client, dialect: str
) -> None:
    response = send(http, dialect, with_changes(cabin="C85"))
    assert_error(response, 400, "unknown input 'cabin'", INPUTS_HINT)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_input_is_required(http: httpx.Client, dialect: str) -> None:
    response = send(http, dialect, without("age"))
    assert_error(response, 400, "missing input 'age'", INPUTS_HINT)


# -- values -----------------------------------------------------------------------------------

BAD_VALUES = [
    pytest.param(
        with_changes(fare="7.25"),
        "input 'fare': expected FP32 numbers, got the string '7.25' at [0, 0]",
        id="string-for-a-number",
    ),
    pytest.param(
        with_changes(age=True),
        "input 'age': expected FP32 numbers, got the boolean true at [0, 0]",
        id="boolean-for-a-number",
    ),
    pytest.param(
        with_changes(fare=1e39),
        "input 'fare': expected FP32 numbers, got 1e+39 at [0, 0] (out of range for FP32",
        id="beyond-fp32-range",
    ),
    pytest.param(
        with_changes(sex=None),
        "input 'sex': expected BYTES (strings), got null at [0, 0] "
        "(this input accepts no missing values)",
        id="null-for-a-non-nullable-input",
    ),
    pytest.param(
        with_changes(embarked="X"),
        "input 'embarked': expected one of 'C', 'Q', 'S'; got 'X' at [0, 0]",
        id="category-outside-allowed-values",
    ),
    pytest.param(
        with_changes(pclass="4"),
        "input 'pclass': expected one of '1', '2', '3'; got '4' at [0, 0]",
        id="class-outside-allowed-values",
    ),
]


@pytest.mark.parametrize(("passenger", "expected"), BAD_VALUES)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_bad_value_names_the_input_what_was_expected_and_what_arrived(
    http: httpx.Client, dialect: str, passenger: dict[str, Any], expected: str
) -> None:
    assert_error(send(http, dialect, passenger), 400, expected)


@pytest.mark.parametrize("dialect", DIALECTS)
def test_null_is_a_missing_value_for_a_nullable_input(http: httpx.Client, dialect: str) -> None:
    response = send(http, dialect, with_changes(age=None, embarked=None))
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("dialect", "fragments"),
    [
        ("eval", ["input 'sex'", "invalid base64"]),
        ("tfserving", ["input 'sex' at [0]", "invalid base64"]),
    ],
)
def test_an_invalid_b64_value_is_refused(
    http: httpx.Client, dialect: str, fragments: list[str]
) -> None:
    response = send(http, dialect, with_changes(sex={"b64": "bWFsZQ=x"}))
    assert_error(response, 400, *fragments)


# -- shapes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "body", "expected"),
    [
        pytest.param(
            "eval",
            {name: [[value, value]] for name, value in PASSENGER.items()},
            "input 'fare': expected shape [?, 1], got [1, 2]",
            id="eval-two-values-per-row",
        ),
        pytest.param(
            "tfserving",
            {"inputs": {**{k: [v] for k, v in PASSENGER.items()}, "fare": [[[7.25]]]}},
            "input 'fare': expected shape [?, 1], got [1, 1, 1]",
            id="tfserving-one-level-too-deep",
        ),
        pytest.param(
            "oip",
            {"inputs": [{**oip_input(n, v), "shape": [1, 1, 1]} for n, v in PASSENGER.items()]},
            "input 'fare': expected shape [?, 1], got [1, 1, 1]",
            id="oip-rank-3",
        ),
        pytest.param(
            "eval",
            {name: [[value], [value, value]] for name, value in PASSENGER.items()},
            "input 'fare': nested lists must be rectangular; expected a list of 1 at [1], "
            "got 2 items",
            id="eval-ragged-rows",
        ),
        pytest.param(
            "eval",
            {**PASSENGER, "fare": [[7.25]]},
            "inputs mix the two forms: 'sex' is a single instance but 'fare' is a column",
            id="eval-mixed-forms",
        ),
    ],
)
def test_a_wrong_shape_is_refused(
    http: httpx.Client, dialect: str, body: dict[str, Any], expected: str
) -> None:
    assert_error(http.post(endpoint(dialect), json=body), 400, expected)


# -- Open Inference Protocol specifics ------------------------------------------------------


def oip_passenger(**replaced: dict[str, Any]) -> dict[str, Any]:
    """An OIP request for the passenger whose named input entries are updated."""
    inputs = [oip_input(name, value) for name, value in PASSENGER.items()]
    for entry in inputs:
        entry.update(replaced.get(entry["name"], {}))
    return {"inputs": inputs}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            oip_passenger(fare={"datatype": "BYTES", "data": ["7.25"]}),
            "input 'fare': expected FP32 numbers, got the string '7.25' at [0, 0]",
            id="bytes-declared-for-fare",
        ),
        pytest.param(
            oip_passenger(fare={"datatype": "INT8", "data": [300]}),
            "input 'fare': expected INT8 integers, got 300 at [0, 0] "
            "(out of range for INT8: -128 to 127)",
            id="int8-overflow",
        ),
        pytest.param(
            oip_passenger(fare={"datatype": "FLOAT"}),
            "input 'fare': unknown datatype 'FLOAT' (expected one of BOOL, UINT8",
            id="unknown-datatype",
        ),
        pytest.param(
            oip_passenger(fare={"shape": [2, 1]}),
            "input 'fare': shape [2, 1] holds 2 elements but data has 1",
            id="shape-and-data-count-disagree",
        ),
        pytest.param(
            oip_passenger(fare={"shape": [2, 1], "data": [7.25, 9.5]}),
            "inputs disagree on the batch size (dimension 0): 'fare' has 2, 'sex' has 1",
            id="batch-sizes-disagree",
        ),
        pytest.param(
            {**oip_passenger(), "outputs": [{"name": "survival_rate"}]},
            "unknown output 'survival_rate' requested; "
            "the model's outputs are 'survived', 'probability'",
            id="unknown-requested-output",
        ),
        pytest.param(
            {"inputs": [*oip_passenger()["inputs"], oip_input("fare", 9.5)]},
            "input 'fare' appears more than once",
            id="duplicate-input",
        ),
        pytest.param(
            oip_passenger(fare={"shape": [-1, 1]}),
            "invalid inference request: Expected `int` >= 0 - at `$.inputs[0].shape[0]`",
            id="negative-dimension",
        ),
    ],
)
def test_oip_request_mistakes(http: httpx.Client, body: dict[str, Any], expected: str) -> None:
    assert_error(http.post("/v2/models/titanic/infer", json=body), 400, expected)


# -- TF-Serving specifics -----------------------------------------------------------------------

ROW_AND_COLUMNS = "either 'instances' (row format) or 'inputs' (columnar format), and not both"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            {"instances": [PASSENGER], "inputs": {k: [v] for k, v in PASSENGER.items()}},
            id="both-instances-and-inputs",
        ),
        pytest.param({"signature_name": "serving_default"}, id="neither"),
    ],
)
def test_tfserving_takes_instances_or_inputs(http: httpx.Client, body: dict[str, Any]) -> None:
    assert_error(http.post("/v1/models/titanic:predict", json=body), 400, ROW_AND_COLUMNS)


# -- what is not an error: an empty batch -----------------------------------------------------


def test_an_empty_batch_answers_zero_rows(http: httpx.Client) -> None:
    columns = http.post("/v1/models/titanic/eval", json={name: [] for name in PASSENGER})
    assert columns.status_code == 200, columns.text
    assert columns.json()["outputs"] == {"survived": [], "probability": []}
    empty = {"inputs": [{**oip_input(name, 0), "shape": [0, 1], "data": []} for name in PASSENGER]}
    infer = http.post("/v2/models/titanic/infer", json=empty)
    assert infer.status_code == 200, infer.text
    assert [output["shape"] for output in infer.json()["outputs"]] == [[0, 1], [0, 1]]


# -- models, versions, labels -----------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_unknown_model_is_404_and_the_served_models_are_listed(
    http: httpx.Client, dialect: str
) -> None:
    response = http.post(endpoint(dialect, "titanik"), json=request_body(dialect, PASSENGER))
    assert_error(response, 404, "unknown model 'titanik'; served models: ", "titanic")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_unknown_version_is_404(http: httpx.Client, dialect: str) -> None:
    url = endpoint(dialect, version="9")
    response = http.post(url, json=request_body(dialect, PASSENGER))
    assert_error(response, 404, "model 'titanic' has no version 9 (loaded versions: 1, 2)")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_unknown_label_is_404_and_the_labels_are_listed(
    http: httpx.Client, dialect: str
) -> None:
    url = endpoint(dialect, version="beta")
    response = http.post(url, json=request_body(dialect, PASSENGER))
    assert_error(response, 404, "model 'titanic' has no version or label 'beta'", "canary, stable")


def test_readiness_and_metadata_of_unknown_models_and_versions_are_404(
    http: httpx.Client,
) -> None:
    assert_error(http.get("/v2/models/titanik/ready"), 404, "unknown model 'titanik'")
    assert_error(http.get("/v2/models/titanic/versions/9"), 404, "has no version 9")
    assert_error(http.get("/v1/models/titanik/describe"), 404, "unknown model 'titanik'")
    assert_error(http.get("/v1/models/titanic/versions/9"), 404, "has no version 9")


# -- content types and encodings --------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "expected"),
    [
        ("eval", "eval takes application/json, image/png, image/jpeg; got 'text/csv'"),
        ("tfserving", ":predict takes application/json, got 'text/csv'"),
        ("oip", "infer takes application/json (or application/octet-stream"),
    ],
)
def test_csv_is_an_unsupported_media_type(http: httpx.Client, dialect: str, expected: str) -> None:
    csv = b"fare,sex,embarked,pclass,age\n7.25,male,S,3,22\n"
    response = http.post(endpoint(dialect), content=csv, headers={"content-type": "text/csv"})
    assert_error(response, 415, expected)


def test_an_image_for_a_model_without_an_image_contract_is_415(
    http: httpx.Client, digit_png: bytes
) -> None:
    response = http.post("/v1/models/titanic/eval", content=digit_png, headers=PNG)
    assert_error(response, 415, "model 'titanic' takes no images (image/png)", "'image' section")


@pytest.mark.parametrize(
    ("encoding", "body", "status", "expected"),
    [
        pytest.param("br", b"{}", 415, "Content-Encoding 'br' is not supported", id="brotli"),
        pytest.param(
            "gzip", b"plain text", 400, "the body is not valid gzip data", id="not-gzip-data"
        ),
        pytest.param(
            "gzip",
            gzip.compress(json.dumps(PASSENGER).encode())[:-12],
            400,
            "the gzip body is truncated",
            id="truncated-gzip",
        ),
    ],
)
def test_a_bad_content_encoding_is_refused(
    http: httpx.Client, encoding: str, body: bytes, status: int, expected: str
) -> None:
    headers = {**JSON, "content-encoding": encoding}
    response = http.post("/v1/models/titanic/eval", content=body, headers=headers)
    assert_error(response, status, expected)


# -- images -------------------------------------------------------------------------------------


def png_claiming_size(png: bytes, width: int, height: int) -> bytes:
    """``png`` with an IHDR that claims ``width`` x ``height`` (CRC recomputed: a valid header)."""
    assert png[12:16] == b"IHDR"
    bit_depth_and_rest = png[24:29]
    chunk = b"IHDR" + struct.pack(">II", width, height) + bit_depth_and_rest
    return png[:8] + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk)) + png[33:]


def one_bit_png(width: int, height: int) -> bytes:
    """A real black 1-bit PNG: a few dozen KiB compressed, width x height pixels decoded."""
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


def jpeg_of(png: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("make_body", "expected"),
    [
        pytest.param(
            lambda png: png[:8] + b"not a chunk" * 10,
            "the body is not a valid PNG image",
            id="corrupt-png",
        ),
        pytest.param(
            lambda png: png[: len(png) // 2],
            "the PNG image is truncated: the body ends before the data of its 32x32 pixels",
            id="truncated-png",
        ),
        pytest.param(
            jpeg_of,
            "the body is not a valid PNG image: it looks like a JPEG image; send it as image/jpeg",
            id="jpeg-labelled-png",
        ),
        pytest.param(
            lambda png: b"",
            "the body is not a valid PNG image: it does not start with the PNG signature",
            id="empty-body",
        ),
    ],
)
def test_a_bad_image_is_refused(
    http: httpx.Client, digit_png: bytes, make_body: Callable[[bytes], bytes], expected: str
) -> None:
    response = http.post("/v1/models/digits/eval", content=make_body(digit_png), headers=PNG)
    assert_error(response, 400, expected)


@pytest.mark.parametrize(
    ("make_body", "expected"),
    [
        pytest.param(
            lambda png: png_claiming_size(png, 100_000, 100_000),
            "the image is too large (10000.0 megapixels); the limit is 40 megapixels",
            id="header-claims-100000x100000",
        ),
        pytest.param(
            lambda png: png_claiming_size(png, 10_000, 10_000),
            "the image is 10000x10000 pixels (100.0 megapixels); the limit is 40 megapixels",
            id="header-claims-10000x10000",
        ),
        pytest.param(
            lambda png: one_bit_png(20_000, 20_000),
            "the image is too large (400.0 megapixels); the limit is 40 megapixels",
            id="real-1bit-20000x20000",
        ),
    ],
)
def test_a_decompression_bomb_is_refused_from_its_header(
    http: httpx.Client, digit_png: bytes, make_body: Callable[[bytes], bytes], expected: str
) -> None:
    body = make_body(digit_png)
    assert len(body) < 64 * 1024  # small on the wire, gigantic once decoded
    # Decoding any of these would take seconds and gigabytes; the answer must come at once.
    response = http.post("/v1/models/digits/eval", content=body, headers=PNG, timeout=5)
    assert_error(response, 413, expected)


# -- the body size limit (a second runtime with DRIFTGATE_MAX_BODY_BYTES=2048) ---------------


def test_the_small_runtime_serves_bodies_under_its_limit(
    small_http: httpx.Client, digit_png: bytes
) -> None:
    assert small_http.post("/v1/models/titanic/eval", json=PASSENGER).status_code == 200
    image = small_http.post("/v1/models/digits/eval", content=digit_png, headers=PNG)
    assert image.status_code == 200, image.text


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_body_over_the_limit_is_413(small_http: httpx.Client, dialect: str) -> None:
    body = json.dumps(request_body(dialect, PASSENGER)).encode().ljust(4096)
    response = small_http.post(endpoint(dialect), content=body, headers=JSON)
    assert_error(response, 413, "request body of 4096 bytes exceeds the limit of 2048 bytes")


def test_a_streamed_body_over_the_limit_is_413(small_http: httpx.Client) -> None:
    # No Content-Length: the limit is enforced while the body arrives.
    def chunks() -> Iterator[bytes]:
        yield json.dumps(PASSENGER).encode()
        yield b" " * 4096

    response = small_http.post("/v1/models/titanic/eval", content=chunks(), headers=JSON)
    assert_error(response, 413, "request body too large", "the limit is 2048 bytes")


def test_an_image_over_the_limit_is_413(small_http: httpx.Client, digit_png: bytes) -> None:
    padded = digit_png + bytes(4096)
    response = small_http.post("/v1/models/digits/eval", content=padded, headers=PNG)
    assert_error(response, 413, "exceeds the limit of 2048 bytes")


@pytest.mark.parametrize("dialect", ["eval", "oip"])
def test_a_gzip_body_that_inflates_past_the_limit_is_413(
    small_http: httpx.Client, dialect: str
) -> None:
    bomb = gzip.compress(b" " * 1_000_000)
    assert len(bomb) < 2048
    headers = {**JSON, "content-encoding": "gzip"}
    response = small_http.post(endpoint(dialect), content=bomb, headers=headers)
    assert_error(response, 413, "the gzip body inflates past the limit of 2048 bytes")


# -- afterwards -----------------------------------------------------------------------------------


def test_after_every_bad_request_the_runtimes_still_serve_and_none_answered_500(
    http: httpx.Client,
    small_http: httpx.Client,
    runtime_server: RunningProcess,
    small_runtime: RunningProcess,
    digit_png: bytes,
) -> None:
    bad_requests: list[Callable[[], httpx.Response]] = [
        lambda: http.post("/v1/models/titanic/eval", content=b"{", headers=JSON),
        lambda: send(http, "tfserving", with_changes(sex=None)),
        lambda: send(http, "oip", with_changes(fare="abc")),
        lambda: http.post("/v1/models/digits/eval", content=digit_png[:40], headers=PNG),
        lambda: http.post(
            "/v1/models/digits/eval",
            content=png_claiming_size(digit_png, 10**5, 10**5),
            headers=PNG,
        ),
        lambda: small_http.post("/v2/models/titanic/infer", content=bytes(4096), headers=JSON),
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:  # concurrently, ten of each
        futures = [pool.submit(bad_requests[i % len(bad_requests)]) for i in range(60)]
        statuses = [future.result().status_code for future in futures]
    assert all(400 <= status < 500 for status in statuses), statuses

    assert runtime_server.process.poll() is None and small_runtime.process.poll() is None
    for client in (http, small_http):
        for dialect in DIALECTS:
            response = send(client, dialect, PASSENGER)
            assert response.status_code == 200, response.text

    server_errors = [entry for entry in RESPONSES if entry[2] >= 500]
    assert not server_errors, server_errors
    assert "Traceback" not in small_runtime.log()
