"""Request bodies sent with ``Content-Encoding``: the one inflater runtime and gateway share.

The runtime reads an inference body through ``decode_body`` before anything else
(``runtime.routes.state.read_body``, which maps the errors below to 415, 413 and 400).
The gateway forwards the body as sent, and its recorder thread reads it back with the same
function (``gateway.exchange.readable_body``), so that the prediction log sees the body the
runtime saw: the same encodings, every gzip member, nothing after the data, and never more
than ``limit`` bytes inflated, whatever the compressed body says (a compression bomb costs
``limit`` bytes, not the memory it claims).

    BodyEncodingError (ValueError)
    ├── UnsupportedEncoding  a Content-Encoding other than gzip, deflate or identity
    ├── InflatesPastLimit    the inflated body would pass ``limit`` bytes
    └── CorruptBody          not valid data of its encoding, truncated, or bytes after it

The time grows with the body and the inflated size, never with how a body is cut into
members (``inflate``): the runtime, and the gateway's planner for a route sticky by a body
field, inflate on their event loop, bounded by ``limit``.
"""

from __future__ import annotations

import zlib

#: zlib's wbits: 16+MAX_WBITS reads a gzip wrapper, MAX_WBITS a zlib (HTTP "deflate") one.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
#: The encodings ``decode_body`` inflates.
ENCODINGS = tuple(_WBITS)
_GZIP_MAGIC = b"\x1f\x8b"
#: Gzip members one body may hold: concatenated streams are a handful, and thousands of
#: empty ones only make a body slow to read.
MAX_MEMBERS = 1024
#: The first piece of a member fed to zlib, and the largest piece (it doubles).
_FIRST_PIECE = 256
_MAX_PIECE = 64 * 1024
#: zlib's largest output length per call (a C ``Py_ssize_t``): a limit set past it in a
#: configuration (``max_body_bytes: 1e19``) raised OverflowError out of every inflate.
_MAX_LENGTH = 2**62


class BodyEncodingError(ValueError):
    """A body that cannot be read in its ``Content-Encoding``; the message says why."""


class UnsupportedEncoding(BodyEncodingError):
    """A ``Content-Encoding`` other than gzip, deflate or identity."""


class InflatesPastLimit(BodyEncodingError):
    """The body inflates past the limit: refused before it is inflated any further."""


class CorruptBody(BodyEncodingError):
    """Not valid data of its encoding, truncated, or followed by other bytes."""


def content_encoding(header: str | None) -> str:
    """A ``Content-Encoding`` header's value as compared here: trimmed, lower-cased, and
    ``identity`` when absent or empty."""
    encoding = (header or "").strip().lower()
    return encoding or "identity"


def decode_body(body: bytes, header: str | None, limit: int) -> bytes:
    """``body`` as sent with the ``Content-Encoding`` ``header``, inflated to at most
    ``limit`` bytes; the body itself when it is not encoded."""
    encoding = content_encoding(header)
    if encoding == "identity":
        return body
    if encoding not in _WBITS:
        raise UnsupportedEncoding(
            f"Content-Encoding '{encoding}' is not supported; use gzip, deflate or none"
        )
    return inflate(body, encoding, limit)


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """Inflate at most ``limit`` bytes of a ``gzip`` or ``deflate`` body.

    A gzip body may be several members one after the other (RFC 1952, what ``cat a.gz
    b.gz`` or a streaming compressor writes): each is inflated in turn, and the limit counts
    them all; more than ``MAX_MEMBERS`` are refused. Bytes after the end of the data that
    are not another member are refused, not silently dropped. The body is fed to zlib in
    pieces, small at a member's start and doubling, so that the rest of the body is never
    copied per member: the time grows with the body, whatever its members (a body of many
    empty members took time growing with the square of its size)."""
    view = memoryview(body)
    parts: list[bytes] = []
    size = position = members = 0
    while True:
        members += 1
        if members > MAX_MEMBERS:
            raise CorruptBody(f"the {encoding} body has more than {MAX_MEMBERS} members")
        inflater = zlib.decompressobj(_WBITS[encoding])
        piece = _FIRST_PIECE
        while not inflater.eof:
            if position >= len(view):
                raise CorruptBody(f"the {encoding} body is truncated")
            fed = view[position : position + piece]
            try:
                data = inflater.decompress(fed, min(limit + 1 - size, _MAX_LENGTH))
            except zlib.error as exc:
                raise CorruptBody(f"the body is not valid {encoding} data: {exc}") from None
            size += len(data)
            parts.append(data)
            if size > limit or inflater.unconsumed_tail:
                raise InflatesPastLimit(
                    f"the {encoding} body inflates past the limit of {limit} bytes"
                )
            position += len(fed) - len(inflater.unused_data)
            piece = min(piece * 2, _MAX_PIECE)
        if position >= len(view):
            return b"".join(parts)
        if encoding != "gzip" or view[position : position + 2] != _GZIP_MAGIC:
            raise CorruptBody(
                f"the {encoding} body has {len(view) - position} bytes after the end of its "
                "compressed data"
            )
