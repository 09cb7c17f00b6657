"""Fixtures shared by every test package.

``demo_repository`` builds the demo model repository (``runtime.demo``) once per test
session: real files of every format, trained from bundled data, in about half a minute.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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
