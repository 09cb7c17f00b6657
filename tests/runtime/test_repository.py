from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from runtime.errors import ModelNotReady, NotFound
from runtime.repository import ModelRepository, VersionState


def add_version(root: Path, model: str, version: int, content: str, config: str = "") -> Path:
    model_dir = root / model
    (model_dir / str(version)).mkdir(parents=True, exist_ok=True)
    (model_dir / "config.yaml").write_text(config or "format: scale\n")
    artefact = model_dir / str(version) / "factor.txt"
    artefact.write_text(content)
    return artefact


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[ModelRepository]:
    repo = ModelRepository(tmp_path)
    yield repo
    repo.close()


def test_latest_version_serves_by_default_and_every_loaded_version_is_addressable(
    tmp_path: Path, repository: ModelRepository
) -> None:
    add_version(tmp_path, "double", 1, "2", "format: scale\nversion_policy: all\n")
    add_version(tmp_path, "double", 2, "3", "format: scale\nversion_policy: all\n")
    repository.scan()
    assert repository.resolve("double").version == 2
    assert repository.resolve("double", "1").version == 1


def test_labels_resolve_to_versions(tmp_path: Path, repository: ModelRepository) -> None:
    config = "format: scale\nversion_policy: all\nlabels: {stable: 1, canary: 2}\n"
    add_version(tmp_path, "m", 1, "1", config)
    add_version(tmp_path, "m", 2, "2", config)
    repository.scan()
    assert repository.resolve("m", "stable").version == 1
    assert repository.resolve("m", "canary").version == 2
    with pytest.raises(NotFound, match="no version or label 'beta'"):
        repository.resolve("m", "beta")


def test_unknown_model_and_version_are_not_found(
    tmp_path: Path, repository: ModelRepository
) -> None:
    add_version(tmp_path, "m", 1, "1")
    repository.scan()
    with pytest.raises(NotFound, match="unknown model 'nope'; served models: m"):
        repository.resolve("nope")
    with pytest.raises(NotFound, match="model 'm' has no version 7"):
        repository.resolve("m", "7")


@pytest.mark.parametrize("version", ["\u00b2", "\u0661", "\uff11", "9" * 5000, "9" * 19])
def test_versions_that_are_no_int64_number_are_not_found(
    tmp_path: Path, repository: ModelRepository, version: str
) -> None:
    """U+00B2 passes str.isdigit() but not int(); U+0661 and U+FF11 read as 1; 5000 digits
    pass int()'s limit. Each was a 500, or another version's answer."""
    add_version(tmp_path, "m", 1, "1")
    repository.scan()
    with pytest.raises(NotFound, match="has no version or label"):
        repository.resolve("m", version)


def test_version_folders_that_are_no_int64_number_are_ignored(
    tmp_path: Path, repository: ModelRepository
) -> None:
    add_version(tmp_path, "m", 1, "1")
    for name in ["\u00b2", "\u0661", "9" * 19]:
        (tmp_path / "m" / name).mkdir()
        (tmp_path / "m" / name / "factor.txt").write_text("5")
    repository.scan()
    assert repository.resolve("m").version == 1
    assert sorted(repository.entry("m").versions) == [1]


def test_a_model_folder_without_versions_says_so(
    tmp_path: Path, repository: ModelRepository
) -> None:
    """Not "is loading", which it never stops being."""
    (tmp_path / "empty").mkdir()
    repository.scan()
    with pytest.raises(ModelNotReady, match="model 'empty' has no version to serve"):
        repository.resolve("empty")


def test_a_config_that_is_not_utf8_is_that_models_problem_only(
    tmp_path: Path, repository: ModelRepository
) -> None:
    """It escaped the scan: the runtime never became ready and served no model at all."""
    add_version(tmp_path, "good", 1, "2")
    add_version(tmp_path, "bad", 1, "2")
    (tmp_path / "bad" / "config.yaml").write_bytes(b"labels: {st\xff\xfe: 1}\n")
    repository.scan()
    assert repository.is_ready()
    assert repository.resolve("good").version == 1
    with pytest.raises(ModelNotReady, match=r"bad/config.yaml: not UTF-8 text"):
        repository.resolve("bad")
    assert repository.config_errors().keys() == {"bad"}
    assert sorted(repository.readiness()) == [("bad", "", False), ("good", "1", True)]


