"""Image bodies (``image/png``, ``image/jpeg``) turned into a model's input tensor.

A model opts in with an ``image`` section in its ``config.yaml``::

    image: {input: image, width: 8, height: 8, color_mode: grayscale,
            scale: 0.0627450980, offset: 0.0, invert: false}

``decode_image`` checks the body really is the format its content type says (magic bytes),
reads only the header to refuse decompression bombs (``max_pixels``, default 40 megapixels)
before any pixel is decoded, then decodes, flattens transparency onto white, converts to
grayscale or RGB, resizes to ``width`` x ``height``, optionally inverts (``255 - v``), maps
every pixel ``v`` to ``v * scale + offset`` and lays the result out as the spec wants with a
batch of one: ``[1, H, W, C]``, ``[1, H, W]`` (grayscale), ``[1, C, H, W]`` or flat
``[1, H*W*C]``, cast to the spec's datatype (integers are rounded and clipped).

What cameras and encoders put in real files is honoured: the EXIF orientation (a phone
photo is turned upright, as every viewer shows it), 16-bit grayscale (scaled to 0..255, not
clipped to white) and every colour mode Pillow reads (palette, CMYK, 1-bit, with or without
alpha). A big image is box-averaged down by a whole factor right after decoding, before it
is flattened and converted, so that a small PNG declaring tens of megapixels costs one
decoded copy, not five (``declared_pixels`` lets the caller decode such a body off the
event loop).

Pixels the body does not carry are refused, never filled in: a body that ends inside the
pixel data, or a PNG whose pixel data ends before the last row its header declares (which
Pillow itself lets through as black rows, see ``png_rows``), is a ``BadRequest`` that says
the image is truncated. Pillow's ``LOAD_TRUNCATED_IMAGES`` is never set.

Configuration mistakes are ``ValueError`` (found when the model loads); everything the body
can get wrong is a ``BadRequest``, ``PayloadTooLarge`` or ``UnsupportedMediaType``.
"""

from __future__ import annotations

import io
import math
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from PIL.Image import Transpose

from runtime.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from runtime.png_rows import PngLayout, inflated_length
from runtime.tensors import ModelMetadata, TensorSpec, format_shape, numpy_dtype, shape_matches

#: Content type -> Pillow format name.
CONTENT_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}
DEFAULT_MAX_PIXELS = 40_000_000
COLOR_MODES = {"grayscale": ("L", 1), "rgb": ("RGB", 3)}

_SIGNATURES = {"PNG": b"\x89PNG\r\n\x1a\n", "JPEG": b"\xff\xd8\xff"}
#: EXIF orientation -> how to turn the stored pixels upright (as ``ImageOps.exif_transpose``).
_ORIENTATIONS = {
    2: Transpose.FLIP_LEFT_RIGHT,
    3: Transpose.ROTATE_180,
    4: Transpose.FLIP_TOP_BOTTOM,
    5: Transpose.TRANSPOSE,
    6: Transpose.ROTATE_270,
    7: Transpose.TRANSVERSE,
    8: Transpose.ROTATE_90,
}
_SWAPS_AXES = {Transpose.TRANSPOSE, Transpose.ROTATE_270, Transpose.TRANSVERSE, Transpose.ROTATE_90}
_EXIF_ORIENTATION = 0x0112
#: Images of more pixels are averaged down before flattening and conversion (each of which
#: copies the image); smaller ones are resized in one step, exactly as before.
SHRINK_MIN_PIXELS = 4_000_000
#: One ``reduce`` by at most this (a 40-megapixel image becomes 0.16): Pillow's averages
#: lose precision past a factor of 256 (a white 3000x3000 image reduced by 1500 reads 239).
_MAX_SHRINK = 16
_SIXTEEN_BIT_GRAY = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
#: The pixel count in Pillow's ``DecompressionBombError`` message.
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")
_KEYS = {"input", "width", "height", "color_mode", "scale", "offset", "invert", "max_pixels"}


