"""The demo model repository: one small, real model of every format the runtime serves.

``build_demo_repository(dest)`` writes, deterministically and without downloads, from data
that ships with this package (Titanic passengers) or with scikit-learn (iris, diabetes,
digits)::

    dest/titanic/{1,2}/pipeline.yaml + classifier.onnx   pipeline: processors, then ONNX
    dest/titanic/config.yaml                             labels stable: 1, canary: 2
    dest/titanic_pmml/1/titanic.pmml                     PMML, titanic v1's regression
    dest/iris/1/iris.h5, dest/iris/2/iris.h5             Keras 3 and Keras 2 HDF5
    dest/diabetes/1/saved_model.pb ...                   TensorFlow SavedModel
    dest/diabetes/config.yaml                            signature; dynamic batching on
    dest/digits/1/digits.onnx + digits/config.yaml       image model + image contract

``driftgate demo build DIR`` calls it. ``write_sample_digit_png`` renders a digit to send to
the ``digits`` model as an ``image/png`` body. Model inputs and outputs are listed in each
builder module's docstring and in ``docs/pipelines.md``.

Importing this package is cheap: scikit-learn, skl2onnx and TensorFlow are imported only
while building.
"""

from __future__ import annotations

from runtime.demo.build import DEMO_MODELS, build_demo_repository
from runtime.demo.digits import sample_digit, write_sample_digit_png, write_sample_digits

__all__ = [
    "DEMO_MODELS",
    "build_demo_repository",
    "sample_digit",
    "write_sample_digit_png",
    "write_sample_digits",
]
