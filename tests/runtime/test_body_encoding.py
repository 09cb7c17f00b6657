"""``Content-Encoding`` of request bodies: every gzip member is read, nothing is dropped.

The inflater is ``monitoring.body_encoding`` (the gateway's prediction log reads bodies with
it too); the runtime maps its errors to statuses (``decode_request_body``)."""

from __future__ import annotations

import gzip
import zlib

import pytest

from monitoring.body_encoding import content_encoding, decode_body
from runtime.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from runtime.routes.state import decode_request_body

BODY = b'{"fare": 7, "sex": "male", "embarked": "Q", "pclass": "3", "age": 27}'
LIMIT = 1024


def test_one_gzip_member_and_deflate_inflate() -> None:
    assert decode_request_body(gzip.compress(BODY), "gzip", LIMIT) == BODY
    assert decode_request_body(zlib.compress(BODY), "deflate", LIMIT) == BODY


def test_every_member_of_a_multi_member_gzip_body_is_read() -> None:
    # `cat a.gz b.gz` and streaming compressors write several members; reading only the
    # first answered "not valid JSON" for a body that is.
    halves = gzip.compress(BODY[:30]) + gzip.compress(BODY[30:])
    assert decode_request_body(halves, "gzip", LIMIT) == BODY


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("gzip", gzip.compress(BODY) + b"xx"), ("deflate", zlib.compress(BODY) + b"xx")],
    ids=["gzip", "deflate"],
)
def test_bytes_after_the_compressed_data_are_refused(encoding: str, body: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        decode_request_body(body, encoding, LIMIT)
    assert info.value.message == (
        f"the {encoding} body has 2 bytes after the end of its compressed data"
    )


def test_the_limit_counts_every_member() -> None:
    members = gzip.compress(b" " * 600) + gzip.compress(b" " * 600)
    with pytest.raises(PayloadTooLarge, match="inflates past the limit of 1024 bytes"):
        decode_request_body(members, "gzip", LIMIT)


def test_a_truncated_second_member_is_refused() -> None:
    with pytest.raises(BadRequest, match="the gzip body is truncated"):
        decode_request_body(gzip.compress(BODY) + gzip.compress(BODY)[:-12], "gzip", LIMIT)


@pytest.mark.parametrize("header", [None, "", "identity", " Identity "])
def test_a_body_sent_without_an_encoding_is_read_as_it_is(header: str | None) -> None:
    assert decode_request_body(BODY, header, LIMIT) is BODY


def test_the_encoding_is_read_without_regard_to_case_or_surrounding_space() -> None:
    assert content_encoding(" GZip ") == "gzip"
    assert decode_body(gzip.compress(BODY), " GZip ", LIMIT) == BODY


def test_another_encoding_is_refused_naming_those_taken() -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        decode_request_body(BODY, "br", LIMIT)
    assert info.value.message == "Content-Encoding 'br' is not supported; use gzip, deflate or none"


def test_corrupt_data_is_a_bad_request_naming_the_encoding() -> None:
    with pytest.raises(BadRequest, match="the body is not valid deflate data: "):
        decode_request_body(b"not deflate at all", "deflate", LIMIT)