@dataclass(frozen=True)
class ImageConfig:
    """The ``image`` section of a model's ``config.yaml``."""

    width: int
    height: int
    #: Model input fed by the image; ``None`` means the model's only input.
    input: str | None = None
    color_mode: str = "grayscale"
    scale: float = 1.0
    offset: float = 0.0
    invert: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS

    @classmethod
    def from_config(cls, raw: Mapping[str, Any]) -> ImageConfig:
        """Validate the ``image`` mapping; ``ValueError`` names the offending key."""
        if not isinstance(raw, Mapping):
            raise ValueError(f"image must be a mapping, got {type(raw).__name__}")
        unknown = set(raw) - _KEYS
        if unknown:
            raise ValueError(f"image: unknown key(s) {sorted(unknown)}; expected {sorted(_KEYS)}")
        for key in ("width", "height"):
            if key not in raw:
                raise ValueError(f"image.{key} is required")
        name = raw.get("input")
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"image.input must be an input name, got {name!r}")
        mode = raw.get("color_mode", "grayscale")
        if mode not in COLOR_MODES:
            raise ValueError(f"image.color_mode must be one of {sorted(COLOR_MODES)}, got {mode!r}")
        invert = raw.get("invert", False)
        if not isinstance(invert, bool):
            raise ValueError(f"image.invert must be true or false, got {invert!r}")
        return cls(
            width=_positive_int(raw, "width"),
            height=_positive_int(raw, "height"),
            input=name,
            color_mode=mode,
            scale=_finite_number(raw, "scale", 1.0),
            offset=_finite_number(raw, "offset", 0.0),
            invert=invert,
            max_pixels=_positive_int(raw, "max_pixels", DEFAULT_MAX_PIXELS),
        )

    @property
    def channels(self) -> int:
        return COLOR_MODES[self.color_mode][1]

    def input_spec(self, metadata: ModelMetadata) -> TensorSpec:
        """The spec of the input the image feeds; ``ValueError`` when it cannot feed it."""
        if self.input is None:
            if len(metadata.inputs) != 1:
                names = [spec.name for spec in metadata.inputs]
                raise ValueError(f"image.input must name one of the model's inputs {names}")
            spec = metadata.inputs[0]
        else:
            found = metadata.input(self.input)
            if found is None:
                names = [spec.name for spec in metadata.inputs]
                raise ValueError(f"image.input '{self.input}' is not one of the inputs {names}")
            spec = found
        self.layout(spec)
        return spec

    def layout(self, spec: TensorSpec) -> tuple[tuple[int, ...], bool]:
        """Target shape (batch 1) and whether channels come first; ``ValueError`` if none fits."""
        h, w, c = self.height, self.width, self.channels
        candidates: list[tuple[tuple[int, ...], bool]] = [((1, h, w, c), False)]
        if c == 1:
            candidates.append(((1, h, w), False))
        candidates += [((1, c, h, w), True), ((1, h * w * c), False)]
        if spec.datatype != "BYTES":
            for shape, channels_first in candidates:
                if shape_matches(spec.shape, shape):
                    return shape, channels_first
        raise ValueError(
            f"image: a {w}x{h} {self.color_mode} image cannot feed input '{spec.name}' "
            f"({spec.datatype} {format_shape(spec.shape)}); it needs a numeric input shaped "
            f"[?, {h}, {w}, {c}], [?, {c}, {h}, {w}] or [?, {h * w * c}]"
        )


def decode_image(
    body: bytes, content_type: str, config: ImageConfig, spec: TensorSpec
) -> np.ndarray:
    """The input tensor (batch of one) for an image body sent as ``content_type``."""
    media = content_type.split(";", maxsplit=1)[0].strip().lower()
    fmt = CONTENT_TYPES.get(media)
    if fmt is None:
        accepted = ", ".join(CONTENT_TYPES)
        raise UnsupportedMediaType(
            f"content type '{media or content_type}' is not an accepted image type; "
            f"send one of {accepted} (or JSON)"
        )
    sniffed = next((name for name, magic in _SIGNATURES.items() if body.startswith(magic)), None)
    if sniffed != fmt:
        if sniffed:
            detail = f"it looks like a {sniffed} image; send it as image/{sniffed.lower()}"
        else:
            detail = f"it does not start with the {fmt} signature"
        raise BadRequest(f"the body is not a valid {fmt} image: {detail}")
    image = _open(body, fmt, config.max_pixels)
    width, height = image.size
    if width * height > config.max_pixels:
        raise PayloadTooLarge(
            f"the image is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels); "
            f"the limit is {config.max_pixels / 1e6:g} megapixels"
        )
    pixels = _pixels(image, body, fmt, config)
    return _lay_out(pixels, config, spec)


