"""Models that need code the runtime cannot run say what to do instead.

Keras asked for ``custom_object_scope`` or ``safe_mode=False``, neither of which a model
repository can give; a SavedModel without signatures was told to set ``signature:``, which
cannot help when there is none.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runtime.backends.keras_h5 import KerasBackend
from runtime.backends.savedmodel import SavedModelBackend

EXPORT = (
    "export the model as a TensorFlow SavedModel, which needs no Python code to serve: "
    "`model.export('models/<name>/<version>')` in the program that built it"
)


def save_keras(path: Path, build: Any) -> Path:
    import keras

    inputs = keras.Input((2,), name="x")
    keras.Model(inputs, build(keras, inputs)).save(path)
    return path


def doubled(x: Any) -> Any:  # a custom activation, registered nowhere
    return x * 2


def custom_layer(keras: Any, inputs: Any) -> Any:
    class Doubling(keras.layers.Layer):  # type: ignore[misc]  # registered nowhere either
        def call(self, x: Any) -> Any:
            return x * 2

    return Doubling(name="doubling")(inputs)


@pytest.mark.parametrize(
    ("build", "what"),
    [
        (custom_layer, "the custom object 'Doubling', whose Python code the runtime does not"),
        (
            lambda keras, inputs: keras.layers.Dense(1, activation=doubled)(inputs),
            "the custom object 'doubled', whose Python code the runtime does not import",
        ),
        (
            lambda keras, inputs: keras.layers.Lambda(lambda t: t * 3)(inputs),
            "a Lambda layer, whose Python code Keras refuses to load from a file (safe_mode)",
        ),
    ],
    ids=["layer", "function", "lambda"],
)
def test_keras_files_with_custom_code_say_to_export_a_savedmodel(
    tmp_path: Path, build: Any, what: str
) -> None:
    path = save_keras(tmp_path / "model.h5", build)
    with pytest.raises(ValueError) as failed:
        KerasBackend({}).load(path)
    assert str(failed.value).startswith(f"the model uses {what}")
    assert str(failed.value).endswith(EXPORT)


def test_a_savedmodel_without_any_signature_says_how_to_save_one(tmp_path: Path) -> None:
    import tensorflow as tf

    class Doubler(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32)])  # type: ignore[untyped-decorator]
        def double(self, x: Any) -> Any:
            return x * 2

    module = Doubler()
    tf.saved_model.save(module, str(tmp_path), signatures={})
    with pytest.raises(ValueError) as failed:
        SavedModelBackend({}).load(tmp_path)
    assert str(failed.value).startswith(
        f"SavedModel {tmp_path} has no signatures at all, so nothing to serve; save it with one: "
        "`tf.saved_model.save(module, path, signatures={'serving_default': module.f})`"
    )
    assert "set `signature:`" not in str(failed.value)
