"""Real ONNX, Keras and SavedModel files, built once per test session.

(The PMML file is hand-written XML and lives in ``test_pmml.py``, the only module using it.)

Models are tiny and untrained: weights are set directly so that files are deterministic and
building them costs milliseconds (the TensorFlow import is the expensive part). The Keras 2
file is written by tf-keras in a subprocess, since tf-keras and Keras 3 must not share a
process. (Tests marked ``java`` are handled by tests/conftest.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@dataclass(frozen=True)
class Artefact:
    """A model file plus what its own framework answered for ``inputs``."""

    path: Path
    inputs: dict[str, np.ndarray]
    expected: dict[str, np.ndarray]


# ---------------------------------------------------------------- ONNX


@pytest.fixture(scope="session")
def sklearn_logreg() -> tuple[Any, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    features = rng.normal(size=(80, 3)).astype(np.float32)
    labels = (features[:, 0] - features[:, 2] > 0).astype(np.int64)
    return LogisticRegression().fit(features, labels), features


def _logreg_onnx(directory: Path, sklearn_logreg: tuple[Any, np.ndarray], zipmap: bool) -> Artefact:
    from skl2onnx import to_onnx

    model, features = sklearn_logreg
    proto = to_onnx(model, features[:1], options={id(model): {"zipmap": zipmap}}, target_opset=17)
    path = directory / ("zipmap.onnx" if zipmap else "logreg.onnx")
    path.write_bytes(proto.SerializeToString())
    batch = features[:5]
    expected = {"label": model.predict(batch), "probabilities": model.predict_proba(batch)}
    return Artefact(path, {"X": batch}, expected)


@pytest.fixture(scope="session")
def onnx_logreg(tmp_path_factory: pytest.TempPathFactory, sklearn_logreg: Any) -> Artefact:
    return _logreg_onnx(tmp_path_factory.mktemp("onnx"), sklearn_logreg, zipmap=False)


@pytest.fixture(scope="session")
def onnx_zipmap(tmp_path_factory: pytest.TempPathFactory, sklearn_logreg: Any) -> Artefact:
    return _logreg_onnx(tmp_path_factory.mktemp("onnx"), sklearn_logreg, zipmap=True)


@pytest.fixture(scope="session")
def onnx_mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A hand-built graph: float16 ``x`` [batch, 2] doubled, string ``s`` echoed, bool output."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["y"]),
            helper.make_node("Identity", ["s"], ["s_out"]),
            helper.make_node("Greater", ["x", "zero"], ["positive"]),
        ],
        "mixed",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["batch", 2]),
            helper.make_tensor_value_info("s", TensorProto.STRING, [None, 1]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["batch", 2]),
            helper.make_tensor_value_info("s_out", TensorProto.STRING, [None, 1]),
            helper.make_tensor_value_info("positive", TensorProto.BOOL, ["batch", 2]),
        ],
        initializer=[
            helper.make_tensor("two", TensorProto.FLOAT16, [], [2.0]),
            helper.make_tensor("zero", TensorProto.FLOAT16, [], [0.0]),
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.checker.check_model(proto)
    path = tmp_path_factory.mktemp("onnx") / "mixed.onnx"
    path.write_bytes(proto.SerializeToString())
    return path


# ---------------------------------------------------------------- Keras 3 and SavedModel


def _set_weights(model: Any, seed: int) -> None:
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])


@pytest.fixture(scope="session")
def keras3_model() -> Any:
    """Two inputs (``features`` [n, 3], ``extra`` [n, 1]), two outputs (``scores``, ``value``)."""
    import keras

    features = keras.Input(shape=(3,), name="features")
    extra = keras.Input(shape=(1,), name="extra")
    hidden = keras.layers.Dense(4, activation="relu", name="hidden")(
        keras.layers.Concatenate()([features, extra])
    )
    scores = keras.layers.Dense(2, activation="softmax", name="scores")(hidden)
    value = keras.layers.Dense(1, name="value")(hidden)
    model = keras.Model([features, extra], [scores, value])
    _set_weights(model, 1)
    return model


@pytest.fixture(scope="session")
def keras3_inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    return {
        "features": rng.normal(size=(4, 3)).astype(np.float32),
        "extra": rng.normal(size=(4, 1)).astype(np.float32),
    }


@pytest.fixture(scope="session")
def keras3_files(
    tmp_path_factory: pytest.TempPathFactory,
    keras3_model: Any,
    keras3_inputs: dict[str, np.ndarray],
) -> dict[str, Artefact]:
    import keras

    directory = tmp_path_factory.mktemp("keras3")
    scores, value = keras3_model(keras3_inputs, training=False)
    expected = {"scores": np.asarray(scores), "value": np.asarray(value)}
    sequential = keras.Sequential(
        [keras.Input(shape=(3,), name="pixels"), keras.layers.Dense(2, name="logits")]
    )
    _set_weights(sequential, 3)
    seq_inputs = {"pixels": keras3_inputs["features"]}
    files: dict[str, Artefact] = {}
    for suffix in ("h5", "keras"):
        keras3_model.save(directory / f"model.{suffix}")
        files[suffix] = Artefact(directory / f"model.{suffix}", keras3_inputs, expected)
    sequential.save(directory / "sequential.h5")
    seq_expected = {"logits": np.asarray(sequential(seq_inputs["pixels"], training=False))}
    files["sequential"] = Artefact(directory / "sequential.h5", seq_inputs, seq_expected)
    return files


KERAS2_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tf_keras as keras

    out = sys.argv[1]
    rng = np.random.default_rng(5)
    inp = keras.Input(shape=(3,), name="features")
    hidden = keras.layers.Dense(4, activation="tanh", name="hidden")(inp)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax", name="scores")(hidden))
    seq = keras.Sequential([keras.layers.Dense(2, input_shape=(3,), name="dense")])
    x = rng.normal(size=(4, 3)).astype("float32")
    for m in (model, seq):
        m.set_weights([rng.normal(size=w.shape).astype("float32") for w in m.get_weights()])
    model.save(out + "/functional.h5")
    seq.save(out + "/sequential.h5")
    np.savez(out + "/expected.npz", x=x, functional=model(x).numpy(), sequential=seq(x).numpy())
    """
)


