"""Small text helpers shared by the jobs' HTML reports (``drift.report``, ``explain.report``):
how numbers, bin edges and times read, and which names may become a report's path segment."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime


def number_text(value: float | None) -> str:
    """Four significant digits; ``n/a`` for a value that does not apply, ``NaN`` as such."""
    if value is None:
        return "n/a"
    return "NaN" if math.isnan(value) else f"{value:.4g}"


def edge_texts(edges: Sequence[float], digits: int) -> list[str]:
    """Bin edges to ``digits`` significant digits, or as many more as it takes to tell them
    apart: edges a rounding apart (a feature whose values are nearly all the same) would
    otherwise label different bins alike."""
    for shown in range(digits, 18):
        texts = [f"{e:.{shown}g}" for e in edges]
        if len(set(texts)) == len(set(edges)):
            return texts
    return [repr(float(e)) for e in edges]


def moment_text(timestamp: datetime) -> str:
    """A UTC ISO time to the second (a naive time is taken as UTC)."""
    moment = timestamp.replace(tzinfo=UTC) if timestamp.tzinfo is None else timestamp
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def path_segment(name: str) -> str:
    """``name`` as one folder or file name; refuses what would leave the folder."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ValueError(f"{name!r} cannot be used as a report path segment")
    return name
