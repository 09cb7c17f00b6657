"""``Content-Encoding`` of request bodies: every gzip member is read, nothing is dropped."""

from __future__ import annotations

import gzip
import zlib

import pytest

from runtime.errors import BadRequest, PayloadTooLarge
from runtime.routes.state import _decompress

BODY = b'{"fare": 7, "sex": "male", "embarked": "Q", "pclass": "3", "age": 27}'
LIMIT = 1024


def test_one_gzip_member_and_deflate_inflate() -> None:
    assert _decompress(gzip.compress(BODY), "gzip", LIMIT) == BODY
    assert _decompress(zlib.compress(BODY), "deflate", LIMIT) == BODY


def test_every_member_of_a_multi_member_gzip_body_is_read() -> None:
    # `cat a.gz b.gz` and streaming compressors write several members; reading only the
    # first answered "not valid JSON" for a body that is.
    halves = gzip.compress(BODY[:30]) + gzip.compress(BODY[30:])
    assert _decompress(halves, "gzip", LIMIT) == BODY


@pytest.mark.parametrize(
    ("encoding", "body"),
    [("gzip", gzip.compress(BODY) + b"xx"), ("deflate", zlib.compress(BODY) + b"xx")],
    ids=["gzip", "deflate"],
)
def test_bytes_after_the_compressed_data_are_refused(encoding: str, body: bytes) -> None:
    with pytest.raises(BadRequest) as info:
        _decompress(body, encoding, LIMIT)
    assert info.value.message == (
        f"the {encoding} body has 2 bytes after the end of its compressed data"
    )


def test_the_limit_counts_every_member() -> None:
    members = gzip.compress(b" " * 600) + gzip.compress(b" " * 600)
    with pytest.raises(PayloadTooLarge, match="inflates past the limit of 1024 bytes"):
        _decompress(members, "gzip", LIMIT)


def test_a_truncated_second_member_is_refused() -> None:
    with pytest.raises(BadRequest, match="the gzip body is truncated"):
        _decompress(gzip.compress(BODY) + gzip.compress(BODY)[:-12], "gzip", LIMIT)
