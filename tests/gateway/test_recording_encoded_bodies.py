"""Compressed request bodies (``Content-Encoding: gzip`` / ``deflate``) in the prediction log.

The runtime inflates such a body before reading it, and the gateway forwards it as sent.
The recorder used to read the compressed bytes: the client got its answer, but the row
had every ``in_*`` column NULL and ``error = "request body is not JSON"``, which the drift
job counted as missing values. It now reads the body as the runtime does
(``monitoring.body_encoding``), on its own thread, and never inflates more than the
gateway's ``max_body_bytes``.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import threading
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gateway.exchange_records import Exchange, exchange_records
from gateway.recording import now_utc
from gateway.settings import GatewaySettings
from monitoring import body_encoding
from monitoring.prediction_log import run_sql
from tests.gateway.fakes import REPLICAS, Answer, Fail, FakeRuntime, Gateway, gateway_factory

PASSENGER = {"fare": 7, "sex": "male"}
PLAIN = json.dumps(PASSENGER).encode()


def settings(tmp_path: Path, max_body_bytes: int | None = None) -> GatewaySettings:
    raw: dict[str, Any] = {
        "replicas": [f"http://{r}" for r in REPLICAS],
        "auth": {"enabled": False},
        "health_check": {"interval_s": 0.05, "timeout_s": 0.5},
        "log": {"store": str(tmp_path / "store"), "flush_interval_s": 0.2},
    }
    if max_body_bytes is not None:
        raw["max_body_bytes"] = max_body_bytes
    return GatewaySettings.from_dict(raw)


@pytest.fixture
def runtime() -> FakeRuntime:
    fake = FakeRuntime(models={"iris": ["1", "2"]})
    fake.behave(Answer({"species": "setosa"}))
    return fake


@pytest.fixture
def start(runtime: FakeRuntime) -> Iterator[Callable[..., Gateway]]:
    with gateway_factory(runtime) as factory:
        yield factory


def post(gateway: Gateway, body: bytes, encoding: str, request_id: str = "enc") -> int:
    answer = gateway.client.post(
        "/v1/models/iris/eval",
        content=body,
        headers={
            "content-type": "application/json",
            "content-encoding": encoding,
            "x-request-id": request_id,
        },
    )
    recorder = gateway.state.recorder
    assert recorder is not None
    recorder.flush()
    return answer.status_code


def logged(tmp_path: Path, columns: str) -> list[tuple[Any, ...]]:
    return run_sql(tmp_path / "store", f"select {columns} from predictions").rows


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(PLAIN)),
        ("deflate", zlib.compress(PLAIN)),
        ("gzip", gzip.compress(PLAIN[:9]) + gzip.compress(PLAIN[9:])),  # `cat a.gz b.gz`
        (" GZip ", gzip.compress(PLAIN)),  # as the runtime reads the header
    ],
    ids=["gzip", "deflate", "gzip-two-members", "gzip-any-case"],
)
def test_a_compressed_body_is_logged_with_its_inputs(
    start, runtime: FakeRuntime, tmp_path: Path, encoding: str, body: bytes
) -> None:
    gateway = start(settings(tmp_path))
    assert post(gateway, body, encoding) == 200
    assert runtime.inference_calls()[-1].body == body  # forwarded as sent
    assert logged(tmp_path, "in_fare, in_sex, out_species, error") == [(7, "male", "setosa", None)]


def test_a_body_that_inflates_past_the_gateway_s_limit_is_logged_without_inputs(
    start, tmp_path: Path
) -> None:
    """A runtime with a higher limit than the gateway's answered it; the gateway does not
    inflate past its own ``max_body_bytes`` to log it, and the row says so."""
    gateway = start(settings(tmp_path, max_body_bytes=4096))
    bomb = gzip.compress(b'{"fare": 7, "pad": "' + b" " * 1_000_000 + b'"}')
    assert len(bomb) < 4096
    assert post(gateway, bomb, "gzip") == 200
    assert logged(tmp_path, "out_species, error") == [
        (
            "setosa",
            "request body not recorded: the gzip body inflates past the limit of 4096 "
            "bytes (the gateway's max_body_bytes)",
        )
    ]


def test_a_corrupt_body_the_runtime_refused_is_logged_with_the_runtime_s_reason(
    start, runtime: FakeRuntime, tmp_path: Path
) -> None:
    gateway = start(settings(tmp_path))
    runtime.behave(Fail(400, "the gzip body is truncated"))
    assert post(gateway, gzip.compress(PLAIN)[:-12], "gzip") == 400
    assert logged(tmp_path, "status, error") == [(400, "the gzip body is truncated")]
    columns = run_sql(tmp_path / "store", "select * from predictions").columns
    assert not [name for name in columns if name.startswith("in_")]  # no compressed bytes


def test_bodies_are_inflated_on_the_recorder_thread_not_on_the_request_path(
    start, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[str] = []
    inflate = body_encoding.inflate

    def watched(body: bytes, encoding: str, limit: int) -> bytes:
        threads.append(threading.current_thread().name)
        return inflate(body, encoding, limit)

    monkeypatch.setattr(body_encoding, "inflate", watched)
    running = start(settings(tmp_path))
    assert post(running, gzip.compress(PLAIN), "gzip") == 200
    assert threads == ["recorder"]
    assert logged(tmp_path, "in_fare") == [(7,)]


# --- exchange_records, without a gateway -------------------------------------------------------


def exchange(body: bytes, headers: dict[str, str], *, dialect: str = "eval") -> Exchange:
    return Exchange(
        request_id="enc",
        timestamp=now_utc(),
        route="iris",
        arm="",
        role="primary",
        dialect=dialect,
        model="iris",
        version="1",
        replica="http://r1",
        status=200,
        latency_s=0.01,
        trace_id=None,
        request_body=body,
        request_headers=headers,
        response_body=b'{"outputs": {"species": "setosa"}}',
        response_headers={},
    )


def test_an_oip_binary_body_compressed_whole_is_read_by_its_inflated_header_length() -> None:
    """tritonclient compresses the whole body; ``Inference-Header-Content-Length`` is the
    JSON header's length before compression, as the runtime reads it."""
    fare = {"name": "fare", "shape": [1, 1], "datatype": "FP32"}
    head = json.dumps({"inputs": [{**fare, "parameters": {"binary_data_size": 4}}]}).encode()
    body = gzip.compress(head + struct.pack("<f", 7.0))
    headers = {
        "content-type": "application/octet-stream",
        "content-encoding": "gzip",
        "inference-header-content-length": str(len(head)),
    }
    sent = replace(
        exchange(body, headers, dialect="v2"),
        response_body=b'{"outputs": [{"name": "species", "shape": [1, 1], "datatype": "BYTES", '
        b'"data": ["setosa"]}]}',
    )
    (row,) = exchange_records(sent)
    assert (row.inputs, row.outputs, row.error) == ({"fare": 7}, {"species": "setosa"}, None)


