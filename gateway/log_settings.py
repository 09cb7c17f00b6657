"""The ``log:`` section of gateway.yaml: what the prediction log keeps and where.

```yaml
log:
  enabled: true            # `false` switches recording off; so does leaving out `log:`
  store: store             # Parquet segments + driftgate.duckdb (relative to gateway.yaml)
  sampling: {default: 1.0, routes: {titanic: 0.25}}   # errors and shadowed requests: always
  keep_image_bytes: false  # image uploads are logged as digest + size unless true
  max_queue: 10000         # exchanges waiting to be parsed; beyond: dropped and counted
  flush_rows: 5000         # the writer's settings (monitoring.prediction_log.LogSettings)
  flush_interval_s: 1.0
  max_age_days: 30
  max_bytes: 10737418240
```
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from monitoring.prediction_log import LogSettings
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
    if section.pop("enabled", True) is False:
        return None
    sampling = section.pop("sampling", None) or {}
    keep_image_bytes = section.pop("keep_image_bytes", False)
    max_queue = section.pop("max_queue", 10_000)
    if not isinstance(sampling, dict) or set(sampling) - {"default", "routes"}:
        raise ValueError("log.sampling: expected {default: RATE, routes: {ROUTE: RATE}}")
    if not isinstance(max_queue, int) or max_queue <= 0:
        raise ValueError(f"log.max_queue: expected a positive integer, got {max_queue!r}")
    try:
        writer = msgspec.convert(section, LogSettings)
    except msgspec.ValidationError as exc:
        raise ValueError(f"log: {exc}") from None
    routes: Mapping[str, float] = sampling.get("routes") or {}
    policy = SamplingPolicy(
        float(sampling.get("default", 1.0)), {k: float(v) for k, v in routes.items()}
    )
    return RecordingSettings(
        store=(base / writer.store).resolve(),
        writer=writer,
        sampling=policy,
        keep_image_bytes=bool(keep_image_bytes),
        max_queue=max_queue,
    )