@pytest.fixture(scope="session")
def keras2_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artefact]:
    """Keras 2 HDF5 files written by tf-keras in its own process."""
    pytest.importorskip("tf_keras", reason="tf-keras writes the Keras 2 test files")
    directory = tmp_path_factory.mktemp("keras2")
    subprocess.run(
        [sys.executable, "-c", KERAS2_SCRIPT, str(directory)],
        check=True,
        capture_output=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"},
        timeout=240,
    )
    data = np.load(directory / "expected.npz")
    return {
        "functional": Artefact(
            directory / "functional.h5", {"features": data["x"]}, {"scores": data["functional"]}
        ),
        "sequential": Artefact(
            directory / "sequential.h5", {"dense_input": data["x"]}, {"dense": data["sequential"]}
        ),
    }


@pytest.fixture(scope="session")
def exported_savedmodel(tmp_path_factory: pytest.TempPathFactory, keras3_model: Any) -> Path:
    """``keras.Model.export``: signatures ``serve`` and ``serving_default``."""
    path = tmp_path_factory.mktemp("savedmodel") / "exported"
    keras3_model.export(str(path), verbose=False)
    return path


@pytest.fixture(scope="session")
def two_signature_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``tf.Module`` with signatures ``double`` (numbers) and ``greet`` (strings)."""
    import tensorflow as tf

    class Toy(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])  # type: ignore[untyped-decorator]
        def double(self, x: Any) -> dict[str, Any]:
            return {"y": x * 2.0, "rows": tf.shape(x, out_type=tf.int64)[:1]}

        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.string, name="name")])  # type: ignore[untyped-decorator]
        def greet(self, name: Any) -> dict[str, Any]:
            return {
                "greeting": tf.strings.join(["hello ", name]),
                "raw": tf.constant([b"\xff\x00"]),
            }

    toy = Toy()
    path = tmp_path_factory.mktemp("savedmodel") / "toy"
    tf.saved_model.save(toy, str(path), signatures={"double": toy.double, "greet": toy.greet})
    return path


# ---------------------------------------------------------------- helpers


@pytest.fixture
def block_import(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Make ``import NAME`` fail as if the package were not installed (undone after the test)."""

    def block(*names: str) -> None:
        for name in names:
            monkeypatch.setitem(sys.modules, name, None)

    return block
