"""Fixtures shared by the gateway tests that run whole gateways in front of fake replicas."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.gateway.fakes import FakeRuntime, GatewayFactory, gateway_factory


@pytest.fixture
def runtime() -> FakeRuntime:
    """Fake runtime replicas; a test programs them with ``runtime.behave``."""
    return FakeRuntime()


@pytest.fixture
def start(runtime: FakeRuntime) -> Iterator[GatewayFactory]:
    """Starts gateways in front of ``runtime``; they stop when the test ends."""
    with gateway_factory(runtime) as factory:
        yield factory
