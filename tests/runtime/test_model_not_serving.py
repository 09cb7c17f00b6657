"""A model that serves no version says why, in every place an engineer looks.

The repository (version policy, labels) and the readiness and status endpoints of the two
dialects that have them. Uses the tiny ``scale`` backend (tests/runtime/fakes.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from runtime.app import create_app
from runtime.errors import ModelNotReady, NotFound
from runtime.repository import ModelRepository
from runtime.settings import RuntimeSettings


def add_version(root: Path, model: str, version: int, config: str) -> None:
    (root / model / str(version)).mkdir(parents=True, exist_ok=True)
    (root / model / str(version) / "factor.txt").write_text(str(version))
    (root / model / "config.yaml").write_text(config)


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[ModelRepository]:
    repo = ModelRepository(tmp_path)
    yield repo
    repo.close()


def test_a_policy_that_selects_no_folder_keeps_the_loaded_versions_serving(
    tmp_path: Path, repository: ModelRepository
) -> None:
    """`specific: [5]` before 5/ was copied in unloaded every version: nothing served."""
    add_version(tmp_path, "m", 1, "format: scale\n")
    add_version(tmp_path, "m", 2, "format: scale\n")
    repository.scan()
    assert repository.resolve("m").version == 2
    (tmp_path / "m" / "config.yaml").write_text("format: scale\nversion_policy: {specific: [5]}\n")
    repository.scan()
    assert repository.resolve("m").version == 2
    error = repository.config_errors()["m"]
    assert (
        "config.yaml: version_policy {specific: [5]} selects none of the version folders" in error
    )
    assert "(1, 2); versions already loaded keep serving" in error
    add_version(tmp_path, "m", 5, "format: scale\nversion_policy: {specific: [5]}\n")
    repository.scan()
    assert repository.resolve("m").version == 5
    assert repository.config_errors() == {}
    assert sorted(repository.entry("m").versions) == [5]


def test_a_policy_that_selects_no_folder_at_start_says_so(
    tmp_path: Path, repository: ModelRepository
) -> None:
    add_version(tmp_path, "m", 1, "format: scale\nversion_policy: {specific: [3]}\n")
    repository.scan()
    with pytest.raises(ModelNotReady, match=r"\{specific: \[3\]\} selects none of the version"):
        repository.resolve("m")


def test_a_label_or_version_the_policy_leaves_out_says_why_it_is_not_there(
    tmp_path: Path, repository: ModelRepository
) -> None:
    """It said "model 'm' has no version canary", as if the label did not exist."""
    config = "format: scale\nversion_policy: {specific: [1]}\nlabels: {stable: 1, canary: 2}\n"
    add_version(tmp_path, "m", 1, config)
    add_version(tmp_path, "m", 2, config)
    repository.scan()
    policy = "its folder is there, but the version_policy in config.yaml does not select it"
    with pytest.raises(NotFound) as label:
        repository.resolve("m", "canary")
    assert label.value.message == (
        f"model 'm' has no version 2 (label 'canary') (loaded versions: 1); {policy}"
    )
    with pytest.raises(NotFound) as number:
        repository.resolve("m", "2")
    assert number.value.message == f"model 'm' has no version 2 (loaded versions: 1); {policy}"
    with pytest.raises(NotFound) as absent:
        repository.resolve("m", "9")
    assert absent.value.message == "model 'm' has no version 9 (loaded versions: 1)"


@pytest.fixture
def client(tmp_path: Path, spans: InMemorySpanExporter) -> Iterator[TestClient]:  # type: ignore[type-arg]
    add_version(tmp_path, "good", 1, "format: scale\n")
    add_version(tmp_path, "typo", 1, "format: scale\nversoin_policy: all\n")
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "model.onnx").write_bytes(b"")  # beside, not inside, a version folder
    settings = RuntimeSettings(repository=tmp_path, poll_interval_s=0)
    with TestClient(create_app(settings, span_exporter=spans)) as test_client:
        for _ in range(200):
            if test_client.get("/v2/health/ready").status_code == 200:
                break
        yield test_client


TYPO = "model 'typo' is not ready: "
BARE = "model 'bare' has no version to serve: no numeric version folder (bare/1/, bare/2/, ...)"


def test_oip_readiness_says_why_a_model_is_not_ready(client: TestClient) -> None:  # type: ignore[type-arg]
    """It said only "model 'typo' is not ready"."""
    typo = client.get("/v2/models/typo/ready")
    assert typo.status_code == 503
    assert typo.json()["error"].startswith(TYPO)
    assert "unknown key(s) ['versoin_policy']" in typo.json()["error"]
    bare = client.get("/v2/models/bare/ready")
    assert bare.status_code == 503 and bare.json()["error"].startswith(BARE)
    assert client.get("/v2/models/good/ready").json() == {"name": "good", "ready": True}


def test_oip_metadata_of_a_model_without_versions_is_unavailable_not_loading(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    """It said state LOADING and error null, forever."""
    metadata = client.get("/v2/models/bare").json()
    assert metadata["state"] == "UNAVAILABLE"
    assert metadata["error"].startswith(BARE)


def test_tfserving_status_of_a_model_without_versions_says_why(client: TestClient) -> None:  # type: ignore[type-arg]
    """It answered 200 with an empty model_version_status: the config error was hidden."""
    typo = client.get("/v1/models/typo")
    assert typo.status_code == 503
    assert typo.json()["error"].startswith(TYPO)
    bare = client.get("/v1/models/bare")
    assert bare.status_code == 503 and bare.json()["error"].startswith(BARE)
    good = client.get("/v1/models/good").json()["model_version_status"]
    assert [entry["state"] for entry in good] == ["AVAILABLE"]


def test_a_start_with_a_broken_newest_version_serves_the_one_before(
    tmp_path: Path, repository: ModelRepository
) -> None:
    """A restart (a new replica) found version 2 broken and served nothing at all, where the
    running replicas went on serving version 1."""
    add_version(tmp_path, "m", 1, "format: scale\n")
    add_version(tmp_path, "m", 2, "format: scale\n")
    (tmp_path / "m" / "2" / "factor.txt").write_text("broken")
    repository.scan()
    assert repository.resolve("m").version == 1
    with pytest.raises(ModelNotReady, match="version 2 is unavailable"):
        repository.resolve("m", "2")
    (tmp_path / "m" / "2" / "factor.txt").write_text("4")
    os.utime(tmp_path / "m" / "2", (1, 2_000_000_000))  # a later fingerprint
    repository.scan()
    assert repository.resolve("m").version == 2
    assert sorted(repository.entry("m").versions) == [2]  # the stand-in is unloaded


def test_a_specific_policy_gets_no_stand_in(tmp_path: Path, repository: ModelRepository) -> None:
    """A pinned version is what the engineer asked for: no other version answers for it."""
    add_version(tmp_path, "m", 1, "format: scale\nversion_policy: {specific: [2]}\n")
    add_version(tmp_path, "m", 2, "format: scale\nversion_policy: {specific: [2]}\n")
    (tmp_path / "m" / "2" / "factor.txt").write_text("broken")
    repository.scan()
    with pytest.raises(ModelNotReady, match=r"version 2: .*factor\.txt: ValueError"):
        repository.resolve("m")
    assert sorted(repository.entry("m").versions) == [2]


def test_the_model_index_lists_a_folder_without_versions_with_the_reason(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    """`--repository models/risk` (a model folder) answered {"models": []}, saying nothing."""
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert listed["bare"]["versions"] == []
    assert listed["bare"]["error"].startswith(BARE)
    assert "error" not in listed["good"]


def test_a_model_that_serves_nothing_is_a_not_ready_series_for_its_alert(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    """A folder without versions had no driftgate_model_ready series at all, so
    DriftgateModelLoadFailure (driftgate_model_ready == 0) never fired for it."""
    scraped = client.get("/metrics").text
    assert 'driftgate_model_ready{model="bare",version=""} 0.0' in scraped
    assert 'driftgate_model_ready{model="typo",version=""} 0.0' in scraped
    assert 'driftgate_model_ready{model="good",version="1"} 1.0' in scraped
    assert 'model="good",version=""' not in scraped


def test_a_model_folder_without_versions_is_logged_once(
    tmp_path: Path, repository: ModelRepository, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.onnx").write_bytes(b"")
    repository.scan()
    repository.scan()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [
        "model '1' has no version to serve: no numeric version folder (1/1/, 1/2/, ...) with "
        "the model inside; a model's files go in a numbered version folder (1/1/...) inside "
        "it, and --repository names the folder that holds the model folders"
    ]
