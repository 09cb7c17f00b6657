"""``Content-Encoding`` of request bodies: every gzip member is read, nothing is dropped.

The inflater is ``monitoring.body_encoding`` (the gateway's prediction log reads bodies with
it too); the runtime maps its errors to statuses (``decode_request_body``)."""

from __future__ import annotations

import asyncio
import gzip
import os
import threading
import zlib

import pytest

from monitoring.body_encoding import MAX_MEMBERS, content_encoding, decode_body
from runtime.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from runtime.routes import state
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


def test_members_and_large_bodies_are_read_whole_across_the_pieces_fed_to_zlib() -> None:
    """The body is fed to zlib in pieces (256 bytes at a member's start, doubling): members
    cut across pieces, and one far larger than a piece, come back byte for byte."""
    random = os.urandom(300_000)  # incompressible: 300 KB of compressed data
    members = [random[:1000], b"", BODY * 50, random, b"x"]
    body = b"".join(gzip.compress(member) for member in members)
    assert decode_body(body, "gzip", 10**6) == b"".join(members)
    assert decode_body(zlib.compress(random), "deflate", 10**6) == random


def test_a_body_of_more_members_than_allowed_is_refused() -> None:
    """Thousands of empty members (20 bytes each) took time growing with the square of the
    body's size, on the runtime's event loop: 1.6 MB held it 2 s, 16 MiB for minutes."""
    empty = gzip.compress(b"")
    assert decode_body(empty * MAX_MEMBERS, "gzip", LIMIT) == b""
    with pytest.raises(BadRequest, match=f"the gzip body has more than {MAX_MEMBERS} members"):
        decode_request_body(empty * 800_000, "gzip", 16 * 1024 * 1024)


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


class Sent:
    """What ``read_body`` reads of a request: its headers and its body."""

    def __init__(self, body: bytes, encoding: str | None) -> None:
        self.headers = {"content-encoding": encoding} if encoding else {}
        self._body = body

    async def body(self) -> bytes:
        return self._body


@pytest.mark.parametrize(
    ("body", "encoding", "on_the_loop"),
    [
        (gzip.compress(BODY), "gzip", True),  # a few dozen bytes: inflated at once
        (gzip.compress(os.urandom(4096)), "gzip", False),  # may inflate to 16 MiB: a thread
        (os.urandom(4096), None, True),  # nothing to inflate
    ],
    ids=["small-gzip", "large-gzip", "plain"],
)
def test_a_compressed_body_past_a_kilobyte_is_inflated_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, body: bytes, encoding: str | None, on_the_loop: bool
) -> None:
    """Inflating ran on the event loop: a few KiB of gzip inflating to 16 MiB held health
    checks and every other request for tens of milliseconds."""
    threads: list[str] = []

    def decode(*args: object) -> bytes:
        threads.append(threading.current_thread().name)
        return decode_request_body(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(state, "decode_request_body", decode)
    loop_thread = threading.current_thread().name
    asyncio.run(state.read_body(Sent(body, encoding), 10**6))  # type: ignore[arg-type]
    assert (threads == [loop_thread]) is on_the_loop


def test_a_limit_past_zlibs_range_inflates_like_any_other() -> None:
    """``max_body_bytes: 1e19`` raised OverflowError out of every inflate."""
    assert decode_body(gzip.compress(BODY), "gzip", 10**19) == BODY
