"""Image bodies: format checks, bomb refusal before decoding, and the tensor they become."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from PIL import Image

from runtime.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from runtime.images import ImageConfig, decode_image
from runtime.tensors import ModelMetadata, TensorSpec

DIGITS = ImageConfig.from_config(
    {"input": "image", "width": 8, "height": 8, "color_mode": "grayscale",
     "scale": 0.0627450980, "offset": 0.0, "invert": False}
)  # fmt: skip
NHWC = TensorSpec("image", "FP32", (-1, 8, 8, 1))


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def gray(value: int, size: tuple[int, int] = (16, 16)) -> bytes:
    return encoded(Image.new("L", size, value))


def png_claiming(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose IHDR says ``width`` x ``height`` (CRC fixed, so it parses)."""
    body = bytearray(gray(0, (1, 1)))
    assert body[12:16] == b"IHDR"
    body[16:24] = struct.pack(">II", width, height)
    body[29:33] = struct.pack(">I", zlib.crc32(bytes(body[12:29])))
    return bytes(body)


def test_a_png_becomes_a_batch_of_one_scaled_as_configured() -> None:
    tensor = decode_image(gray(255), "image/png", DIGITS, NHWC)
    assert tensor.shape == (1, 8, 8, 1) and tensor.dtype == np.float32
    assert np.allclose(tensor, 255 * 0.0627450980)  # sklearn digits' 0..16 range


def test_resizing_keeps_the_picture() -> None:
    left_dark = np.zeros((32, 32), dtype=np.uint8)
    left_dark[:, 16:] = 255
    tensor = decode_image(encoded(Image.fromarray(left_dark)), "image/png", DIGITS, NHWC)
    assert tensor[0, :, :3, 0].max() < 0.5 and tensor[0, :, 5:, 0].min() > 15.5


def test_invert_scale_and_offset() -> None:
    config = ImageConfig.from_config(
        {"width": 4, "height": 4, "invert": True, "scale": 0.5, "offset": -1}
    )
    spec = TensorSpec("x", "FP64", (-1, 4, 4))
    tensor = decode_image(gray(55), "image/png", config, spec)
    assert tensor.shape == (1, 4, 4) and tensor.dtype == np.float64
    assert np.allclose(tensor, (255 - 55) * 0.5 - 1)


@pytest.mark.parametrize(
    ("color_mode", "shape", "expected"),
    [
        ("grayscale", (-1, 64), (1, 64)),
        ("grayscale", (1, 8, 8), (1, 8, 8)),
        ("rgb", (-1, 8, 8, 3), (1, 8, 8, 3)),
        ("rgb", (-1, 3, 8, 8), (1, 3, 8, 8)),
        ("rgb", (-1, 192), (1, 192)),
    ],
)
def test_layouts(color_mode: str, shape: tuple[int, ...], expected: tuple[int, ...]) -> None:
    config = ImageConfig.from_config({"width": 8, "height": 8, "color_mode": color_mode})
    red = encoded(Image.new("RGB", (10, 10), (255, 0, 0)))
    tensor = decode_image(red, "image/png", config, TensorSpec("x", "FP32", shape))
    assert tensor.shape == expected
    if color_mode == "rgb" and shape[1] == 3:
        assert tensor[0, 0].min() == 255 and tensor[0, 1].max() == 0  # channels first


def test_integer_inputs_are_rounded_and_clipped() -> None:
    config = ImageConfig.from_config({"width": 2, "height": 2, "scale": 2.0})
    tensor = decode_image(gray(200), "image/png", config, TensorSpec("x", "UINT8", (-1, 2, 2, 1)))
    assert tensor.dtype == np.uint8 and tensor.max() == 255


def test_transparency_is_flattened_onto_white() -> None:
    clear = encoded(Image.new("RGBA", (8, 8), (0, 0, 0, 0)))
    assert np.allclose(decode_image(clear, "image/png", DIGITS, NHWC), 16.0)


