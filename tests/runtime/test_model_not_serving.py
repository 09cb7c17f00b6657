"""A model that serves no version says why, in every place an engineer looks.

The repository (version policy, labels) and the readiness and status endpoints of the two
dialects that have them. Uses the tiny ``scale`` backend (tests/runtime/fakes.py).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import runtime.backends
from runtime.app import create_app
from runtime.errors import ModelNotReady, NotFound
from runtime.repository import ModelEntry, ModelRepository, ModelVersion
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
    policy = (
        "its folder is there, but the version_policy in config.yaml ({specific: [1]}) does "
        "not select it"
    )
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
    add_version(tmp_path, "padded", 1, "format: scale\n")
    (tmp_path / "padded" / "02").mkdir()
    (tmp_path / "padded" / "02" / "factor.txt").write_text("2")
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


def test_the_model_index_warns_of_a_version_folder_named_with_leading_zeros(
    client: TestClient,  # type: ignore[type-arg]
) -> None:
    """`padded/02/` beside `padded/1/` was listed nowhere: version 1 served, silently."""
    listed = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert [v["version"] for v in listed["padded"]["versions"]] == ["1"]
    assert "error" not in listed["padded"]
    assert listed["padded"]["warnings"] == [
        "version folder padded/02/ is not loaded: a version folder is named by its number "
        "without leading zeros; rename it to padded/2/"
    ]
    assert "warnings" not in listed["good"]


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


def test_a_version_left_out_by_the_default_policy_does_not_send_to_a_missing_config_yaml(
    tmp_path: Path, repository: ModelRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said "the version_policy in config.yaml does not select it" of a model without
    a config.yaml."""
    monkeypatch.setitem(runtime.backends._SUFFIXES, ".scale", "scale")
    for version in (1, 2):
        (tmp_path / "m" / str(version)).mkdir(parents=True)
        (tmp_path / "m" / str(version) / "x.scale").write_text(str(version))
    repository.scan()
    with pytest.raises(NotFound) as exc:
        repository.resolve("m", "1")
    assert exc.value.message == (
        "model 'm' has no version 1 (loaded versions: 2); its folder is there, but the "
        "version_policy ({latest: 1}, the default: the model has no config.yaml) does not "
        "select it"
    )


def test_a_version_copied_in_since_the_last_scan_is_loading_not_left_out(
    tmp_path: Path, repository: ModelRepository
) -> None:
    """It answered 404 saying that the policy does not select it (and the gateway took the
    404 for a version no replica serves); the next scan loads it."""
    add_version(tmp_path, "m", 1, "format: scale\nversion_policy: all\n")
    repository.scan()
    add_version(tmp_path, "m", 2, "format: scale\nversion_policy: all\n")
    with pytest.raises(ModelNotReady) as exc:
        repository.resolve("m", "2")
    assert exc.value.message == (
        "model 'm' version 2 is not loaded yet: its folder is new since the last scan of the "
        "repository, which loads it"
    )
    repository.scan()
    assert repository.resolve("m", "2").version == 2


def test_a_version_not_loaded_while_config_yaml_cannot_be_used_says_so(
    tmp_path: Path, repository: ModelRepository
) -> None:
    add_version(tmp_path, "m", 1, "format: scale\nversion_policy: all\n")
    repository.scan()
    add_version(tmp_path, "m", 2, "format: scale\nversion_policy: alll\n")
    repository.scan()
    with pytest.raises(ModelNotReady, match=r"has no version 2 \(loaded versions: 1\); config"):
        repository.resolve("m", "2")


def broken_versions(root: Path, model: str, versions: range, config: str) -> None:
    for version in versions:
        add_version(root, model, version, config)
        (root / model / str(version) / "factor.txt").write_text("broken")


def test_a_failure_every_version_shares_ends_the_search_for_a_stand_in(
    tmp_path: Path, repository: ModelRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """A failure of the model's (a backend: option, a signature:, a missing framework)
    loaded every version on disk at start, one after the other, each logged and listed."""
    broken_versions(tmp_path, "m", range(1, 21), "format: scale\n")
    repository.scan()
    repository.scan()
    failed = [r.getMessage() for r in caplog.records if "failed to load" in r.getMessage()]
    assert [message.split(" failed")[0] for message in failed] == [
        "model m version 20",
        "model m version 19",
    ]
    assert sorted(repository.entry("m").versions) == [19, 20]


def test_a_stand_in_is_found_past_versions_broken_in_other_ways(
    tmp_path: Path, repository: ModelRepository
) -> None:
    for version in (1, 2, 3):
        add_version(tmp_path, "m", version, "format: scale\n")
    (tmp_path / "m" / "3" / "factor.txt").write_text("broken")
    (tmp_path / "m" / "2" / "factor.txt").unlink()
    repository.scan()
    assert repository.resolve("m").version == 1


def test_a_version_left_out_by_a_config_yaml_without_a_policy_says_it_is_the_default(
    tmp_path: Path, repository: ModelRepository
) -> None:
    add_version(tmp_path, "m", 1, "format: scale\n")
    add_version(tmp_path, "m", 2, "format: scale\n")
    repository.scan()
    with pytest.raises(NotFound, match=r"in config.yaml \(\{latest: 1\}, the default when it"):
        repository.resolve("m", "1")


class LoadsAVersionWhenRead(ModelVersion):
    """A failed version whose ``error``, once read, adds a version to its model, as the scan
    thread does when it runs between two steps of a request reading the versions."""

    def __init__(self, found: ModelEntry, **fields: Any) -> None:
        self.found = found
        super().__init__(**fields)

    @property  # type: ignore[override]
    def error(self) -> str | None:
        self.found.versions.setdefault(3, ModelVersion("m", 3, self.path.parent / "3"))
        return self._error

    @error.setter
    def error(self, value: str | None) -> None:
        self._error = value


def test_why_a_model_is_not_ready_is_told_while_a_scan_changes_its_versions(
    tmp_path: Path, repository: ModelRepository
) -> None:
    """A scan adding a version while the message was written raised "dictionary changed size
    during iteration": a rare 500 for a readiness check."""
    add_version(tmp_path, "m", 2, "format: scale\n")
    repository.scan()
    found = repository.entry("m")
    failed = LoadsAVersionWhenRead(
        found, model="m", version=2, path=tmp_path / "m" / "2", error="factor.txt: broken"
    )
    found.versions = {1: dataclasses.replace(found.versions[2], version=1), 2: failed}
    message = repository.not_ready_message("m")
    assert message == "model 'm' is not ready: version 2: factor.txt: broken"
    assert sorted(found.versions) == [1, 2, 3]
