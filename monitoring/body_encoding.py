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

zlib inflates without holding the GIL, so a worker thread that inflates leaves the event
loop its interpreter.
"""

from __future__ import annotations

import zlib

#: zlib's wbits: 16+MAX_WBITS reads a gzip wrapper, MAX_WBITS a zlib (HTTP "deflate") one.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
#: The encodings ``decode_body`` inflates.
ENCODINGS = tuple(_WBITS)
_GZIP_MAGIC = b"\x1f\x8b"


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
    them all. Bytes after the end of the data that are not another member are refused, not
    silently dropped."""
    parts: list[bytes] = []
    size = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(_WBITS[encoding])
        try:
            data = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            raise CorruptBody(f"the body is not valid {encoding} data: {exc}") from None
        size += len(data)
        parts.append(data)
        if size > limit or inflater.unconsumed_tail:
            raise InflatesPastLimit(f"the {encoding} body inflates past the limit of {limit} bytes")
        if not inflater.eof:
            raise CorruptBody(f"the {encoding} body is truncated")
        rest = inflater.unused_data
        if not rest:
            return b"".join(parts)
        if encoding != "gzip" or not rest.startswith(_GZIP_MAGIC):
            raise CorruptBody(
                f"the {encoding} body has {len(rest)} bytes after the end of its compressed data"
            )
