"""Why a model or a version a request names does not serve, as the runtime answers it.

``not_ready_message``: a model with no version to serve (its config.yaml cannot be used,
its versions failed, it has no version folder, or it is loading). ``not_loaded``: a version
a request names that is not loaded, a 404 or a 503 by why (``runtime.repository`` raises
it; the gateway takes a 404 naming no version as "not served here"). Both add what
``padded_folder_notes`` says of version folders named with leading zeros (``007/``), which
never load: the repository logs it, and ``GET /v1/models`` lists it under ``warnings``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from runtime.config import VersionPolicy, is_version_number, select_versions, version_folders
from runtime.errors import InferenceServerError, ModelNotReady, NotFound
from runtime.model_version import ModelEntry


def not_ready_message(found: ModelEntry) -> str:
    """Why model ``found`` has no version to serve (when it has none)."""
    misnamed = list(found.misnamed.values())
    also = "".join(f"; {note}" for note in misnamed)
    if found.config_error:
        return f"model '{found.name}' is not ready: {found.config_error}{also}"
    # A snapshot: the scan thread adds and removes versions meanwhile, and a dict that
    # changes size while a loop walks it raises (a 500 for a readiness check).
    versions = list(found.versions.values())
    errors = [f"version {v.version}: {v.error}" for v in versions if v.error]
    if errors:
        return f"model '{found.name}' is not ready: " + "; ".join(errors) + also
    if not found.wanted and not found.versions and misnamed:
        return f"model '{found.name}' has no version to serve: " + "; ".join(misnamed)
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
        misnamed = found.misnamed.get(number)
        return NotFound(f"{missing}; {misnamed}" if misnamed else missing)
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


def padded_folder_notes(
    model: str, padded: Mapping[str, int], on_disk: Iterable[int]
) -> dict[int, str]:
    """Why each version folder named with leading zeros (``padded``: ``{"007": 7}``) does not
    load, by the number it reads as: rename it, or, where ``on_disk`` has that number's own
    folder, or two such folders read as one number, they clash."""
    names: dict[int, list[str]] = {}
    for name, number in sorted(padded.items()):
        names.setdefault(number, []).append(name)
    numbered = set(on_disk)
    notes = {}
    for number, clashing in sorted(names.items()):
        folders = " and ".join(f"{model}/{name}/" for name in clashing)
        plural = len(clashing) > 1
        subject = f"version folder{'s' * plural} {folders} {'are' if plural else 'is'}"
        if number in numbered:
            fix = (
                f", and {model}/{number}/ is version {number}: they clash; remove "
                f"{folders} or rename to a number no other folder has"
            )
        elif plural:
            fix = f", and they clash as version {number}: keep one, renamed to {model}/{number}/"
        else:
            fix = f"; rename it to {model}/{number}/"
        notes[number] = (
            f"{subject} not loaded: a version folder is named by its number without leading "
            f"zeros{fix}"
        )
    return notes