def test_an_unexpected_failure_reading_one_model_spares_the_others(
    tmp_path: Path, repository: ModelRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    from runtime.config import version_folders

    add_version(tmp_path, "a_broken", 1, "2")
    add_version(tmp_path, "z_fine", 1, "3")

    def failing(model_dir: Path) -> list[int]:
        if model_dir.name == "a_broken":
            raise RuntimeError("disk says no")
        return version_folders(model_dir)

    monkeypatch.setattr("runtime.repository.version_folders", failing)
    repository.scan()
    assert repository.resolve("z_fine").version == 1
    with pytest.raises(ModelNotReady, match="its folder could not be read: RuntimeError"):
        repository.resolve("a_broken")


def test_new_version_replaces_old_only_once_ready(
    tmp_path: Path, repository: ModelRepository
) -> None:
    add_version(tmp_path, "m", 1, "2")
    repository.scan()
    first = repository.resolve("m")
    add_version(tmp_path, "m", 2, "5")
    repository.scan()
    assert repository.resolve("m").version == 2
    assert [v.version for v in repository.all_versions()] == [2]
    assert first.backend is not None and first.backend.unloaded == 1  # type: ignore[attr-defined]


def test_broken_new_version_keeps_the_old_one_serving(
    tmp_path: Path, repository: ModelRepository
) -> None:
    add_version(tmp_path, "m", 1, "2")
    repository.scan()
    add_version(tmp_path, "m", 2, "broken")
    repository.scan()
    assert repository.resolve("m").version == 1
    with pytest.raises(
        ModelNotReady, match=r"version 2 is unavailable: \S+/m/2/factor.txt: ValueError"
    ):
        repository.resolve("m", "2")
    states = {v.version: v.state for v in repository.all_versions()}
    assert states == {1: VersionState.READY, 2: VersionState.FAILED}


@pytest.mark.parametrize(
    ("image", "error"),
    [
        ("{input: pixels, width: 1, height: 1}", "image.input 'pixels' is not one of the inputs"),
        ("{width: 8, height: 8}", "cannot feed input 'x'"),
    ],
)
def test_an_image_section_that_cannot_feed_the_model_fails_its_load(
    tmp_path: Path, repository: ModelRepository, image: str, error: str
) -> None:
    """Found at load, not by the first image request (which answered 500)."""
    add_version(tmp_path, "m", 1, "2", f"format: scale\nimage: {image}\n")
    repository.scan()
    with pytest.raises(ModelNotReady, match=error):
        repository.resolve("m")


def test_failed_version_is_retried_when_its_files_change(
    tmp_path: Path, repository: ModelRepository
) -> None:
    artefact = add_version(tmp_path, "m", 1, "broken")
    repository.scan()
    with pytest.raises(ModelNotReady, match=r"is not ready: version 1: \S+/factor.txt: ValueError"):
        repository.resolve("m")
    artefact.write_text("4")
    import os

    os.utime(artefact, (artefact.stat().st_atime, artefact.stat().st_mtime + 5))
    repository.scan()
    assert repository.resolve("m").ready


def test_a_version_that_failed_because_of_its_config_is_retried_when_the_config_is_fixed(
    tmp_path: Path, repository: ModelRepository
) -> None:
    """Only the version folder was watched: a fixed config.yaml waited for a restart."""
    import os

    add_version(tmp_path, "m", 1, "2", "format: scale\nimage: {width: 8, height: 8}\n")
    repository.scan()
    with pytest.raises(ModelNotReady, match="cannot feed input 'x'"):
        repository.resolve("m")
    config = tmp_path / "m" / "config.yaml"
    config.write_text("format: scale\nimage: {width: 1, height: 1}\n")
    os.utime(config, (config.stat().st_atime, config.stat().st_mtime + 5))
    repository.scan()
    assert repository.resolve("m").ready


def test_a_broken_model_never_affects_another(tmp_path: Path, repository: ModelRepository) -> None:
    add_version(tmp_path, "good", 1, "1")
    add_version(tmp_path, "bad", 1, "broken")
    (tmp_path / "worse").mkdir()
    (tmp_path / "worse" / "config.yaml").write_text("format: [")
    repository.scan()
    assert repository.resolve("good").ready
    with pytest.raises(ModelNotReady, match="not valid YAML"):
        repository.resolve("worse")


def test_removed_model_and_version_folders_unload(
    tmp_path: Path, repository: ModelRepository
) -> None:
    import shutil

    add_version(tmp_path, "m", 1, "1", "format: scale\nversion_policy: all\n")
    add_version(tmp_path, "m", 2, "1", "format: scale\nversion_policy: all\n")
    add_version(tmp_path, "other", 1, "1")
    repository.scan()
    shutil.rmtree(tmp_path / "m" / "2")
    shutil.rmtree(tmp_path / "other")
    repository.scan()
    assert repository.names() == ["m"]
    assert [v.version for v in repository.all_versions()] == [1]


def test_a_replaced_version_unloads_only_after_its_last_request_releases_it(
    tmp_path: Path, repository: ModelRepository
) -> None:
    add_version(tmp_path, "m", 1, "2")
    repository.scan()
    in_flight = repository.acquire("m")
    add_version(tmp_path, "m", 2, "3")
    repository.scan()
    assert repository.resolve("m").version == 2
    assert in_flight.backend is not None
    assert in_flight.backend.unloaded == 0  # type: ignore[attr-defined]
    repository.release(in_flight)
    assert in_flight.backend.unloaded == 1  # type: ignore[attr-defined]


RENAME_007 = (
    "version folder m/007/ is not loaded: a version folder is named by its number without "
    "leading zeros; rename it to m/7/"
)


def warnings_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def test_a_version_folder_with_leading_zeros_is_not_loaded_and_says_to_rename_it(
    tmp_path: Path, repository: ModelRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """`007/` failed as version 7 with "FileNotFoundError: ... m/7"; as in Triton, a padded
    name is not guessed to be a number."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.yaml").write_text("format: scale\n")
    (tmp_path / "m" / "007").mkdir()
    (tmp_path / "m" / "007" / "factor.txt").write_text("2")
    repository.scan()
    repository.scan()
    with pytest.raises(ModelNotReady) as failed:
        repository.resolve("m")
    assert failed.value.message == f"model 'm' has no version to serve: {RENAME_007}"
    assert warnings_logged(caplog) == [f"model m: {RENAME_007}"]
    assert list(repository.readiness()) == [("m", "", False)]
    (tmp_path / "m" / "007").rename(tmp_path / "m" / "7")
    repository.scan()
    assert repository.resolve("m").version == 7
    assert repository.entry("m").misnamed == {}


def test_a_padded_folder_beside_served_versions_is_named_when_its_number_is_asked_for(
    tmp_path: Path, repository: ModelRepository
) -> None:
    """Version 7 was a failed version, and the message blamed a folder m/7 nobody made."""
    add_version(tmp_path, "m", 1, "2")
    (tmp_path / "m" / "007").mkdir()
    (tmp_path / "m" / "007" / "factor.txt").write_text("3")
    repository.scan()
    assert repository.resolve("m").version == 1
    assert sorted(repository.entry("m").versions) == [1]
    with pytest.raises(NotFound) as failed:
        repository.resolve("m", "7")
    assert failed.value.message == (
        f"model 'm' has no version 7 (loaded versions: 1); {RENAME_007}"
    )


def test_padded_folders_that_read_as_a_version_on_disk_clash(
    tmp_path: Path, repository: ModelRepository, caplog: pytest.LogCaptureFixture
) -> None:
    """`007/` beside `7/` was ignored without a word."""
    add_version(tmp_path, "m", 7, "2")
    for name in ("007", "07"):
        (tmp_path / "m" / name).mkdir()
        (tmp_path / "m" / name / "factor.txt").write_text("3")
    repository.scan()
    assert repository.resolve("m").version == 7
    assert repository.resolve("m").path == tmp_path / "m" / "7"
    assert warnings_logged(caplog) == [
        "model m: version folders m/007/ and m/07/ are not loaded: a version folder is named "
        "by its number without leading zeros, and m/7/ is version 7: they clash; remove "
        "m/007/ and m/07/ or rename to a number no other folder has"
    ]
