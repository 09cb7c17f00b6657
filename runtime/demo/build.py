"""``build_demo_repository``: writes the demo model repository, every format represented.

Each model is built into a hidden staging folder inside ``dest`` and then swapped into place
(old folder renamed aside, new one renamed in, old one deleted), so a running repository
never reads a half-written model and a rebuild replaces exactly the demo's model folders,
leaving anything else in ``dest`` alone. Everything is trained from data that ships with the
package or with scikit-learn, with fixed seeds; nothing is downloaded.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path

from runtime.demo import digits, keras_models, titanic
from runtime.demo.files import write_yaml
from runtime.demo.titanic_data import load_titanic

logger = logging.getLogger(__name__)

#: Model folders ``build_demo_repository`` writes (and replaces).
DEMO_MODELS = ("diabetes", "digits", "iris", "titanic", "titanic_pmml")


def build_demo_repository(dest: Path) -> list[str]:
    """Build (or rebuild) the demo models under ``dest``; returns the model names."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    staging = Path(tempfile.mkdtemp(prefix=".demo-build-", dir=dest))
    try:
        with warnings.catch_warnings():
            # lbfgs iteration limits and Keras' "HDF5 is legacy" notes are expected here.
            warnings.simplefilter("ignore")
            _build_all(staging)
        names = sorted(entry.name for entry in staging.iterdir() if entry.is_dir())
        for name in names:
            _swap_into_place(staging / name, dest / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("built %d demo models in %.1f s", len(names), time.perf_counter() - started)
    return names


def _build_all(staging: Path) -> None:
    # The Keras 2 file is written by a subprocess that spends seconds importing TensorFlow:
    # start it first and collect it last.
    iris_weights = keras_models.fit_iris()
    keras2 = keras_models.Keras2Writer(staging / "iris" / "2" / "iris.h5", iris_weights)
    try:
        _build_in_process(staging, iris_weights)
        if keras2.wait():
            # Serve both files: one model written by Keras 3 and by Keras 2, side by side.
            write_yaml(staging / "iris" / "config.yaml", {"version_policy": {"all": True}})
    finally:
        keras2.cancel()


def _build_in_process(staging: Path, iris_weights: keras_models.DenseStack) -> None:
    data = load_titanic("reference")
    assert data.survived is not None
    prep = titanic.fit_preprocessing(data)
    classifiers = titanic.train_classifiers(titanic.feature_matrix(data, prep), data.survived)
    titanic.write_titanic(staging, prep, classifiers)
    titanic.write_titanic_pmml(staging, prep, classifiers[1])

    digits.write_digits(staging, digits.train_digits())

    keras_models.write_iris_keras3(staging / "iris" / "1" / "iris.h5", iris_weights)
    keras_models.write_diabetes_savedmodel(staging / "diabetes" / "1", keras_models.fit_diabetes())
    # A TensorFlow graph costs about a millisecond per call whatever the rows: batching
    # doubles what it serves under concurrency (BENCHMARKS.md, "Dynamic batching").
    diabetes = {"signature": "serving_default", "batching": {"max_batch_size": 32}}
    write_yaml(staging / "diabetes" / "config.yaml", diabetes)


def _swap_into_place(built: Path, target: Path) -> None:
    if not target.exists():
        built.rename(target)
        return
    aside = target.with_name(f".{target.name}.old")
    shutil.rmtree(aside, ignore_errors=True)
    target.rename(aside)
    built.rename(target)
    shutil.rmtree(aside, ignore_errors=True)
