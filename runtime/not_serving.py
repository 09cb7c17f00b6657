"""Why a model or a version a request names does not serve, as the runtime answers it.

``not_ready_message``: a model with no version to serve (its config.yaml cannot be used,
its versions failed, it has no version folder, or it is loading). ``not_loaded``: a version
a request names that is not loaded, a 404 or a 503 by why (``runtime.repository`` raises
it; the gateway takes a 404 naming no version as "not served here").
"""

from __future__ import annotations

from pathlib import Path

from runtime.config import VersionPolicy, is_version_number, select_versions, version_folders
from runtime.errors import InferenceServerError, ModelNotReady, NotFound
from runtime.model_version import ModelEntry


def not_ready_message(found: ModelEntry) -> str:
    """Why model ``found`` has no version to serve (when it has none)."""
    if found.config_error:
        return f"model '{found.name}' is not ready: {found.config_error}"
    errors = [f"version {v.version}: {v.error}" for v in found.versions.values() if v.error]
    if errors:
        return f"model '{found.name}' is not ready: " + "; ".join(errors)
    if not found.wanted and not found.versions:
        return (
            f"model '{found.name}' has no version to serve: no numeric version folder "
            f"({found.name}/1/, {found.name}/2/, ...) with the model inside"
        )
    return f"model '{found.name}' is loading"


def not_loaded(root: Path, found: ModelEntry, number: int, version: str) -> InferenceServerError:
    """Why version ``number`` of ``found``, which a request names, is not loaded: its
    folder is not there (404), the policy leaves it out (404), or it appeared since the
    last scan, which loads it (503, as for a version loading), or config.yaml cannot be
    used (503, as for a model without a version)."""
    loaded = ", ".join(str(v) for v in sorted(found.versions)) or "none"
    named = "" if is_version_number(version) else f" (label '{version}')"
    missing = f"model '{found.name}' has no version {number}{named} (loaded versions: {loaded})"
    model_dir = root / found.name
    try:
        on_disk = version_folders(model_dir) if (model_dir / str(number)).is_dir() else []
    except OSError:
        on_disk = []
    if number not in on_disk:
        return NotFound(missing)
    if found.config_error:
        return ModelNotReady(f"{missing}; config.yaml cannot be used: {found.config_error}")
    policy = found.config.version_policy
    if number in select_versions(policy, on_disk):
        return ModelNotReady(
            f"model '{found.name}' version {number}{named} is not loaded yet: its folder "
            "is new since the last scan of the repository, which loads it"
        )
    if not (model_dir / "config.yaml").is_file():
        where = f"({policy.describe()}, the default: the model has no config.yaml)"
    elif policy == VersionPolicy():
        where = f"in config.yaml ({policy.describe()}, the default when it sets none)"
    else:
        where = f"in config.yaml ({policy.describe()})"
    return NotFound(
        f"{missing}; its folder is there, but the version_policy {where} does not select it"
    )
