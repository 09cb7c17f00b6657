"""How much pixel data a PNG body really holds, next to what its header declares.

Pillow's PNG decoder stops without an error when the zlib stream in the ``IDAT`` chunks
ends on a row boundary before the last row, and leaves the rows it never received black
(zero bytes): a 7000x5000 PNG holding one row decodes as a black image. ``images.py``
asks this module only when that could have happened, that is when the row a complete
decode writes last is still all zero bytes after decoding (a black bottom row, or an
interlaced image, whose last row is not a sure sign): every other image costs nothing more.

The count inflates the ``IDAT`` stream in small pieces and keeps none of it, so memory stays
under a megabyte whatever the image's size, and it stops once the declared amount is seen.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

_SIGNATURE_LENGTH = 8
#: PNG colour type -> samples per pixel.
_SAMPLES = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: The seven Adam7 passes: first column, first row, column step, row step.
_ADAM7 = (
    (0, 0, 8, 8),
    (4, 0, 8, 8),
    (0, 4, 4, 8),
    (2, 0, 4, 4),
    (0, 2, 2, 4),
    (1, 0, 2, 2),
    (0, 1, 1, 2),
)
#: Compressed bytes fed to zlib at a time, and inflated bytes taken out at a time: a
#: deflate stream expands at most about 1032 times, so neither piece grows past ~17 MB,
#: and ``unconsumed_tail`` (a copy) stays small.
_INPUT_PIECE = 16 * 1024
_OUTPUT_PIECE = 1024 * 1024


@dataclass(frozen=True)
class PngLayout:
    """What the ``IHDR`` chunk declares about the pixel data."""

    width: int
    height: int
    bits_per_pixel: int
    interlaced: bool

    @classmethod
    def read(cls, body: bytes) -> PngLayout | None:
        """The layout of a PNG whose header Pillow has already accepted (``None`` when the
        colour type is one this module does not know)."""
        width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body[16:29])
        samples = _SAMPLES.get(colour)
        if samples is None:
            return None
        return cls(width, height, depth * samples, interlace == 1)

    def row_bytes(self, width: int) -> int:
        """Bytes of one row ``width`` pixels wide, with its filter-type byte."""
        return 1 + (width * self.bits_per_pixel + 7) // 8 if width else 0

    def data_bytes(self) -> int:
        """Inflated bytes of the whole image: every row of every pass with its filter byte."""
        if not self.interlaced:
            return self.height * self.row_bytes(self.width)
        total = 0
        for col, row, col_step, row_step in _ADAM7:
            columns = max(0, (self.width - col + col_step - 1) // col_step)
            rows = max(0, (self.height - row + row_step - 1) // row_step)
            total += rows * self.row_bytes(columns)
        return total

    def last_written_row(self) -> int | None:
        """The row a complete decode writes last and only then (``None``: there is none,
        as in an interlaced image one row high, whose every pass writes row 0)."""
        if not self.interlaced:
            return self.height - 1
        # Only the seventh pass writes odd rows, whole, in order: the last odd row is the
        # last row written.
        return None if self.height < 2 else (self.height - 2) | 1


def inflated_length(body: bytes, limit: int) -> int:
    """The length of the ``IDAT`` zlib stream once inflated, counted up to ``limit``;
    ``zlib.error`` when the stream is corrupt."""
    inflater = zlib.decompressobj()
    total = 0
    for chunk in _idat_chunks(body):
        for start in range(0, len(chunk), _INPUT_PIECE):
            piece: bytes | memoryview = chunk[start : start + _INPUT_PIECE]
            while piece:
                total += len(inflater.decompress(piece, _OUTPUT_PIECE))
                if total >= limit or inflater.eof:
                    return min(total, limit)
                piece = inflater.unconsumed_tail
    return total


def _idat_chunks(body: bytes) -> list[memoryview]:
    """The ``IDAT`` chunks' data, in order, as views (no copy); a chunk cut short by the
    end of the body gives what is there."""
    view = memoryview(body)
    chunks = []
    position = _SIGNATURE_LENGTH
    while position + 8 <= len(body):
        length, kind = struct.unpack(">I4s", body[position : position + 8])
        start = position + 8
        if kind == b"IDAT":
            chunks.append(view[start : start + length])
        elif kind == b"IEND":
            break
        position = start + length + 4  # and the CRC
    return chunks
