"""What the prediction log stores: one record type per table, and the store's settings.

``PredictionRecord`` is one row (instance) of one request as one target answered it;
``FeedbackRecord`` is a ground-truth label sent later through the feedback API. Both are
plain frozen values: the gateway builds them on the request path and hands them to the
writer (``PredictionLogWriter.submit``), which turns batches of them into Parquet segments.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec


@dataclass(frozen=True, slots=True)
class PredictionRecord:
    """One row (instance) of one request, as answered by one target (primary|fallback|shadow).

    ``inputs`` and ``outputs`` map a feature or output name to a scalar (int, float, str,
    bool, None) or a list (a non-tabular tensor row); each becomes a typed column
    ``in_<name>`` / ``out_<name>`` of the segment. ``timestamp`` is UTC and tz-aware (a
    naive value is taken as UTC); it also decides the ``date=`` partition. ``subject`` is
    the ``sub`` of the caller's verified token, None when auth is off.
    """

    request_id: str
    row: int
    timestamp: datetime
    route: str
    arm: str
    role: str
    model: str
    version: str
    replica: str
    dialect: str
    status: int
    latency_s: float
    trace_id: str | None
    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]
    error: str | None = None
    subject: str | None = None


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """A ground-truth label for one row of a request, or for all its rows (``row=None``)."""

    request_id: str
    row: int | None
    label: Any
    timestamp: datetime
    subject: str | None = None


class LogSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where the store lives, how the writer batches, and how long data is kept.

    ``store``: the store's root folder (the gateway resolves it against its home).
    ``max_queue``: records waiting in memory at most; beyond it ``submit`` drops and counts
    them. Its key (in gateway.yaml's ``log:`` section, and in error messages) is
    ``max_queued_rows``, because ``log.max_queue`` is the gateway recorder's queue of
    answered requests in front of the writer (``gateway.log_settings``).
    ``flush_rows`` / ``flush_interval_s``: the writer flushes when either is reached; a
    SIGKILL loses at most what arrived within the last interval.
    ``max_age_days`` / ``max_bytes``: retention (``enforce_retention``).
    ``compact_min_files``: a partition folder with this many small segments is compacted.
    """

    store: str = "var/store"
    max_queue: int = msgspec.field(default=100_000, name="max_queued_rows")
    flush_rows: int = 5_000
    flush_interval_s: float = 1.0
    max_age_days: float = 30
    max_bytes: int = 10 * 2**30
    compact_min_files: int = 8

    def __post_init__(self) -> None:
        keys = {field.name: field.encode_name for field in msgspec.structs.fields(self)}
        positive = ("max_queue", "flush_rows", "flush_interval_s", "max_age_days", "max_bytes")
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):  # NaN compares false to everything
                raise ValueError(
                    f"prediction log setting {keys[name]} must be a positive finite number, "
                    f"got {value!r}"
                )
        if self.compact_min_files < 2:
            raise ValueError("prediction log setting compact_min_files must be >= 2")
