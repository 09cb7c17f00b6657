"""The ``log:`` section of gateway.yaml: what the prediction log keeps and where.

```yaml
log:
  enabled: true            # `false` switches recording off; so does leaving out `log:`
  store: store             # Parquet segments + driftgate.duckdb (relative to gateway.yaml)
  sampling: {default: 1.0, routes: {titanic: 0.25}}   # errors and shadowed requests: always
  keep_image_bytes: false  # image uploads are logged as digest + size unless true
  max_queue: 10000         # exchanges waiting to be parsed; beyond: dropped and counted
  max_queued_rows: 100000  # the writer's settings (monitoring.prediction_log.LogSettings):
  flush_rows: 5000         # rows waiting to be written, then when to write them
  flush_interval_s: 1.0
  max_age_days: 30
  max_bytes: 10737418240
```

Switches (``enabled``, ``keep_image_bytes``) are YAML booleans, not strings; counts are
whole numbers; rates are numbers between 0 and 1. ``store_problem`` says whether the store
folder can be used (it is I/O, so it is not part of parsing): the gateway and the
scheduled jobs create the store when it is missing, read-only commands (``driftgate sql``,
``driftgate jobs --once``) refuse a folder that is not one.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from monitoring.prediction_log import LogSettings
from monitoring.prediction_log.layout import CATALOG_FILE, PREDICTIONS
from monitoring.sampling import SamplingPolicy


@dataclass(frozen=True)
class RecordingSettings:
    store: Path
    writer: LogSettings
    sampling: SamplingPolicy = field(default_factory=SamplingPolicy)
    keep_image_bytes: bool = False
    max_queue: int = 10_000


def parse_log_section(raw: Any, base: Path) -> RecordingSettings | None:
    """``None`` when recording is switched off; ``ValueError`` naming the key otherwise."""
    if raw is None:
        return None  # no section: no recording (and no files written where nobody asked)
    if not isinstance(raw, dict):
        raise ValueError("log: expected a mapping")
    section = dict(raw)
    if not _switch(section.pop("enabled", True), "log.enabled"):
        return None
    sampling = section.pop("sampling", None)
    sampling = {} if sampling is None else sampling
    keep_image_bytes = _switch(section.pop("keep_image_bytes", False), "log.keep_image_bytes")
    max_queue = section.pop("max_queue", 10_000)
    if not isinstance(sampling, dict) or set(sampling) - {"default", "routes"}:
        raise ValueError(
            f"log.sampling: expected {{default: RATE, routes: {{ROUTE: RATE}}}}, got {sampling!r}"
        )
    if isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue <= 0:
        raise ValueError(f"log.max_queue: expected a positive whole number, got {max_queue!r}")
    try:
        writer = msgspec.convert(section, LogSettings)
    except msgspec.ValidationError as exc:
        raise ValueError(f"log: {exc}") from None
    routes = sampling.get("routes")
    routes = {} if routes is None else routes
    if not isinstance(routes, dict):
        raise ValueError(f"log.sampling.routes: expected {{ROUTE: RATE}}, got {routes!r}")
    policy = SamplingPolicy(
        _rate(sampling.get("default", 1.0), "log.sampling.default"),
        {str(k): _rate(v, f"log.sampling.routes.{k}") for k, v in routes.items()},
    )
    return RecordingSettings(
        store=(base / writer.store).resolve(),
        writer=writer,
        sampling=policy,
        keep_image_bytes=keep_image_bytes,
        max_queue=max_queue,
    )


def store_problem(store: Path, *, create: bool) -> str | None:
    """What is wrong with ``store`` as the prediction log's folder, or None (the caller
    names where the path came from: ``log.store`` or ``--store``).

    ``create``: a missing store is made here (the gateway and the scheduled jobs, which may
    start before the gateway has made it). Otherwise the folder must already be a store
    (holding ``predictions/`` or the catalog): a read-only command pointed at a typo must
    not answer "no rows" from a new, empty store it made there.
    """
    if store.exists() and not store.is_dir():
        return f"{store} is not a folder"
    if not create:
        if not store.is_dir() or not (
            (store / PREDICTIONS).is_dir() or (store / CATALOG_FILE).is_file()
        ):
            return (
                f"no prediction log store at {store} "
                "(the gateway creates it when it starts with a `log:` section)"
            )
        return None
    try:
        store.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create {store}: {exc.strerror or exc}"
    if not os.access(store, os.W_OK | os.X_OK):
        return f"{store} is not writable"
    return None


def _switch(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    return value


def _rate(value: Any, where: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not 0 <= value <= 1
    ):
        raise ValueError(f"{where}: expected a rate between 0 and 1, got {value!r}")
    return float(value)