def test_a_16_bit_grayscale_png_keeps_its_levels() -> None:
    # Pillow opens it as mode I;16; a plain convert to 8 bits clips mid-grey to white.
    mid_grey = encoded(Image.fromarray(np.full((16, 16), 32896, dtype=np.uint16)))
    assert Image.open(io.BytesIO(mid_grey)).mode == "I;16"
    tensor = decode_image(mid_grey, "image/png", DIGITS, NHWC)
    assert np.allclose(tensor, 128 * 0.0627450980, atol=1e-4)


def test_a_16_bit_png_with_a_transparent_level_is_flattened_onto_white() -> None:
    levels = np.full((16, 16), 32896, dtype=np.uint16)  # mid-grey
    levels[:, 8:] = 1000  # the transparent level (tRNS)
    buffer = io.BytesIO()
    Image.fromarray(levels).save(buffer, format="PNG", transparency=1000)
    tensor = decode_image(buffer.getvalue(), "image/png", DIGITS, NHWC)
    assert np.allclose(tensor[0, :, :3, 0], 128 * 0.0627450980, atol=1e-4)
    assert tensor[0, :, 5:, 0].min() > 15.5


def left_dark_right_white(fmt: str, orientation: int) -> bytes:
    """32x16 pixels, the left half black, stored with EXIF ``orientation``."""
    pixels = np.zeros((16, 32), dtype=np.uint8)
    pixels[:, 16:] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, exif=exif.tobytes(), quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_exif_orientation_is_applied_as_a_camera_means_it(fmt: str) -> None:
    # Orientation 6: the stored picture is shown turned 90 degrees clockwise, so its dark
    # left half is the top half of what the user saw (and of what the model must see).
    content_type = f"image/{fmt.lower()}"
    upright = decode_image(left_dark_right_white(fmt, 1), content_type, DIGITS, NHWC)
    assert upright[0, :, :3, 0].max() < 1 and upright[0, :, 5:, 0].min() > 15
    turned = decode_image(left_dark_right_white(fmt, 6), content_type, DIGITS, NHWC)
    assert turned[0, :3, :, 0].max() < 1 and turned[0, 5:, :, 0].min() > 15


def test_a_huge_image_is_averaged_down_without_the_colour_hidden_under_transparency() -> None:
    # 4096 x 4096 is averaged down before flattening (one 64 MB copy instead of four); every
    # other column is transparent black, which must not darken the white columns around it.
    columns = np.zeros((4096, 4096, 4), dtype=np.uint8)
    columns[:, ::2] = 255  # opaque white
    body = encoded(Image.fromarray(columns, mode="RGBA"))
    tensor = decode_image(body, "image/png", DIGITS, NHWC)
    assert np.allclose(tensor, 255 * 0.0627450980, atol=0.07)


def test_jpeg_bodies_decode_too() -> None:
    photo = encoded(Image.new("RGB", (640, 480), (128, 128, 128)), "JPEG")
    tensor = decode_image(photo, "image/jpeg; charset=binary", DIGITS, NHWC)
    assert tensor.shape == (1, 8, 8, 1) and abs(float(tensor.mean()) - 128 * 0.0627450980) < 0.2


def test_unsupported_content_type_names_the_accepted_ones() -> None:
    with pytest.raises(UnsupportedMediaType) as info:
        decode_image(gray(0), "image/gif", DIGITS, NHWC)
    assert info.value.message == (
        "content type 'image/gif' is not an accepted image type; "
        "send one of image/png, image/jpeg (or JSON)"
    )


def test_a_jpeg_body_labelled_png_is_refused() -> None:
    photo = encoded(Image.new("RGB", (4, 4)), "JPEG")
    with pytest.raises(BadRequest) as info:
        decode_image(photo, "image/png", DIGITS, NHWC)
    assert info.value.message == (
        "the body is not a valid PNG image: it looks like a JPEG image; send it as image/jpeg"
    )


def test_a_body_that_is_no_image_at_all() -> None:
    with pytest.raises(BadRequest, match=r"^the body is not a valid JPEG image: it does not start"):
        decode_image(b'{"image": 1}', "image/jpeg", DIGITS, NHWC)