def declared_pixels(body: bytes, content_type: str) -> int:
    """Width x height as the header declares it (0 when it cannot be read: ``decode_image``
    then says why). Reading the header decodes no pixel."""
    fmt = CONTENT_TYPES.get(content_type.split(";", maxsplit=1)[0].strip().lower())
    if fmt is None:
        return 0
    try:
        with Image.open(io.BytesIO(body), formats=[fmt]) as image:
            width, height = image.size
    except Exception:  # decode_image reports it properly
        return 0
    return width * height


def _open(body: bytes, fmt: str, max_pixels: int) -> Image.Image:
    """Read the header only (Pillow is lazy): no pixel is decoded yet."""
    try:
        return Image.open(io.BytesIO(body), formats=[fmt])
    except Image.DecompressionBombError as exc:
        # Pillow's own bomb limit (about 179 megapixels) is not the one clients are told
        # about: name the runtime's, and the size when Pillow's message gives it.
        found = _BOMB_PIXELS.search(str(exc))
        size = f" ({int(found[1]) / 1e6:.1f} megapixels)" if found else ""
        raise PayloadTooLarge(
            f"the image is too large{size}; the limit is {max_pixels / 1e6:g} megapixels"
        ) from None
    except UnidentifiedImageError:  # its message carries a BytesIO repr, noise to a client
        raise BadRequest(
            f"the body is not a valid {fmt} image: its header cannot be read (corrupt data)"
        ) from None
    except Exception as exc:  # Pillow raises many types for bad headers
        raise BadRequest(f"the body is not a valid {fmt} image: {exc}") from None


def _pixels(image: Image.Image, body: bytes, fmt: str, config: ImageConfig) -> np.ndarray:
    mode = COLOR_MODES[config.color_mode][0]
    turn = _load(image, body, fmt, mode, config)
    try:
        # The stored picture's size, before it is turned upright.
        width, height = (config.width, config.height)
        if turn in _SWAPS_AXES:
            width, height = height, width
        image = _shrink(_eight_bit(image), width, height, mode)
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
        if turn is not None:
            image = image.transpose(turn)
        converted = image.convert(mode).resize(
            (config.width, config.height), Image.Resampling.BILINEAR
        )
    except Exception as exc:
        raise BadRequest(f"the body is not a valid {fmt} image: {exc}") from None
    return np.asarray(converted, dtype=np.float64)


def _load(
    image: Image.Image, body: bytes, fmt: str, mode: str, config: ImageConfig
) -> Transpose | None:
    """Decode the pixels, once, and say how to turn them upright. Truncated or corrupt data
    surfaces only here, while decoding; pixels the body never carried are refused, never
    filled in (``ImageFile.LOAD_TRUNCATED_IMAGES`` stays off)."""
    turn = None
    declared = image.size  # draft changes it
    try:
        if fmt == "JPEG":
            # The EXIF block is in the header. Let the JPEG decoder scale down by 2/4/8
            # while decoding (less work and memory) towards the stored picture's size.
            turn = _ORIENTATIONS.get(_orientation(image))
            width, height = (config.width, config.height)
            if turn in _SWAPS_AXES:
                width, height = height, width
            image.draft(mode, (width, height))
        # A PNG's eXIf chunk may follow its pixel data: read it after them (Pillow's
        # getexif would decode them itself, and a failure there would be swallowed).
        image.load()
    except OSError as exc:
        if str(exc).startswith("image file is truncated"):  # Pillow's words for it
            raise BadRequest(
                f"the {fmt} image is truncated: the body ends before the data of its "
                f"{declared[0]}x{declared[1]} pixels does; send the whole file"
            ) from None
        raise BadRequest(f"the body is not a valid {fmt} image: {exc}") from None
    except Exception as exc:
        raise BadRequest(f"the body is not a valid {fmt} image: {exc}") from None
    if fmt == "PNG":
        _refuse_missing_rows(image, body)
        turn = _ORIENTATIONS.get(_orientation(image))
    return turn


