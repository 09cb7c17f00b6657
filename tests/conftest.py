"""Fixtures and markers shared by every test package.

Tests that need a binary carry a marker: ``java`` (PMML) and ``prometheus`` (prometheus,
promtool, alertmanager). Without the binary they skip with the reason, except under
``CI=true``, where a missing binary fails the test: CI must install what the tests need.

``demo_repository`` builds the demo model repository (``runtime.demo``) once per test
session: real files of every format, trained from bundled data, in about half a minute.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from runtime.backends.pmml import find_java

# TensorFlow reads these when it is first imported (by the demo build or a backend).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


@pytest.fixture(scope="session")
def demo_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo model repository, built once per session (``models/<name>/<version>/``)."""
    from runtime.demo import build_demo_repository

    root = tmp_path_factory.mktemp("demo") / "models"
    build_demo_repository(root)
    return root


_BINARIES = {
    "java": (lambda: find_java() is not None, "apt-get install default-jre-headless"),
    "prometheus": (
        lambda: all(shutil.which(b) for b in ("prometheus", "promtool")),
        "apt-get install prometheus",
    ),
}


def pytest_runtest_setup(item: pytest.Item) -> None:
    # A hook, not a fixture: it runs before module-scoped fixtures that need the binary.
    for marker, (available, install) in _BINARIES.items():
        if item.get_closest_marker(marker) is None or available():
            continue
        reason = f"needs the '{marker}' binary, which is not installed here: {install}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: a missing binary fails the run)")
        pytest.skip(reason)