@pytest.mark.parametrize(
    "damage",
    [
        lambda body: body[:40],  # truncated inside the pixel data
        lambda body: body[:33] + b"\x00" * (len(body) - 33),  # chunks zeroed
        lambda body: body[:8] + b"garbage" * 4,  # signature only
    ],
)
def test_corrupt_pngs_are_bad_requests(damage: Any) -> None:
    body = encoded(Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)))
    with pytest.raises(BadRequest, match=r"^the body is not a valid PNG image: "):
        decode_image(damage(body), "image/png", DIGITS, NHWC)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bombs_are_refused_before_decoding() -> None:
    # 100000 x 100000 would need 10 GB decoded; the body is under 100 bytes.
    with pytest.raises(PayloadTooLarge) as info:
        decode_image(png_claiming(100_000, 100_000), "image/png", DIGITS, NHWC)
    # The runtime's limit, not Pillow's own bomb limit (about 179 megapixels).
    assert info.value.message == (
        "the image is too large (10000.0 megapixels); the limit is 40 megapixels"
    )
    with pytest.raises(PayloadTooLarge) as info:
        decode_image(png_claiming(7000, 7000), "image/png", DIGITS, NHWC)
    assert info.value.message == (
        "the image is 7000x7000 pixels (49.0 megapixels); the limit is 40 megapixels"
    )


