from __future__ import annotations

from pathlib import Path

import pytest

from runtime.config import (
    ConfigError,
    VersionPolicy,
    load_model_config,
    parse_model_config,
    select_versions,
)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (VersionPolicy(), [3]),
        (VersionPolicy(kind="latest", count=2), [2, 3]),
        (VersionPolicy(kind="all"), [1, 2, 3]),
        (VersionPolicy(kind="specific", versions=(1, 3, 9)), [1, 3]),
    ],
)
def test_select_versions_follows_the_policy(policy: VersionPolicy, expected: list[int]) -> None:
    assert select_versions(policy, [3, 1, 2]) == expected


def test_select_versions_with_nothing_on_disk() -> None:
    assert select_versions(VersionPolicy(), []) == []


def test_config_keys_are_parsed() -> None:
    config = parse_model_config(
        {
            "format": "onnx",
            "signature": "serving_default",
            "version_policy": {"specific": [2, 1]},
            "labels": {"stable": 1, "canary": 2},
            "backend": {"intra_op_threads": 2},
        }
    )
    assert config.format == "onnx"
    assert config.version_policy == VersionPolicy(kind="specific", versions=(1, 2))
    assert config.labels == {"stable": 1, "canary": 2}
    assert config.backend_options() == {"intra_op_threads": 2, "signature": "serving_default"}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"formt": "onnx"}, "unknown key(s) ['formt']"),
        ({"format": "torch"}, "format 'torch' is not one of"),
        ({"version_policy": {"latest": 0}}, "version_policy must be one of"),
        ({"version_policy": {"newest": 1}}, "version_policy must be one of"),
        ({"labels": {"stable": "one"}}, "labels must map names to version numbers"),
        ({"image": [1, 2]}, "'image' must be a mapping"),
        # Checked when the config is read: these reached requests and answered 500.
        ({"image": {"width": 0, "height": 8}}, "image.width must be a positive integer, got 0"),
        ({"image": {"width": 8, "height": 8, "scale": "x"}}, "image.scale must be"),
    ],
)
def test_bad_config_is_refused_with_the_key_named(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=r"config\.yaml") as info:
        parse_model_config(raw)
    assert message in str(info.value)


def test_missing_config_file_means_defaults(tmp_path: Path) -> None:
    assert load_model_config(tmp_path).version_policy == VersionPolicy()


def test_invalid_yaml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("labels: [unclosed")
    with pytest.raises(ConfigError, match=r"config.yaml: not valid YAML"):
        load_model_config(tmp_path)
