"""The Keras demo models: ``iris`` (HDF5) and ``diabetes`` (TensorFlow SavedModel).

Both are small multi-layer perceptrons. Their weights are fitted by scikit-learn's
``MLPClassifier``/``MLPRegressor`` (lbfgs, fixed seed: quick and deterministic) and copied
into Keras layers, with the input standardisation folded into the first layer, so the Keras
files hold ordinary Dense layers and no custom code.

- ``iris/1/iris.h5``: written by Keras 3. ``iris/2/iris.h5``: the same weights written by
  Keras 2 (``tf_keras``, run in a subprocess because it cannot share a process with Keras 3);
  skipped with a warning when ``tf_keras`` is not importable. Input ``features`` FP32
  ``[-1, 4]`` (sepal length, sepal width, petal length, petal width, in cm); output
  ``probabilities`` FP32 ``[-1, 3]`` (setosa, versicolor, virginica).
- ``diabetes/1/``: a SavedModel written by ``model.export``; signature ``serving_default``
  with input ``features`` FP32 ``[-1, 10]`` (sklearn's scaled diabetes features) and output
  ``progression`` FP32 ``[-1, 1]`` (disease progression one year later).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

IRIS_CLASSES = ("setosa", "versicolor", "virginica")


@dataclass(frozen=True)
class DenseStack:
    """Weights of ``input -> Dense(relu) -> Dense(output activation)``."""

    hidden_kernel: np.ndarray
    hidden_bias: np.ndarray
    output_kernel: np.ndarray
    output_bias: np.ndarray

    def as_list(self) -> list[np.ndarray]:
        return [self.hidden_kernel, self.hidden_bias, self.output_kernel, self.output_bias]


def _fold_standardisation(
    kernel: np.ndarray, bias: np.ndarray, mean: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``((x - mean) / scale) @ W + b`` as ``x @ W' + b'``."""
    folded = kernel / scale[:, None]
    return folded.astype(np.float32), (bias - mean @ folded).astype(np.float32)


def fit_iris() -> DenseStack:
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier

    x, y = load_iris(return_X_y=True)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    mlp = MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", max_iter=2000, random_state=0)
    mlp.fit((x - mean) / scale, y)
    kernel, bias = _fold_standardisation(mlp.coefs_[0], mlp.intercepts_[0], mean, scale)
    return DenseStack(
        kernel, bias, mlp.coefs_[1].astype(np.float32), mlp.intercepts_[1].astype(np.float32)
    )


def fit_diabetes() -> DenseStack:
    from sklearn.datasets import load_diabetes
    from sklearn.neural_network import MLPRegressor

    x, y = load_diabetes(return_X_y=True)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    y_mean, y_scale = y.mean(), y.std()
    mlp = MLPRegressor(
        hidden_layer_sizes=(8,), solver="lbfgs", max_iter=2000, alpha=1.0, random_state=0
    )
    mlp.fit((x - mean) / scale, (y - y_mean) / y_scale)
    kernel, bias = _fold_standardisation(mlp.coefs_[0], mlp.intercepts_[0], mean, scale)
    return DenseStack(
        kernel,
        bias,
        (mlp.coefs_[1] * y_scale).astype(np.float32),
        (mlp.intercepts_[1] * y_scale + y_mean).astype(np.float32),
    )


def _keras_stack(
    weights: DenseStack, input_name: str, output_name: str, activation: str | None
) -> object:
    import keras

    inputs = keras.Input(shape=(weights.hidden_kernel.shape[0],), name=input_name)
    hidden = keras.layers.Dense(weights.hidden_kernel.shape[1], activation="relu", name="hidden")
    output = keras.layers.Dense(
        weights.output_kernel.shape[1], activation=activation, name=output_name
    )
    outputs = output(hidden(inputs))
    model = keras.Model(inputs, {output_name: outputs} if activation is None else outputs)
    model.set_weights(weights.as_list())
    return model


def write_iris_keras3(path: Path, weights: DenseStack) -> None:
    import keras

    path.parent.mkdir(parents=True, exist_ok=True)
    model = _keras_stack(weights, "features", "probabilities", "softmax")
    assert isinstance(model, keras.Model)
    # HDF5 is the point of this model: silence Keras' "HDF5 is legacy" log line.
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        keras.saving.save_model(model, path)
    finally:
        absl.setLevel(level)


def write_diabetes_savedmodel(folder: Path, weights: DenseStack) -> None:
    """A SavedModel in ``folder`` (the version folder itself) by ``model.export``."""
    import keras

    model = _keras_stack(weights, "features", "progression", None)
    assert isinstance(model, keras.Model)
    # A dict output names the signature's output "progression" instead of "output_0".
    model.export(str(folder), verbose=False)


_KERAS2_SCRIPT = """
import sys
import numpy as np
import tf_keras as keras
weights = np.load(sys.argv[1])
inputs = keras.Input(shape=(4,), name="features")
hidden = keras.layers.Dense(weights["w0"].shape[1], activation="relu", name="hidden")(inputs)
outputs = keras.layers.Dense(3, activation="softmax", name="probabilities")(hidden)
model = keras.Model(inputs, outputs)
model.set_weights([weights[k] for k in ("w0", "b0", "w1", "b1")])
model.save(sys.argv[2], save_format="h5")
"""


class Keras2Writer:
    """Writes the Keras 2 ``iris`` file in a background subprocess (TensorFlow takes
    seconds to import; the rest of the build runs meanwhile)."""

    def __init__(self, path: Path, weights: DenseStack) -> None:
        self.path = path
        self._process: subprocess.Popen[bytes] | None = None
        if importlib.util.find_spec("tf_keras") is None:
            logger.warning("tf_keras is not installed: skipping the Keras 2 iris version")
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        weights_file = path.with_suffix(".weights.npz")
        w0, b0, w1, b1 = weights.as_list()
        np.savez(weights_file, w0=w0, b0=b0, w1=w1, b1=b1)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
        env.pop("TF_USE_LEGACY_KERAS", None)
        self._process = subprocess.Popen(
            [sys.executable, "-c", _KERAS2_SCRIPT, str(weights_file), str(path)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def wait(self, timeout: float = 300) -> bool:
        """True when the file was written; a failure is logged and the version left out."""
        if self._process is None:
            return False
        try:
            _, stderr = self._process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cancel()
            logger.warning("the Keras 2 iris writer took over %s s: version left out", timeout)
            return False
        finally:
            self.path.with_suffix(".weights.npz").unlink(missing_ok=True)
        if self._process.returncode != 0 or not self.path.is_file():
            tail = stderr.decode(errors="replace").strip().splitlines()[-3:]
            logger.warning("could not write the Keras 2 iris version: %s", " | ".join(tail))
            self.path.unlink(missing_ok=True)
            return False
        return True

    def cancel(self) -> None:
        """Stop the subprocess if it still runs (the build failed or timed out)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
