"""Where reference profiles live: beside the model versions, in the model repository.

    <repo>/<model>/references/<version>/profile-<UTC stamp>.json

The runtime skips the ``references`` folder (it is not a version number), and a profile is
never overwritten, so a drift result can always name the profile it was judged against.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from drift.profile import ReferenceProfile
from monitoring.prediction_log.layout import fsync_dir

_PROFILE_PREFIX = "profile-"
_STAMP = "%Y%m%dT%H%M%S.%fZ"


class ReferenceStore:
    """Profiles beside the model versions: ``<repo>/<model>/references/<version>/``.

    Each save adds ``profile-<UTC stamp>.json`` (the id); nothing is overwritten, so a
    drift result can always name the profile it was judged against. The runtime skips
    the ``references`` folder (not a version number).
    """

    def __init__(self, repo: Path) -> None:
        self.repo = Path(repo)

    def folder(self, model: str, version: str) -> Path:
        for part in (model, version):
            if not part or part in (".", "..") or "/" in part or "\\" in part:
                raise ValueError(f"not a usable model or version name for a path: {part!r}")
        return self.repo / model / "references" / version

    def save(self, profile: ReferenceProfile) -> Path:
        """Write the profile atomically under a new name; returns its path."""
        folder = self.folder(profile.model, profile.version)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(UTC)
        while (final := folder / f"{_PROFILE_PREFIX}{stamp.strftime(_STAMP)}.json").exists():
            stamp += timedelta(microseconds=1)
        text = json.dumps(profile.to_dict(), indent=1)
        handle, staged = tempfile.mkstemp(dir=folder, prefix=".profile-", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(text)
                file.flush()
                os.fsync(file.fileno())
            os.replace(staged, final)
            fsync_dir(folder)
        except BaseException:
            Path(staged).unlink(missing_ok=True)
            raise
        return final

    def history(self, model: str, version: str) -> list[str]:
        """The ids of every saved profile of the version, oldest first."""
        folder = self.folder(model, version)
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.glob(f"{_PROFILE_PREFIX}*.json"))

    def load(self, model: str, version: str, profile_id: str) -> ReferenceProfile:
        path = self.folder(model, version) / profile_id
        try:
            return ReferenceProfile.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path} is not a readable reference profile: {exc}") from exc

    def latest(self, model: str, version: str) -> tuple[str, ReferenceProfile] | None:
        """The newest profile of the version with its id, or None when it has none."""
        saved = self.history(model, version)
        if not saved:
            return None
        return saved[-1], self.load(model, version, saved[-1])
