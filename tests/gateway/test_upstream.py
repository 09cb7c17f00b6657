"""Upstream connection settings that only matter under load (gateway/upstream.py)."""

from __future__ import annotations

from driftgate.cli import RUNTIME_KEEP_ALIVE_S
from gateway.upstream import KEEPALIVE_S


def test_the_gateway_gives_up_idle_connections_before_the_runtime_closes_them() -> None:
    # Reusing a connection the runtime is closing is a reset: thousands a second at 64
    # connections when the runtime kept uvicorn's 5 s default (BENCHMARKS.md).
    assert KEEPALIVE_S < RUNTIME_KEEP_ALIVE_S
