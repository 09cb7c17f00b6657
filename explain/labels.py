"""What a window's feedback labels say about how the explain job scores permutation importance.

Whole-number labels are class labels (the importance is the drop in accuracy when a feature
is shuffled), other numeric labels numbers to regress (the rise in mean absolute error).
A few labels that are not whole numbers among whole ones (a labeller's 0.7 among 0s and
1s), ``STRAY_LABEL_SHARE`` of the numeric labels at most, are strays: ``explain.traffic``
leaves them out rather than turn the whole window into a regression, since one such label
would change the importance's scale (``driftgate_feature_importance``) and end its
comparison with the previous run. More than that, and the labels are numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Labels that are not whole numbers, as a share of a window's numeric labels, that are left
#: out as strays (among whole-number class labels) rather than make the labels numbers.
STRAY_LABEL_SHARE = 0.05


@dataclass(frozen=True)
class LabelKinds:
    """The numeric labels of a window, and those of them that are not whole numbers."""

    numeric: int = 0
    non_integer: int = 0
    #: The first label that is not a whole number, to name in a log line.
    example: float | None = None
    #: Few enough to be strays: left out, so the rest are scored as class labels.
    left_out: bool = False


def label_kinds(labels: np.ndarray) -> LabelKinds:
    """What ``labels`` (float, NaN where a row has no numeric label) hold: see the module
    docstring for when the non-integer ones are left out."""
    numeric = labels[np.isfinite(labels)]
    fractional = numeric[numeric != np.round(numeric)]
    if not len(fractional):
        return LabelKinds(numeric=len(numeric))
    return LabelKinds(
        numeric=len(numeric),
        non_integer=len(fractional),
        example=float(fractional[0]),
        left_out=len(fractional) <= STRAY_LABEL_SHARE * len(numeric),
    )


def why_scored(scoring: str, kinds: LabelKinds, min_rows: int) -> str:
    """Why the labels of a window made its permutation importance scored by ``scoring``."""
    if scoring == "neg_mae":
        return (
            f"{kinds.non_integer} of {kinds.numeric} numeric labels are not whole numbers "
            f"(such as {kinds.example:g}), more than the {STRAY_LABEL_SHARE:.0%} left out as "
            "strays"
        )
    if scoring == "accuracy":
        if kinds.left_out:
            return f"the {kinds.non_integer} labels that are not whole numbers are left out"
        return "every numeric label is a whole number"
    return f"fewer than min_rows ({min_rows}) rows of the window have a usable numeric label"