def test_the_pixel_limit_is_configurable() -> None:
    small = ImageConfig.from_config({"width": 8, "height": 8, "max_pixels": 100})
    with pytest.raises(PayloadTooLarge, match="the image is 16x16 pixels"):
        decode_image(gray(0), "image/png", small, NHWC)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"width": 8}, "image.height is required"),
        ({"width": 0, "height": 8}, "image.width must be a positive integer, got 0"),
        ({"width": 8, "height": True}, "image.height must be a positive integer, got True"),
        ({"width": 8, "height": 8, "color_mode": "cmyk"}, "image.color_mode must be one of"),
        ({"width": 8, "height": 8, "scale": "x"}, "image.scale must be a finite number"),
        ({"width": 8, "height": 8, "invert": "yes"}, "image.invert must be true or false"),
        ({"width": 8, "height": 8, "input": ""}, "image.input must be an input name"),
        ({"width": 8, "height": 8, "size": 3}, "image: unknown key(s) ['size']"),
    ],
)
def test_config_mistakes_name_the_key(raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(ValueError, match=r"^image") as info:
        ImageConfig.from_config(raw)
    assert expected in str(info.value)


def test_input_spec_finds_and_checks_the_input() -> None:
    metadata = ModelMetadata(inputs=(NHWC,), outputs=(), platform="onnx")
    assert DIGITS.input_spec(metadata) is NHWC
    assert ImageConfig(width=8, height=8).input_spec(metadata) is NHWC
    with pytest.raises(ValueError, match=r"image\.input 'pixels' is not one of the inputs"):
        ImageConfig(width=8, height=8, input="pixels").input_spec(metadata)
    with pytest.raises(ValueError, match=r"cannot feed input 'image' \(FP32 \[\?, 8, 8, 1\]\)"):
        ImageConfig(width=28, height=28).input_spec(metadata)


def png_holding(
    width: int, height: int, rows: Sequence[np.ndarray] | np.ndarray, *, interlaced: bool = False
) -> bytes:
    """An 8-bit grayscale PNG whose header says ``width`` x ``height`` but whose pixel data
    (unfiltered rows, each with its filter byte, in one complete zlib stream) is ``rows``:
    for an interlaced image, the Adam7 passes' rows one after the other."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, int(interlaced))
    data = b"".join(b"\x00" + row.astype(np.uint8).tobytes() for row in rows)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(data))
        + chunk(b"IEND", b"")
    )  # fmt: skip


def adam7_rows(pixels: np.ndarray, passes: int = 7) -> list[np.ndarray]:
    """The rows of the first ``passes`` Adam7 passes of ``pixels``, in file order."""
    steps = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
             (0, 1, 1, 2)]  # fmt: skip
    rows: list[np.ndarray] = []
    for col, row, col_step, row_step in steps[:passes]:
        part = pixels[row::row_step, col::col_step]
        if part.size:
            rows.extend(part)
    return rows


@pytest.mark.parametrize(
    ("width", "height"),
    [(16, 16), (7000, 5000)],  # the second takes the shrink path (over SHRINK_MIN_PIXELS)
)
def test_a_png_holding_fewer_rows_than_its_header_declares_is_refused(
    width: int, height: int
) -> None:
    # Pillow decodes it without an error, the missing rows black: the model would answer
    # on an image the client never sent.
    one_row = png_holding(width, height, np.full((1, width), 128))
    with pytest.raises(BadRequest) as info:
        decode_image(one_row, "image/png", DIGITS, NHWC)
    assert info.value.message == (
        f"the PNG image is truncated: its header declares {width}x{height} pixels but its "
        f"pixel data ends after 1 of the {height} rows; send the whole file"
    )


def test_an_interlaced_png_missing_its_last_pass_is_refused() -> None:
    pixels = np.full((16, 16), 200, dtype=np.uint8)
    whole = png_holding(16, 16, adam7_rows(pixels), interlaced=True)
    assert np.allclose(decode_image(whole, "image/png", DIGITS, NHWC), 200 * 0.0627450980)
    six_passes = png_holding(16, 16, adam7_rows(pixels, passes=6), interlaced=True)
    with pytest.raises(BadRequest) as info:
        decode_image(six_passes, "image/png", DIGITS, NHWC)
    assert info.value.message == (
        "the PNG image is truncated: its header declares 16x16 pixels but its interlaced "
        "pixel data ends after 150 of 286 bytes; send the whole file"
    )


@pytest.mark.parametrize("size", [(16, 16), (2400, 2000)])
def test_a_whole_png_with_black_bottom_rows_is_not_mistaken_for_a_truncated_one(
    size: tuple[int, int],
) -> None:
    width, height = size
    top_white = np.zeros((height, width), dtype=np.uint8)
    top_white[: height // 2] = 255
    tensor = decode_image(encoded(Image.fromarray(top_white)), "image/png", DIGITS, NHWC)
    assert tensor[0, :3, :, 0].min() > 15.5 and tensor[0, 5:, :, 0].max() < 0.5


@pytest.mark.parametrize(
    ("fmt", "size"),
    [("PNG", (64, 64)), ("PNG", (2400, 2000)), ("JPEG", (64, 64)), ("JPEG", (2400, 2000))],
)
def test_an_image_whose_body_ends_early_is_refused(fmt: str, size: tuple[int, int]) -> None:
    # Large ones take the shrink path (PNG) or are scaled while decoding (JPEG draft): neither
    # fills in the missing data.
    noise = np.random.default_rng(0).integers(0, 256, size[::-1], dtype=np.uint8)
    body = encoded(Image.fromarray(noise), fmt)
    with pytest.raises(BadRequest) as info:
        decode_image(body[: len(body) // 2], f"image/{fmt.lower()}", DIGITS, NHWC)
    assert info.value.message == (
        f"the {fmt} image is truncated: the body ends before the data of its "
        f"{size[0]}x{size[1]} pixels does; send the whole file"
    )


def test_a_jpeg_cut_short_but_closed_with_an_end_marker_decodes_as_libjpeg_conceals_it() -> None:
    # libjpeg fills what is missing with grey and Pillow reports nothing: such a file cannot
    # be told from a whole one (browsers show it the same way). Documented in api.md.
    noise = np.random.default_rng(0).integers(0, 256, (256, 256), dtype=np.uint8)
    photo = encoded(Image.fromarray(noise), "JPEG")
    resealed = photo[: len(photo) // 2] + b"\xff\xd9"
    tensor = decode_image(resealed, "image/jpeg", DIGITS, NHWC)
    assert np.allclose(tensor[0, -2:], 128 * 0.0627450980, atol=0.1)  # the grey it fills in
