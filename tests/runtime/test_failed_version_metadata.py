"""``GET /v2/models/{m}[/versions/{v}]`` of a version that failed to load: 200, as for every
version, with its state, its error and the platform its config.yaml or files say (the one a
loaded version of that format reports), and no inputs or outputs, which only a loaded model
tells. ``GET .../ready`` is the check that answers 503.

Uses the tiny ``scale`` backend (tests/runtime/fakes.py), found by a ``.scale`` suffix.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import runtime.backends
from runtime.app import create_app
from runtime.settings import RuntimeSettings


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def client(
    tmp_path: Path, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:  # type: ignore[type-arg]
    monkeypatch.setitem(runtime.backends._SUFFIXES, ".scale", "scale")
    write(tmp_path / "m" / "config.yaml", "version_policy: all\n")
    write(tmp_path / "m" / "1" / "x.scale", "2")
    write(tmp_path / "m" / "2" / "x.scale", "broken")  # its format from the suffix
    write(tmp_path / "m" / "3" / "README.md", "the model is on its way\n")  # no format at all
    write(tmp_path / "pinned" / "config.yaml", "format: scale\n")
    write(tmp_path / "pinned" / "1" / "a.txt", "2")  # format: from config.yaml; 2 files
    write(tmp_path / "pinned" / "1" / "b.txt", "3")
    settings = RuntimeSettings(repository=tmp_path, poll_interval_s=0)
    with TestClient(create_app(settings, span_exporter=spans)) as test_client:
        for _ in range(200):
            if test_client.get("/v2/health/ready").status_code == 200:
                break
        yield test_client


def test_a_failed_version_says_the_platform_a_loaded_one_of_its_format_says(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    """It said `platform: ""` whatever the files were."""
    loaded = client.get("/v2/models/m/versions/1")
    assert loaded.status_code == 200
    assert loaded.json()["platform"] == "scale" and loaded.json()["state"] == "READY"
    failed = client.get("/v2/models/m/versions/2")
    assert failed.status_code == 200
    body = failed.json()
    assert body == {
        "name": "m",
        "versions": ["1", "2", "3"],
        "platform": "scale",
        "inputs": [],
        "outputs": [],
        "state": "UNAVAILABLE",
        "error": body["error"],
    }
    assert body["error"].endswith("x.scale: ValueError: x.scale is not a number")
    assert client.get("/v2/models/m/versions/2/ready").status_code == 503


def test_the_format_config_yaml_sets_is_the_platform_when_the_artefact_is_not_found(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    body = client.get("/v2/models/pinned").json()
    assert (body["platform"], body["state"]) == ("scale", "UNAVAILABLE")
    assert "holds 2 files (a.txt, b.txt)" in body["error"]


def test_a_version_whose_files_do_not_say_a_format_has_no_platform(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    body = client.get("/v2/models/m/versions/3").json()
    assert (body["platform"], body["state"]) == ("", "UNAVAILABLE")
    assert "no model artefact in" in body["error"]
