"""Importing and constructing backends imports no ML framework (``import runtime`` stays cheap)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
SCRIPT = """
import sys
from runtime.backends import create_backend
for fmt in ("onnx", "savedmodel", "keras", "pmml"):
    create_backend(fmt, {})
heavy = ("tensorflow", "keras", "onnxruntime", "pypmml", "jpype", "py4j", "h5py")
print(",".join(name for name in heavy if name in sys.modules))
"""


def test_backends_import_their_framework_only_in_load() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.strip() == ""
