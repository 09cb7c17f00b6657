"""The ``digits`` demo image model (ONNX) and PNG sample digits to send it.

Trained on scikit-learn's bundled 8x8 handwritten digits (pixel values 0..16, ink high).
``digits/1/digits.onnx`` takes ``image`` FP32 ``[-1, 8, 8, 1]`` (0..16, like sklearn) and
returns ``probabilities`` FP32 ``[-1, 10]`` and ``label`` INT64 ``[-1, 1]``: a scikit-learn
scaler + logistic regression converted by skl2onnx, with a ``Reshape`` in front (image to
64 pixels) and one behind (label to a column).

``digits/config.yaml`` holds the image contract the HTTP layer applies to PNG/JPEG bodies:
decode, convert to grayscale, resize to 8x8, then ``pixel * scale + offset`` with
``scale = 16/255``, so a PNG from ``write_sample_digit_png`` maps back to sklearn's values.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from runtime.demo.files import write_yaml

IMAGE_CONFIG: dict[str, Any] = {
    "image": {
        "input": "image",
        "width": 8,
        "height": 8,
        "color_mode": "grayscale",
        "scale": round(16 / 255, 10),
        "offset": 0.0,
        "invert": False,
    }
}
ONNX_OPSET = {"": 17, "ai.onnx.ml": 3}


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images: np.ndarray = bunch.images
    target: np.ndarray = bunch.target
    return images, target


def sample_digit(digit: int) -> np.ndarray:
    """The most typical image of ``digit`` in sklearn's set (the one nearest the digit's
    mean image): ``[8, 8]`` float, 0..16."""
    if not 0 <= digit <= 9:
        raise ValueError(f"digit must be 0..9, not {digit}")
    images, target = _load_digits()
    candidates = images[target == digit]
    distances = ((candidates - candidates.mean(axis=0)) ** 2).sum(axis=(1, 2))
    typical: np.ndarray = candidates[int(np.argmin(distances))]
    return typical


def write_sample_digit_png(path: Path, digit: int, size: int = 32) -> Path:
    """Renders ``sample_digit(digit)`` as a grayscale PNG, white ink on black, upscaled to
    ``size`` x ``size`` by pixel repetition (so an area/box downscale gives it back)."""
    from PIL import Image

    pixels = np.rint(sample_digit(digit) * 255 / 16).astype(np.uint8)
    image = Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.NEAREST)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")
    return path


def write_sample_digits(folder: Path, digits: Iterable[int] = range(10)) -> list[Path]:
    """``digit_<n>.png`` for each digit, into ``folder``."""
    return [write_sample_digit_png(folder / f"digit_{d}.png", d) for d in digits]


def train_digits() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    images, target = _load_digits()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000))
    return pipeline.fit(images.reshape(len(images), -1), target)


def to_onnx_model(classifier: Any) -> Any:
    """The fitted classifier as an ONNX ``ModelProto`` with the image-shaped interface."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    model = to_onnx(
        classifier,
        initial_types=[("pixels", FloatTensorType([None, 64]))],
        options={id(classifier): {"zipmap": False}},
        target_opset=ONNX_OPSET,
    )
    graph = model.graph
    del graph.input[:]
    graph.input.append(helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 8, 8, 1]))
    graph.initializer.extend([
        numpy_helper.from_array(np.array([-1, 64], dtype=np.int64), "pixels_shape"),
        numpy_helper.from_array(np.array([-1, 1], dtype=np.int64), "label_shape"),
    ])  # fmt: skip
    graph.node.insert(0, helper.make_node("Reshape", ["image", "pixels_shape"], ["pixels"]))
    for node in graph.node:
        node.output[:] = ["label_vector" if name == "label" else name for name in node.output]
    graph.node.append(helper.make_node("Reshape", ["label_vector", "label_shape"], ["label"]))
    outputs = [out for out in graph.output if out.name != "label"]
    del graph.output[:]
    graph.output.extend(
        [*outputs, helper.make_tensor_value_info("label", TensorProto.INT64, [None, 1])]
    )
    onnx.checker.check_model(model)
    return model


def write_digits(dest: Path, classifier: Any) -> None:
    """Writes ``dest/digits/1/digits.onnx`` and ``dest/digits/config.yaml``."""
    folder = dest / "digits" / "1"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "digits.onnx").write_bytes(to_onnx_model(classifier).SerializeToString())
    write_yaml(dest / "digits" / "config.yaml", IMAGE_CONFIG)
