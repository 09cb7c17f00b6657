"""``driftgate reference build``: a model version's reference profile from its training set.

The profile describes the inputs (from the file) and, when the model is tabular (one
column per input), its outputs too: the model version is loaded in process and run over
the file, so prediction drift has a reference from the start, and with ``--label`` the
reference error rate that realised performance is judged against. The profile is saved
beside the model version (``<repository>/<model>/references/<version>/``), never
overwriting an older one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from drift.profile import ReferenceProfile, profile_from_file
from drift.references import ReferenceStore
from monitoring.prediction_log.catalog import sql_string


class ReferenceBuildError(ValueError):
    """The profile cannot be built; the message says what to change."""


def build_reference(
    repository: Path,
    model: str,
    version: str,
    data: Path,
    *,
    label: str | None = None,
    features: Sequence[str] | None = None,
    with_predictions: bool = True,
) -> tuple[Path, ReferenceProfile]:
    """Build, save and return (path, profile) for ``model`` ``version`` from ``data``."""
    version_dir = Path(repository) / model / version
    if not version_dir.is_dir():
        raise ReferenceBuildError(f"no model version folder {version_dir}")
    if not data.is_file():
        raise ReferenceBuildError(f"no training data file {data}")
    backend = _load(version_dir) if with_predictions or features is None else None
    try:
        specs = backend.metadata().inputs if backend is not None else ()
        names = list(features) if features else [spec.name for spec in specs]
        predictions: Mapping[str, np.ndarray] | None = None
        if with_predictions and backend is not None:
            columns = read_columns(data, names)
            try:
                inputs = {spec.name: _as_input(columns[spec.name], spec) for spec in specs}
                outputs = backend.predict(inputs)
            except (ValueError, TypeError) as exc:
                raise ReferenceBuildError(
                    f"the model in {version_dir} cannot predict the rows of {data}: {exc} "
                    "(--no-predictions profiles the inputs alone)"
                ) from exc
            flat = {f"out_{name}": _flat(values) for name, values in outputs.items()}
            predictions = {name: values for name, values in flat.items() if values is not None}
    finally:
        if backend is not None:
            backend.unload()
    try:
        profile = profile_from_file(
            data,
            model,
            version,
            label=label,
            features=names,
            prediction_columns=predictions,
        )
    except duckdb.Error as exc:
        raise ReferenceBuildError(f"cannot read {data}: {exc}") from exc
    except ValueError as exc:  # a column that is not in the file, named in the message
        raise ReferenceBuildError(str(exc)) from exc
    return ReferenceStore(Path(repository)).save(profile), profile


def read_columns(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named columns of a CSV or Parquet file (matched case-insensitively)."""
    reader = "read_parquet" if path.suffix.lower() == ".parquet" else "read_csv_auto"
    try:
        with duckdb.connect() as con:
            table = con.sql(f"SELECT * FROM {reader}({sql_string(str(path))})").to_arrow_table()
    except duckdb.Error as exc:  # truncated, not Parquet, not CSV
        raise ReferenceBuildError(f"cannot read {path}: {exc}") from exc
    by_lower = {column.lower(): column for column in table.column_names}
    missing = [name for name in names if name.lower() not in by_lower]
    if missing:
        raise ReferenceBuildError(
            f"{path} has no column(s) {missing}; its columns: {table.column_names}"
        )
    return {
        name: table.column(by_lower[name.lower()]).to_numpy(zero_copy_only=False) for name in names
    }


def _load(version_dir: Path) -> Any:
    from runtime.backends import create_backend, detect_format

    try:
        fmt, artefact = detect_format(version_dir)
        backend = create_backend(fmt)
        backend.load(artefact)
    except (ValueError, ImportError, OSError) as exc:
        raise ReferenceBuildError(f"cannot load the model in {version_dir}: {exc}") from exc
    return backend


def _as_input(column: np.ndarray, spec: Any) -> np.ndarray:
    """A file column as the model input ``spec`` wants it: [n, 1] or [n], its dtype."""
    from runtime.tensors import numpy_dtype

    if spec.datatype == "BYTES":
        values = np.array([_text(v) for v in column], dtype=object)
    else:
        values = np.array([np.nan if v is None else v for v in column], dtype=np.float64).astype(
            numpy_dtype(spec.datatype)
        )
    return values.reshape(-1, 1) if len(spec.shape) == 2 else values


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _flat(values: np.ndarray) -> np.ndarray | None:
    """One value per row ([n] or [n, 1]); None for outputs that are not (probabilities)."""
    array = np.asarray(values)
    if array.ndim == 1:
        return array
    if array.ndim == 2 and array.shape[1] == 1:
        return array[:, 0]
    return None


def build_demo_references(repository: Path) -> list[Path]:
    """Reference profiles of the demo's tabular models, from the bundled training set."""
    from runtime.demo.titanic_data import DATA_DIR, FILES

    training = DATA_DIR / FILES["reference"]
    built = []
    for model, version in (("titanic", "1"), ("titanic", "2"), ("titanic_pmml", "1")):
        if (Path(repository) / model / version).is_dir():
            path, _ = build_reference(repository, model, version, training, label="Survived")
            built.append(path)
    return built
