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

Configuration mistakes are ``ValueError`` (found when the model loads); everything the body
can get wrong is a ``BadRequest``, ``PayloadTooLarge`` or ``UnsupportedMediaType``.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from runtime.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from runtime.tensors import ModelMetadata, TensorSpec, format_shape, numpy_dtype, shape_matches

#: Content type -> Pillow format name.
CONTENT_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}
DEFAULT_MAX_PIXELS = 40_000_000
COLOR_MODES = {"grayscale": ("L", 1), "rgb": ("RGB", 3)}

_SIGNATURES = {"PNG": b"\x89PNG\r\n\x1a\n", "JPEG": b"\xff\xd8\xff"}
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
    image = _open(body, fmt)
    width, height = image.size
    if width * height > config.max_pixels:
        raise PayloadTooLarge(
            f"the image is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels); "
            f"the limit is {config.max_pixels / 1e6:g} megapixels"
        )
    pixels = _pixels(image, fmt, config)
    return _lay_out(pixels, config, spec)


def _open(body: bytes, fmt: str) -> Image.Image:
    """Read the header only (Pillow is lazy): no pixel is decoded yet."""
    try:
        return Image.open(io.BytesIO(body), formats=[fmt])
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"the image is too large to decode: {exc}") from None
    except UnidentifiedImageError:  # its message carries a BytesIO repr, noise to a client
        raise BadRequest(
            f"the body is not a valid {fmt} image: its header cannot be read (corrupt data)"
        ) from None
    except Exception as exc:  # Pillow raises many types for bad headers
        raise BadRequest(f"the body is not a valid {fmt} image: {exc}") from None


def _pixels(image: Image.Image, fmt: str, config: ImageConfig) -> np.ndarray:
    mode = COLOR_MODES[config.color_mode][0]
    try:
        if fmt == "JPEG":
            # Let the JPEG decoder scale down by 2/4/8 while decoding: less work and memory.
            image.draft(mode, (config.width, config.height))
        image.load()
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
        converted = image.convert(mode).resize(
            (config.width, config.height), Image.Resampling.BILINEAR
        )
    except Exception as exc:  # truncated or corrupt data surfaces only while decoding
        raise BadRequest(f"the body is not a valid {fmt} image: {exc}") from None
    return np.asarray(converted, dtype=np.float64)


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
