"""Every shell example of the README runs against a real runtime and prints what it says.

A ```sh block runs as one bash script (``set -euo pipefail``); when a ```json block
follows it, the script's last line of output must equal that JSON (floats to 6 significant
digits). ``localhost:8001`` is rewritten to the test runtime's address and ``/tmp/`` to a
temporary folder; the commands run as written, in the environment of a reader who followed
the README's ``. .venv/bin/activate`` (``activated_environment``). Examples that
need the whole system (``make up``, the gateway on ``localhost:8000``) are not run here;
test_gateway_tour.py runs the gateway's.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.processes import RunningProcess, activated_environment
from tests.e2e.test_gateway_tour import MARKED

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"```(\w+)\n(.*?)```", re.DOTALL)


def examples(markdown: Path) -> list[tuple[str, Any]]:
    """(shell block, expected JSON or None) pairs, in document order."""
    document = markdown.read_text()
    blocks = FENCE.findall(document)
    tour = {m["code"] for m in MARKED.finditer(document)}  # test_gateway_tour.py runs those
    found = []
    for index, (language, text) in enumerate(blocks):
        if language != "sh" or "make up" in text or "localhost:8000" in text or text in tour:
            continue
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        expected = json.loads(following[1]) if following and following[0] == "json" else None
        found.append((text, expected))
    return found


def approx_equal(actual: Any, expected: Any) -> bool:
    if isinstance(expected, float):
        return isinstance(actual, float) and math.isclose(actual, expected, rel_tol=1e-6)
    if isinstance(expected, dict):
        return (
            isinstance(actual, dict)
            and actual.keys() == expected.keys()
            and all(approx_equal(actual[k], v) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(expected)
            and all(approx_equal(a, e) for a, e in zip(actual, expected, strict=True))
        )
    return bool(actual == expected)


README_EXAMPLES = examples(ROOT / "README.md")


def test_the_readme_has_examples() -> None:
    assert len(README_EXAMPLES) >= 6


def test_the_readme_says_to_activate_the_venv_before_its_first_driftgate_command() -> None:
    """The examples run in an activated environment (``activated_environment``); a reader's
    shell is one only if the README says so before it first runs ``driftgate``."""
    readme = (ROOT / "README.md").read_text()
    first_command = re.search(r"^driftgate ", readme, flags=re.MULTILINE)
    activation = readme.find(". .venv/bin/activate")

    assert first_command is not None
    assert 0 <= activation < first_command.start()


@pytest.mark.java  # the tour includes the PMML model
@pytest.mark.parametrize(
    ("block", "expected"), README_EXAMPLES, ids=[f"readme-{i}" for i in range(len(README_EXAMPLES))]
)
def test_readme_example(
    runtime_server: RunningProcess, tmp_path: Path, block: str, expected: Any
) -> None:
    address = runtime_server.url.removeprefix("http://")
    script = block.replace("localhost:8001", address).replace("/tmp/", f"{tmp_path}/")
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=activated_environment(),
    )
    assert done.returncode == 0, f"{script}\n{done.stderr}"
    output = done.stdout.splitlines()[-1] if done.stdout.strip() else ""
    if expected is not None:
        assert approx_equal(json.loads(output), expected), output
    elif output.lstrip().startswith("{"):
        assert "error" not in json.loads(output), output
