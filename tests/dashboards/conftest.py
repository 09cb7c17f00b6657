"""The observed system of this package: a real ``driftgate up`` under traffic (traffic.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dashboards.traffic import ObservedSystem, observed_system


@pytest.fixture(scope="package")
def observed(
    demo_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ObservedSystem]:
    """Started by the first test here that asks for it, stopped with its traffic after the
    last test of this package: it never loads the machine under other packages' tests."""
    with observed_system(demo_repository, tmp_path_factory.mktemp("up-observed")) as system:
        yield system