@pytest.mark.parametrize(
    ("encoding", "body", "error"),
    [
        ("gzip", b"plain text", "request body could not be decoded: the body is not valid gzip"),
        (
            "deflate",
            zlib.compress(PLAIN) + b"xx",
            "request body could not be decoded: the "
            "deflate body has 2 bytes after the end of its compressed data",
        ),
        (
            "br",
            PLAIN,
            "request body could not be decoded: Content-Encoding 'br' is not "
            "supported; use gzip, deflate or none",
        ),
    ],
    ids=["not-gzip", "trailing-bytes", "brotli"],
)
def test_a_body_that_cannot_be_decoded_is_noted_in_error_not_as_not_json(
    encoding: str, body: bytes, error: str
) -> None:
    """The runtime refuses such bodies; where its answer names no error (a proxy's page in
    between, a 5xx), the row says why its inputs are missing."""
    sent = exchange(body, {"content-type": "application/json", "content-encoding": encoding})
    for answer in (sent, replace(sent, status=502, response_body=b"<html>bad gateway</html>")):
        (row,) = exchange_records(answer)
        assert row.inputs == {}
        assert row.error is not None and row.error.startswith(error)


def test_a_compressed_image_is_summarised_from_its_inflated_bytes() -> None:

    png = io.BytesIO()
    Image.new("L", (8, 4), color=200).save(png, format="PNG")
    headers = {"content-type": "image/png", "content-encoding": "gzip"}
    (row,) = exchange_records(exchange(gzip.compress(png.getvalue()), headers))
    assert row.inputs["image_bytes"] == len(png.getvalue())
    assert (row.inputs["image_width"], row.inputs["image_height"]) == (8, 4)


def test_a_compression_bomb_costs_the_recorder_no_more_than_the_limit() -> None:
    bomb = gzip.compress(b"\0" * 64 * 1024 * 1024, compresslevel=1)  # 64 MiB inflated
    sent = exchange(bomb, {"content-type": "application/json", "content-encoding": "gzip"})
    tracemalloc.start()
    try:
        (row,) = exchange_records(sent, max_body_bytes=1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert row.error is not None and "inflates past the limit of 1048576 bytes" in row.error
    assert peak < 4 * 1024 * 1024
