"""The model repository: which versions of which models are loaded, and their state.

Layout (Triton / TF Serving)::

    <root>/<model>/config.yaml          optional, see runtime.config
    <root>/<model>/<version>/<artefact>  numeric version folders

``scan()`` reconciles memory with disk and is safe to call repeatedly (a poller thread
calls it every few seconds): versions the policy wants are loaded; a version no longer
wanted is unloaded only once every wanted version is ready, so a new version that fails
to load never takes the old one down (availability-preserving, as TF Serving does); with a
``latest`` policy, a start that finds the newest version broken loads the newest older one
that loads in its place, so a restart does not take down what served before it.
A failed version is retried when its folder's contents or the model's config.yaml change (a
copy that was still in progress, a fixed artefact, a fixed ``format:`` or ``image:``). One
broken model never affects another.

Versions on disk are treated as immutable: replace a version by adding a new number.

What one version is, and how one is loaded, live in ``runtime.model_version``; this module
decides which versions load and unload, and when, and holds them for requests
(``acquire`` / ``release``). ``ModelVersion``, ``ModelEntry`` and ``VersionState`` are
importable from here too.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

from monitoring.metrics import RuntimeMetrics
from runtime import heap
from runtime.config import (
    ConfigError,
    ModelConfig,
    is_version_number,
    load_model_config,
    padded_version_folders,
    selected_versions,
    version_folders,
)
from runtime.errors import ModelNotReady, NotFound
from runtime.images import ImageConfig
from runtime.model_version import ModelEntry, ModelVersion, VersionState, load_version
from runtime.not_serving import not_loaded, not_ready_message, padded_folder_notes

#: This module's names, and the version records most callers import from here.
__all__ = ["ModelEntry", "ModelRepository", "ModelVersion", "VersionState"]

log = logging.getLogger("driftgate.runtime.repository")


class ModelRepository:
    def __init__(self, root: Path, metrics: RuntimeMetrics | None = None) -> None:
        self.root = root
        self.metrics = metrics
        self._models: dict[str, ModelEntry] = {}
        self._lock = threading.RLock()
        self._scan_lock = threading.Lock()
        self._changes = 0  # models loaded or unloaded (under _lock)
        self._settled_changes = 0  # _changes when the heap was last settled
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.initial_scan_done = threading.Event()

    # -- reading -------------------------------------------------------------------------

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._models)

    def entry(self, name: str) -> ModelEntry:
        with self._lock:
            found = self._models.get(name)
        if found is None and not self.initial_scan_done.is_set():
            # Not "unknown" yet: the first scan may still reach it. 503 makes callers retry.
            raise ModelNotReady(f"the runtime is still loading its repository; retry '{name}'")
        if found is None:
            raise NotFound(
                f"unknown model '{name}'; served models: {', '.join(self.names()) or 'none'}"
            )
        return found

    def lookup(self, name: str, version: str | None = None) -> ModelVersion | None:
        """The version a request names, ready or not (for metadata and readiness).

        ``None`` when the model exists but has no version at all yet. Raises ``NotFound``
        for an unknown model, version or label.
        """
        found = self.entry(name)
        if version is None or version == "":
            default = found.default_version()
            if default is not None:
                return default
            newest = max(found.versions, default=None)
            return None if newest is None else found.versions[newest]
        number = self._version_number(found, version)
        model_version = found.versions.get(number)
        if model_version is None:
            raise not_loaded(self.root, found, number, version)
        return model_version

    def resolve(self, name: str, version: str | None = None) -> ModelVersion:
        """The model version to serve: by number, by label, or the default when ``None``.

        Raises ``NotFound`` for an unknown model/version/label and ``ModelNotReady`` for a
        version that is loading or failed (the message carries the load error).
        """
        model_version = self.lookup(name, version)
        if model_version is None or (not version and not model_version.ready):
            raise ModelNotReady(self.not_ready_message(name))
        number = model_version.version
        if not model_version.ready:
            detail = f": {model_version.error}" if model_version.error else ""
            raise ModelNotReady(
                f"model '{name}' version {number} is {model_version.state.value.lower()}{detail}"
            )
        return model_version

    def acquire(self, name: str, version: str | None = None) -> ModelVersion:
        """``resolve``, and hold the version until ``release``.

        A version replaced or removed while a request holds it keeps its backend until the
        last holder releases it, so a version swap never fails a request in flight. A request
        that leaves early (its client hung up, its task was cancelled) still holds it until the
        thread running its call is done (``runtime.waiting``, ``runtime.batching``), so a
        backend is never unloaded under a call.
        """
        with self._lock:
            target = self.resolve(name, version)
            target.users += 1
        return target

    def release(self, target: ModelVersion) -> None:
        with self._lock:
            target.users -= 1
            idle = target.retired and target.users == 0
            if idle:  # the next scan settles the heap, which frees the version's objects
                self._changes += 1
        if idle:
            self._unload_backend(target)

    @staticmethod
    def _version_number(found: ModelEntry, version: str) -> int:
        if is_version_number(version):
            return int(version)
        if version in found.config.labels:
            return found.config.labels[version]
        labels = ", ".join(sorted(found.config.labels)) or "none"
        raise NotFound(
            f"model '{found.name}' has no version or label '{version}' (labels: {labels})"
        )

    def not_ready_message(self, name: str) -> str:
        """Why model ``name`` has no version to serve (when it has none)."""
        return not_ready_message(self.entry(name))  # runtime.not_serving

    def config_errors(self) -> dict[str, str]:
        """Models whose config.yaml (or folder) cannot be used, with the reason."""
        with self._lock:
            return {name: e.config_error for name, e in self._models.items() if e.config_error}

    def readiness(self) -> Iterator[tuple[str, str, bool]]:
        """``(model, version, ready)`` per version; a model with no version (a broken
        config.yaml, or no version folder) is one entry ``(model, "", False)``, so that it is
        seen not serving (alert DriftgateModelLoadFailure)."""
        serving = set()
        for version in self.all_versions():
            serving.add(version.model)
            yield version.model, str(version.version), version.ready
        with self._lock:
            idle = [n for n, e in self._models.items() if e.config_error or not e.wanted]
        for name in sorted(idle):
            if name not in serving:
                yield name, "", False

    def all_versions(self) -> Iterator[ModelVersion]:
        with self._lock:
            entries = list(self._models.values())
        for found in entries:
            yield from sorted(found.versions.values(), key=lambda v: v.version)

    def is_ready(self) -> bool:
        """Server readiness: the first scan finished (failed models do not block it)."""
        return self.initial_scan_done.is_set()

    # -- reconciling with disk -----------------------------------------------------------

    def scan(self) -> None:
        """Load what the policies want, unload what they no longer want."""
        with self._scan_lock:
            on_disk = {p.name for p in self._model_dirs()}
            for name in sorted(on_disk):
                self._reconcile_model_safely(self.root / name)
            for gone in set(self.names()) - on_disk:
                self._remove_model(gone)
            with self._lock:
                changed = self._changes != self._settled_changes
                self._settled_changes = self._changes
            if changed:  # this scan's loads, or an unload since the last settle
                heap.settle()  # new objects out of later GC passes, unloaded ones freed
        self.initial_scan_done.set()

    def _model_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))]

    def _reconcile_model_safely(self, model_dir: Path) -> None:
        """One model's reconcile; whatever goes wrong in it stays that model's problem (the
        scan goes on to the others, and the runtime still becomes ready)."""
        try:
            self._reconcile_model(model_dir)
        except Exception as exc:
            log.exception("model %s: could not read its folder", model_dir.name)
            with self._lock:
                found = self._models.setdefault(model_dir.name, ModelEntry(name=model_dir.name))
            found.config_error = f"its folder could not be read: {type(exc).__name__}: {exc}"

    def _reconcile_model(self, model_dir: Path) -> None:
        name = model_dir.name
        with self._lock:
            new = name not in self._models
            found = self._models.setdefault(name, ModelEntry(name=name))
        on_disk = version_folders(model_dir)
        misnamed = padded_folder_notes(name, padded_version_folders(model_dir), on_disk)
        for number, note in misnamed.items():
            if found.misnamed.get(number) != note:  # said once, and again if it changes
                log.warning("model %s: %s", name, note)
        found.misnamed = misnamed
        try:
            config = load_model_config(model_dir)
            wanted = selected_versions(config.version_policy, on_disk, model_dir / "config.yaml")
            _check_image_fits(config, [found.versions[n] for n in wanted if n in found.versions])
            found.config, found.config_error = config, None
        except ConfigError as exc:
            if found.config_error != str(exc):
                log.error("model %s: %s", name, exc)
            found.config_error = str(exc)
            return  # keep whatever already serves; nothing new loads with a broken config
        # Said once: `--repository models/titanic` serves nothing (a padded 007/ is said above).
        if new and not on_disk and not misnamed:
            log.warning(
                "%s; a model's files go in a numbered version folder (%s/1/...) inside it, and "
                "--repository names the folder that holds the model folders",
                self.not_ready_message(name), name,
            )  # fmt: skip
        found.wanted = wanted
        for loaded in found.versions.values():  # a change of batching applies at once
            loaded.batching = config.batching
            if _image_fits(config.image, loaded):  # one being replaced may keep its own
                loaded.image = config.image
        for number in wanted:
            self._ensure_loaded(found, model_dir / str(number), number)
        if wanted and config.version_policy.kind == "latest" and found.default_version() is None:
            self._load_stand_in(found, model_dir, [n for n in on_disk if n < min(wanted)])
        if all(found.versions[n].ready for n in wanted if n in found.versions):
            for number in [n for n in found.versions if n not in wanted]:
                self._unload(found, number)
        else:  # a wanted version is not ready: unload only versions whose folder vanished
            for number in [n for n in found.versions if n not in wanted]:
                if not (model_dir / str(number)).is_dir():
                    self._unload(found, number)

    def _load_stand_in(self, found: ModelEntry, model_dir: Path, older: list[int]) -> None:
        """Every version the policy wants failed and none serves (the runtime started with a
        broken newest version): the newest older version that loads serves in their place,
        until they load. A restart must not take down a model that served before it.

        An older version that fails as a wanted one did ends the search: that failure is the
        model's (a config.yaml ``backend:`` option, a ``signature:``, a missing framework),
        every older version would fail it too, and each try may be a full load, once per
        version on disk, holding up every model scanned after this one."""
        failures = {_failure(v) for n in found.wanted if (v := found.versions.get(n)) is not None}
        for number in sorted(older, reverse=True):
            self._ensure_loaded(found, model_dir / str(number), number)
            candidate = found.versions[number]
            if candidate.ready:
                log.warning(
                    "model %s: version %s serves in place of %s, which failed to load",
                    found.name, number, ", ".join(map(str, found.wanted)),
                )  # fmt: skip
                return
            if _failure(candidate) in failures - {None}:
                return

    def _ensure_loaded(self, found: ModelEntry, path: Path, number: int) -> None:
        current = found.versions.get(number)
        # The config.yaml counts too: a version that failed on its format or image section
        # loads again once that is fixed.
        fingerprint = max(_fingerprint(path), _fingerprint(path.parent / "config.yaml"))
        if current is not None and (current.ready or current.fingerprint == fingerprint):
            return
        candidate = ModelVersion(
            model=found.name, version=number, path=path, fingerprint=fingerprint
        )
        with self._lock:
            if current is None:
                found.versions[number] = candidate
        self._load(found.config, candidate)
        with self._lock:
            found.versions[number] = candidate  # atomic swap for readers

    def _load(self, config: ModelConfig, candidate: ModelVersion) -> None:
        with self._lock:
            self._changes += 1
        load_version(config, candidate, self.metrics)

    def _unload(self, found: ModelEntry, number: int) -> None:
        with self._lock:
            gone = found.versions.pop(number, None)
        if gone is not None:
            self._retire(gone)

    def _remove_model(self, name: str) -> None:
        with self._lock:
            found = self._models.pop(name, None)
        if found is not None:
            for version in found.versions.values():
                self._retire(version)
            log.info("model %s removed from the repository", name)

    def _retire(self, gone: ModelVersion) -> None:
        """Unload a version no longer reachable: now, or when its last request releases it."""
        with self._lock:
            self._changes += 1
            gone.retired = True
            idle = gone.users == 0
        if idle:
            self._unload_backend(gone)

    @staticmethod
    def _unload_backend(gone: ModelVersion) -> None:
        if gone.backend is not None:
            log.info("model %s version %s unloaded", gone.model, gone.version)
            gone.backend.unload()

    # -- lifecycle -----------------------------------------------------------------------

    def start_polling(self, interval_s: float) -> None:
        """Re-scan every ``interval_s`` seconds in a daemon thread (0 disables)."""
        if interval_s <= 0 or self._poller is not None:
            return

        def poll() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.scan()
                except Exception:
                    log.exception("repository scan failed")

        self._poller = threading.Thread(target=poll, name="repository-poller", daemon=True)
        self._poller.start()

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        for name in self.names():
            self._remove_model(name)


def _check_image_fits(config: ModelConfig, serving: list[ModelVersion]) -> None:
    """A changed ``image:`` section must fit the versions that go on serving (versions that
    load later are checked as they load); else the whole config.yaml is not applied."""
    if config.image is None:
        return
    for version in serving:
        if version.ready and version.metadata is not None:
            try:
                config.image.input_spec(version.metadata)
            except ValueError as exc:
                raise ConfigError(
                    f"{version.path.parent / 'config.yaml'}: {exc} "
                    f"(version {version.version} serves and keeps its previous image section)"
                ) from None


def _image_fits(image: ImageConfig | None, version: ModelVersion) -> bool:
    if image is None or version.metadata is None:
        return True
    try:
        image.input_spec(version.metadata)
    except ValueError:
        return False
    return True


def _fingerprint(path: Path) -> float:
    """Latest modification time under a version folder: changes when files are added."""
    try:
        stamps = [path.stat().st_mtime] + [p.stat().st_mtime for p in path.rglob("*")]
    except OSError:
        return 0.0
    return max(stamps)


def _failure(version: ModelVersion) -> str | None:
    """A failed version's load error without its own folder, to compare versions' errors."""
    if version.error is None:
        return None
    return version.error.replace(str(version.path), "<version>")
