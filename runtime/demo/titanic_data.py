"""The bundled Titanic passengers as numpy columns named like the models' inputs.

``runtime/demo/data/titanic/`` ships with the package (see its README). ``load_titanic``
reads one of its CSV files into the five columns the demo models take: ``fare`` and ``age``
(float64, NaN where missing), ``sex``, ``embarked`` and ``pclass`` (object arrays of
``str``, ``None`` where missing; ``pclass`` is text, ``"1"``..``"3"``), plus the label
``survived`` when the file has one.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).parent / "data" / "titanic"
FILES = {
    "reference": "titanic_reference.csv",
    "analysis": "titanic_analysis.csv",
}
NUMERIC_FEATURES = ("fare", "age")
CATEGORIES: dict[str, tuple[str, ...]] = {
    "sex": ("female", "male"),
    "embarked": ("C", "Q", "S"),
    "pclass": ("1", "2", "3"),
}
FEATURES = ("fare", "sex", "embarked", "pclass", "age")
_CSV_COLUMNS = {
    "fare": "Fare",
    "sex": "Sex",
    "embarked": "Embarked",
    "pclass": "Pclass",
    "age": "Age",
}


@dataclass(frozen=True)
class TitanicData:
    """Feature columns (shape ``[n]``) by input name, and the labels when known."""

    columns: dict[str, np.ndarray]
    survived: np.ndarray | None

    def __len__(self) -> int:
        return len(self.columns["fare"])

    def as_inputs(self) -> dict[str, np.ndarray]:
        """The columns as ``[n, 1]`` model inputs: FP32 numbers, object arrays of text."""
        inputs = {}
        for name, column in self.columns.items():
            dtype = np.float32 if name in NUMERIC_FEATURES else object
            inputs[name] = column.astype(dtype).reshape(-1, 1)
        return inputs


def load_titanic(which: str = "reference") -> TitanicData:
    """Read ``titanic_reference.csv`` (with labels) or ``titanic_analysis.csv``."""
    with (DATA_DIR / FILES[which]).open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns: dict[str, np.ndarray] = {}
    for name in FEATURES:
        raw = [row[_CSV_COLUMNS[name]] for row in rows]
        if name in NUMERIC_FEATURES:
            columns[name] = np.array([float(v) if v else math.nan for v in raw])
        else:
            columns[name] = np.array([v or None for v in raw], dtype=object)
    survived = None
    if "Survived" in rows[0]:
        survived = np.array([int(row["Survived"]) for row in rows], dtype=np.int64)
    return TitanicData(columns, survived)