def _refuse_missing_rows(image: Image.Image, body: bytes) -> None:
    """``BadRequest`` when the PNG's zlib stream ended before its last row: Pillow stops
    there without an error and leaves the missing rows zero. Only a decode whose last
    written row is all zero bytes is checked further, by counting the stream (``png_rows``)."""
    layout = PngLayout.read(body)
    if layout is None:
        return
    row = layout.last_written_row()
    if row is not None and image.crop((0, row, image.width, row + 1)).tobytes().strip(b"\0"):
        return
    expected = layout.data_bytes()
    try:
        held = inflated_length(body, expected)
    except zlib.error as exc:
        raise BadRequest(f"the body is not a valid PNG image: {exc}") from None
    if held >= expected:
        return
    if layout.interlaced:
        detail = f"its interlaced pixel data ends after {held} of {expected} bytes"
    else:
        rows = held // layout.row_bytes(layout.width)
        detail = f"its pixel data ends after {rows} of the {layout.height} rows"
    raise BadRequest(
        f"the PNG image is truncated: its header declares {layout.width}x{layout.height} "
        f"pixels but {detail}; send the whole file"
    )


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation (1, upright, when absent or unreadable)."""
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block does not spoil the pixels
        return 1
    return value if isinstance(value, int) else 1


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit grayscale (Pillow's ``I;16``) as 8-bit ``L``, levels scaled by 255/65535.

    Pillow's own conversion clips at 255, which turns every level above 1/256 white. A
    transparent level (PNG ``tRNS``) becomes an alpha band."""
    if image.mode not in _SIXTEEN_BIT_GRAY:
        return image
    eight = image.convert("I").point(lambda v: v * (1 / 257) + 0.5).convert("L")
    transparent = image.info.get("transparency")
    if not isinstance(transparent, int):
        return eight
    opaque = np.where(np.asarray(image) == transparent, 0, 255).astype(np.uint8)
    return Image.merge("LA", (eight, Image.fromarray(opaque, mode="L")))


def _shrink(image: Image.Image, width: int, height: int, mode: str) -> Image.Image:
    """A big image box-averaged down by a whole factor, keeping at least twice the target
    size for the final resize. Pillow averages ``RGBA`` and ``LA`` with premultiplied
    alpha, so the colour hidden under transparent pixels does not bleed in."""
    if image.width * image.height <= SHRINK_MIN_PIXELS:
        return image
    factor = min(image.width // (2 * width), image.height // (2 * height), _MAX_SHRINK)
    if factor < 2:
        return image
    if image.mode == "PA" or "transparency" in image.info:
        image = image.convert("RGBA")  # palette indices and a tRNS colour do not average
    elif image.mode in ("P", "1"):
        image = image.convert(mode)  # the colour mode the model takes: L or RGB
    return image.reduce(factor)


def _lay_out(pixels: np.ndarray, config: ImageConfig, spec: TensorSpec) -> np.ndarray:
    if config.invert:
        pixels = 255.0 - pixels
    pixels = pixels * config.scale + config.offset
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    shape, channels_first = config.layout(spec)
    if channels_first:
        pixels = pixels.transpose(2, 0, 1)
    dtype = numpy_dtype(spec.datatype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        pixels = np.clip(np.rint(pixels), info.min, info.max)
    return np.ascontiguousarray(pixels.reshape(shape).astype(dtype))


def _positive_int(raw: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = raw.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"image.{key} must be a positive integer, got {value!r}")
    return value


def _finite_number(raw: Mapping[str, Any], key: str, default: float) -> float:
    value = raw.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ValueError(f"image.{key} must be a finite number, got {value!r}")
    return float(value)
