"""What the explainers return: per-row ``Attribution``s and global ``Importance``.

``Attribution`` (Kernel SHAP, the linear fast path) splits each row's prediction into a
base value (the mean prediction over the background) plus one value per original input
feature; ``additivity_error`` says how far that sum is from the prediction. ``Importance``
(permutation importance, or mean absolute attribution) ranks features for a whole batch;
``explain.drift`` compares two of them over time. Both are plain values: jobs turn them into
metrics, store rows and HTML, and the HTTP layer into JSON via ``to_records``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Attribution:
    """Per-row feature attributions: ``base_value + values[i].sum() ~= predictions[i]``."""

    features: tuple[str, ...]
    values: np.ndarray  # [n_rows, n_features]
    base_value: float
    predictions: np.ndarray  # [n_rows]
    method: str
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.predictions), len(self.features)):
            raise ValueError(
                f"values have shape {self.values.shape}; expected "
                f"({len(self.predictions)}, {len(self.features)}) (rows, features)"
            )

    def additivity_error(self) -> float:
        """The largest ``|base_value + sum(values) - prediction|`` over rows (0 for none)."""
        if len(self.predictions) == 0:
            return 0.0
        reconstructed = self.base_value + self.values.sum(axis=1)
        return float(np.max(np.abs(reconstructed - self.predictions)))

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per row: prediction, base value and attributions by feature."""
        return [
            {
                "prediction": float(prediction),
                "base_value": self.base_value,
                "attributions": dict(zip(self.features, map(float, row), strict=True)),
            }
            for prediction, row in zip(self.predictions, self.values, strict=True)
        ]

    def global_importance(self) -> Importance:
        """Mean absolute attribution per feature (std over rows): a batch's global view."""
        magnitudes = np.abs(self.values)
        n_rows = len(magnitudes)
        return Importance(
            features=self.features,
            importance=magnitudes.mean(axis=0) if n_rows else np.zeros(len(self.features)),
            std=magnitudes.std(axis=0) if n_rows else np.zeros(len(self.features)),
            method=self.method,
            scoring="mean_abs_attribution",
            baseline_score=None,
        )


def concat_attributions(parts: Sequence[Attribution]) -> Attribution:
    """Rows of several attributions of the same explanation (same features, method and
    base value: one background), e.g. the chunks of a budgeted job."""
    if not parts:
        raise ValueError("concat_attributions needs at least one part")
    first = parts[0]
    for part in parts[1:]:
        if (part.features, part.method) != (first.features, first.method):
            raise ValueError("attributions of different features or methods cannot be joined")
        if not np.isclose(part.base_value, first.base_value, rtol=1e-9, atol=1e-12):
            raise ValueError("attributions with different base values (backgrounds) differ")
    return Attribution(
        features=first.features,
        values=np.concatenate([part.values for part in parts]),
        base_value=first.base_value,
        predictions=np.concatenate([part.predictions for part in parts]),
        method=first.method,
        detail={**first.detail, "parts": len(parts)},
    )


@dataclass(frozen=True)
class Importance:
    """Global importance per feature for a batch of rows.

    ``scoring`` names what ``importance`` measures: a metric's drop when the feature is
    shuffled (``accuracy``, ``neg_mae``, ``log_loss``; positive means the feature helps and
    ``baseline_score`` is the metric unshuffled), ``prediction_change`` (mean absolute change
    in the prediction when shuffled) or ``mean_abs_attribution``.
    """

    features: tuple[str, ...]
    importance: np.ndarray  # [n_features]
    std: np.ndarray  # [n_features]
    method: str
    scoring: str
    baseline_score: float | None

    def __post_init__(self) -> None:
        expected = (len(self.features),)
        if self.importance.shape != expected or self.std.shape != expected:
            raise ValueError(
                f"importance {self.importance.shape} and std {self.std.shape} must both have "
                f"shape {expected} (one value per feature)"
            )

    def ranking(self) -> list[str]:
        """Features, most important first (ties keep the features' order)."""
        order = np.argsort(-self.importance, kind="stable")
        return [self.features[i] for i in order]

    def shares(self) -> dict[str, float]:
        """Each feature's share of the total importance, negatives counted as 0 (a shuffle
        that helped by chance carries no importance); all 0 when nothing matters."""
        clipped = np.clip(self.importance, 0.0, None)
        total = float(clipped.sum())
        if total <= 0.0:
            return dict.fromkeys(self.features, 0.0)
        return {
            name: float(value / total) for name, value in zip(self.features, clipped, strict=True)
        }

    def as_dict(self) -> dict[str, float]:
        """Importance by feature name."""
        return {
            name: float(value) for name, value in zip(self.features, self.importance, strict=True)
        }
