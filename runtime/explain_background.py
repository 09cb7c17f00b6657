"""The background of an explanation: rows drawn from the version's latest reference profile.

The explainers (``runtime.explaining``) measure each explained row against background rows.
They come from the version's latest reference profile
(``<repository>/<model>/references/<version>/profile-*.json``, ``drift.references``):
``drift.sampling.sample_inputs`` draws them from its independent marginals, and
``background_from_profile`` gives them the inputs' types and validates them as a request
would be. ``background_for`` picks the latest profile and keeps what it built in a
``BackgroundCache`` (the app's, ``runtime.routes.explain``): one sampling per profile, row
count and seed. A version without a profile, or with one that does not fit the model, is
``NoReferenceProfile`` (409), whose message names the command that builds one. Called in the
predictor's thread pool, as part of the explanation.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from drift.distributions import category_text
from drift.profile import ReferenceProfile
from drift.references import ReferenceStore
from drift.sampling import sample_inputs
from explain.frame import Frame
from runtime.errors import BadRequest, InferenceServerError
from runtime.explaining import ExplainSettings, inputs_from_frame
from runtime.tensors import FLOAT_DATATYPES, ModelMetadata, TensorSpec
from runtime.validation import validate_inputs


class NoReferenceProfile(InferenceServerError):
    """409: the version has no reference profile to draw a background from (or one that
    does not fit the model); the message says how to build one."""

    status_code = 409


def missing_profile_message(model: str, version: str) -> str:
    return (
        f"no reference profile for {model} version {version}: run `driftgate reference build "
        f"--model {model} --version {version} --repository <this runtime's model repository> "
        "<its training set, .csv or .parquet>` to build one"
    )


def background_for(
    store: ReferenceStore,
    cache: BackgroundCache,
    metadata: ModelMetadata,
    *,
    model: str,
    version: str,
    settings: ExplainSettings,
) -> tuple[str, Frame]:
    """``(profile id, background)`` from the version's latest reference profile."""
    saved = store.history(model, version)
    if not saved:
        raise NoReferenceProfile(missing_profile_message(model, version))
    profile_id = saved[-1]

    def build() -> Frame:
        try:
            profile = store.load(model, version, profile_id)
        except (OSError, ValueError) as exc:
            raise NoReferenceProfile(f"{exc}; {missing_profile_message(model, version)}") from None
        return background_from_profile(metadata, profile, settings.background_rows, settings.seed)

    key = (model, version, profile_id, settings.background_rows, settings.seed)
    return profile_id, cache.get_or_build(key, build)


BackgroundKey = tuple[str, str, str, int, int]


class BackgroundCache:
    """Backgrounds by ``(model, version, profile id, rows, seed)``, the least recently used
    dropped past ``capacity``. Profiles are never overwritten (a new one has a new id), so
    an entry never goes stale. Thread-safe; two requests that miss at once both build."""

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[BackgroundKey, Frame] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_build(self, key: BackgroundKey, build: Callable[[], Frame]) -> Frame:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key]
        built = build()
        with self._lock:
            self._entries[key] = built
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return built


def background_from_profile(
    metadata: ModelMetadata, profile: ReferenceProfile, rows: int, seed: int = 0
) -> Frame:
    """``rows`` background rows from the profile's marginals, typed like the request rows.

    Profile features match inputs by name, ignoring case (profiles built from a file name
    them in lower case). A category that is a number (``pclass`` "3") becomes the number
    for a numeric input, and a number becomes its text for a ``BYTES`` input. An input that
    takes no missing value gets present values in place of the profile's missing ones.
    The rows are validated as a request would be: a profile that does not fit the model is
    ``NoReferenceProfile``.
    """
    where = f"the reference profile of {profile.model} version {profile.version}"
    rebuild = "rebuild it with `driftgate reference build`"
    try:
        sampled = sample_inputs(profile, rows, seed)
    except ValueError as exc:
        raise NoReferenceProfile(f"{where} cannot be sampled: {exc}; {rebuild}") from None
    by_lower = {name.lower(): name for name in sampled}
    frame: Frame = {}
    for spec in metadata.inputs:
        name = spec.name if spec.name in sampled else by_lower.get(spec.name.lower())
        if name is None:
            raise NoReferenceProfile(f"{where} has no input '{spec.name}'; {rebuild}")
        try:
            frame[spec.name] = _background_column(spec, sampled[name])
        except ValueError as exc:
            raise NoReferenceProfile(f"{where} does not fit input '{spec.name}': {exc}") from None
    try:
        validate_inputs(metadata, inputs_from_frame(metadata, frame))
    except BadRequest as exc:
        raise NoReferenceProfile(f"{where} does not fit the model: {exc.message}") from None
    return frame


def _background_column(spec: TensorSpec, values: np.ndarray) -> np.ndarray:
    column: np.ndarray
    if spec.datatype == "BYTES":
        column = np.empty(len(values), dtype=object)
        column[:] = [category_text(value) for value in values]
        missing = np.array([value is None for value in column], dtype=bool)
    else:
        column = np.array([_number(value) for value in values], dtype=np.float64)
        if spec.datatype not in FLOAT_DATATYPES:
            column = np.rint(column)
        missing = np.isnan(column)
    takes_missing = spec.nullable and (spec.datatype == "BYTES" or spec.datatype in FLOAT_DATATYPES)
    if missing.any() and not takes_missing:
        present = column[~missing]
        if len(present) == 0:
            raise ValueError("the profile has only missing values, and the input takes none")
        column[missing] = present[np.arange(int(missing.sum())) % len(present)]
    return column


def _number(value: Any) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "false"):
            return 1.0 if lowered == "true" else 0.0
        try:
            return float(lowered)
        except ValueError:
            raise ValueError(f"the category {value!r} is not a number") from None
    return float(value)
