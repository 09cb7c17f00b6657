"""Small text helpers shared by the jobs' HTML reports (``drift.report``, ``explain.report``):
how numbers and times read, and which names may become a report's path segment."""

from __future__ import annotations

import math
from datetime import UTC, datetime


def number_text(value: float | None) -> str:
    """Four significant digits; ``n/a`` for a value that does not apply, ``NaN`` as such."""
    if value is None:
        return "n/a"
    return "NaN" if math.isnan(value) else f"{value:.4g}"


def moment_text(timestamp: datetime) -> str:
    """A UTC ISO time to the second (a naive time is taken as UTC)."""
    moment = timestamp.replace(tzinfo=UTC) if timestamp.tzinfo is None else timestamp
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def path_segment(name: str) -> str:
    """``name`` as one folder or file name; refuses what would leave the folder."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ValueError(f"{name!r} cannot be used as a report path segment")
    return name
