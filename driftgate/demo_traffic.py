"""``driftgate demo traffic``: titanic passengers through the gateway, optionally shifted.

For the tour and for trying the drift job by hand: it draws passengers from the bundled
training set (with replacement, seeded), multiplies the numeric features named in
``--scale`` (``fare=4`` quadruples every fare), and sends them to the gateway's titanic
route in eval's column form, with a token minted from gateway.yaml's key (subject
``demo-traffic``, so the A/B split keeps it on one arm).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

SUBJECT = "demo-traffic"


def parse_scales(items: Sequence[str]) -> dict[str, float]:
    """``["fare=4"]`` -> ``{"fare": 4.0}``; raises ValueError naming a bad item."""
    from runtime.demo.titanic_data import NUMERIC_FEATURES

    scales = {}
    for item in items:
        name, _, factor = item.partition("=")
        if name not in NUMERIC_FEATURES:
            raise ValueError(f"--scale {item}: expected one of {', '.join(NUMERIC_FEATURES)}")
        try:
            scales[name] = float(factor)
        except ValueError:
            scales[name] = math.nan
        if not math.isfinite(scales[name]):
            raise ValueError(f"--scale {item}: expected FEATURE=NUMBER, e.g. fare=4")
    return scales


def passengers(count: int, seed: int, scales: Mapping[str, float]) -> dict[str, list[list[Any]]]:
    """``count`` training-set passengers as eval's column form (missing values as null)."""
    from runtime.demo.titanic_data import load_titanic

    data = load_titanic("reference")
    picked = np.random.default_rng(seed).integers(0, len(data), size=count)
    columns: dict[str, list[list[Any]]] = {}
    for name, values in data.columns.items():
        chosen = values[picked] * scales.get(name, 1.0) if name in scales else values[picked]
        columns[name] = [[_json(value)] for value in chosen]
    return columns


def send_traffic(
    url: str,
    config: Path,
    *,
    requests: int,
    rows_per_request: int,
    scales: Mapping[str, float],
    seed: int = 0,
) -> Counter[int]:
    """Send the requests; returns how many got each HTTP status."""
    from gateway.auth import mint_token
    from gateway.settings import GatewaySettings

    settings = GatewaySettings.from_file(config)
    headers = {}
    if settings.auth.enabled:
        token = mint_token(settings.auth, SUBJECT, ["predict"], 600)
        headers["authorization"] = f"Bearer {token}"
    statuses: Counter[int] = Counter()
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        for index in range(requests):
            body = passengers(rows_per_request, seed + index, scales)
            statuses[client.post("/v1/models/titanic/eval", json=body).status_code] += 1
    return statuses


def _json(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value
