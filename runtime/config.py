"""A model's ``config.yaml`` and the version policy that decides which versions to serve.

``config.yaml`` is optional and sits beside the version folders::

    models/titanic/config.yaml
    models/titanic/1/pipeline.yaml
    models/titanic/2/pipeline.yaml

Keys (all optional)::

    format: onnx                 # override artefact detection (onnx|savedmodel|keras|pmml|pipeline)
    signature: serving_default   # SavedModel signature to serve
    version_policy: {latest: 1}  # or {all: true} or {specific: [1, 2]}
    labels: {stable: 1, canary: 2}
    image: {...}                 # image preprocessing contract (see runtime.images)
    batching: {max_batch_size: 32}   # dynamic batching (runtime.batching)
    backend: {...}               # extra options passed to the backend (e.g. intra_op_threads)

``select_versions`` is a pure function of the policy and what is on disk, in the spirit of
TF Serving's ``AspiredVersionPolicy``: the repository calls it on every scan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runtime.backends import FORMATS
from runtime.batching_config import BatchingConfig
from runtime.images import ImageConfig


class ConfigError(ValueError):
    """A ``config.yaml`` that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class VersionPolicy:
    kind: str = "latest"  # latest | all | specific
    count: int = 1
    versions: tuple[int, ...] = ()

    def describe(self) -> str:
        """The policy as config.yaml writes it: ``{latest: 1}``, ``{specific: [1, 2]}``."""
        if self.kind == "all":
            return "{all: true}"
        if self.kind == "specific":
            return f"{{specific: {list(self.versions)}}}"
        return f"{{latest: {self.count}}}"


@dataclass(frozen=True)
class ModelConfig:
    format: str | None = None
    signature: str | None = None
    version_policy: VersionPolicy = VersionPolicy()
    labels: Mapping[str, int] = field(default_factory=dict)
    image: ImageConfig | None = None  # image bodies for eval (runtime.images)
    batching: BatchingConfig | None = None  # None: every request is its own backend call
    backend: Mapping[str, Any] = field(default_factory=dict)

    def backend_options(self) -> dict[str, Any]:
        options = dict(self.backend)
        if self.signature:
            options["signature"] = self.signature
        return options


def option_setting(option: str) -> str:
    """How to set backend option ``option`` in config.yaml, for a message that asks to."""
    if option == "signature":  # a key of its own
        return "set `signature:` in the model's config.yaml"
    return f"set `{option}` under `backend:` in the model's config.yaml"


_KNOWN_KEYS = {"format", "signature", "version_policy", "labels", "image", "batching", "backend"}


def load_model_config(model_dir: Path) -> ModelConfig:
    """Read ``model_dir/config.yaml`` (defaults when absent)."""
    path = model_dir / "config.yaml"
    if not path.is_file():
        return ModelConfig()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return parse_model_config(raw, str(path))


def parse_model_config(raw: Mapping[str, Any], where: str = "config.yaml") -> ModelConfig:
    unknown = set(raw) - _KNOWN_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {sorted(unknown)}; expected some of {sorted(_KNOWN_KEYS)}"
        )
    fmt = raw.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise ConfigError(f"{where}: format '{fmt}' is not one of {', '.join(FORMATS)}")
    labels = raw.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, int) for k, v in labels.items()
    ):
        raise ConfigError(f"{where}: labels must map names to version numbers, e.g. {{stable: 1}}")
    for mapping_key in ("image", "batching", "backend"):
        value = raw.get(mapping_key)
        if value is not None and not isinstance(value, dict):
            raise ConfigError(f"{where}: '{mapping_key}' must be a mapping")
    signature = raw.get("signature")
    if signature is not None and not isinstance(signature, str):
        raise ConfigError(f"{where}: 'signature' must be a string")
    try:
        batching = BatchingConfig.parse(raw.get("batching"))
        image = ImageConfig.from_config(raw["image"]) if raw.get("image") else None
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return ModelConfig(
        format=fmt,
        signature=signature,
        version_policy=_parse_policy(raw.get("version_policy"), where),
        labels=dict(labels),
        image=image,
        batching=batching,
        backend=raw.get("backend") or {},
    )


def _parse_policy(raw: Any, where: str) -> VersionPolicy:
    if raw is None or raw == "latest":
        return VersionPolicy()
    if raw == "all":
        return VersionPolicy(kind="all")
    if isinstance(raw, dict) and len(raw) == 1:
        ((kind, value),) = raw.items()
        if kind == "latest" and isinstance(value, int) and value >= 1:
            return VersionPolicy(kind="latest", count=value)
        if kind == "all" and value is True:
            return VersionPolicy(kind="all")
        if (
            kind == "specific"
            and isinstance(value, list)
            and value
            and all(isinstance(v, int) for v in value)
        ):
            return VersionPolicy(kind="specific", versions=tuple(sorted(value)))
    raise ConfigError(
        f"{where}: version_policy must be one of {{latest: N}}, {{all: true}}, "
        f"{{specific: [1, 2]}}; got {raw!r}"
    )


def select_versions(policy: VersionPolicy, on_disk: Iterable[int]) -> list[int]:
    """The versions to serve, ascending, given the policy and the version folders found."""
    available = sorted(set(on_disk))
    if policy.kind == "all":
        return available
    if policy.kind == "specific":
        return [v for v in available if v in policy.versions]
    return available[-policy.count :]


def selected_versions(policy: VersionPolicy, on_disk: list[int], where: Path) -> list[int]:
    """``select_versions``, refusing a policy that selects none of the folders on disk (a
    ``specific`` list with a typo) as a config.yaml error: it must not unload what serves."""
    wanted = select_versions(policy, on_disk)
    if on_disk and not wanted:
        raise ConfigError(
            f"{where}: version_policy {policy.describe()} selects none of "
            f"the version folders ({', '.join(map(str, on_disk))}); versions already loaded "
            "keep serving"
        )
    return wanted


#: Version numbers are int64 (what Triton and TF-Serving use): at most 18 decimal digits.
MAX_VERSION_DIGITS = 18


def is_version_number(text: str) -> bool:
    """ASCII decimal digits that fit a version number: ``str.isdigit`` alone also accepts
    superscripts (U+00B2), which ``int`` refuses, and other scripts' digits (U+0661),
    which it reads as another number."""
    return text.isascii() and text.isdigit() and len(text) <= MAX_VERSION_DIGITS


def version_folders(model_dir: Path) -> list[int]:
    """Numeric version folders of a model; other entries are ignored, and so are numbers
    written with leading zeros (``padded_version_folders``)."""
    return sorted(int(name) for name in _numbered_folders(model_dir) if not _is_padded(name))


def padded_version_folders(model_dir: Path) -> dict[str, int]:
    """Folders named by a version number with leading zeros (``007``), and the number each
    reads as. They do not load, as in Triton: ``007`` and ``7`` would both be version 7, and
    which one the runtime picked would be a guess; the repository says to rename them."""
    return {name: int(name) for name in _numbered_folders(model_dir) if _is_padded(name)}


def _numbered_folders(model_dir: Path) -> list[str]:
    return [e.name for e in model_dir.iterdir() if e.is_dir() and is_version_number(e.name)]


def _is_padded(name: str) -> bool:
    return len(name) > 1 and name.startswith("0")
