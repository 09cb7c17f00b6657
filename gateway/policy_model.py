"""Route policies as data: the structs a route's policy is made of, each valid by construction.

A :class:`RoutePolicy` says which target answers (``primary``, or the arms of a weighted
``split``, which a ``canary`` may manage), what to mirror (``shadow``), what to try when
the answering target fails (``fallback``), and the retry, timeout and circuit-breaker
budget. ``gateway.policy`` builds these from plain data (``parse_route``) and back
(``route_to_dict``); the reference for every key is ``docs/routing.md``.

Every struct checks itself in ``__post_init__``, so a ``RoutePolicy`` that exists is valid,
whether parsed or built in code (``msgspec.structs.replace`` re-checks too). A problem
raises :class:`FieldError`, a :class:`PolicyError` naming the field relative to the struct;
``gateway.policy`` prefixes the full path, e.g.
``routes.titanic.split.arms[1].weight: must be >= 0, got -3``.

Everything a policy holds is bounded (the ``MAX_*`` and ``*_S`` constants below, and the
document bounds in ``gateway.policy``, listed in ``docs/routing.md``): names, the number of
arms, shadows, fallbacks and canary steps, weights and durations. A policy is sent by
whoever holds the admin scope and read back by every gateway sharing ``routes_dir``;
unbounded, one policy could hold the event loop for seconds.
"""

from __future__ import annotations

import math
import re
from typing import Literal

import msgspec

#: Route, model, version and arm names; a route's file is ``<name>.yaml``, which must fit
#: the 255 bytes file systems allow.
MAX_NAME_CHARS = 200
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NAME_RULE = (
    "letters, digits, '_', '-' and '.', starting with a letter or digit,"
    f" at most {MAX_NAME_CHARS} characters"
)
MAX_RETRIES = 5
MAX_ARMS = 100
MAX_SHADOWS = 10  # each one is another call to a runtime per request
MAX_FALLBACKS = 10
MAX_CANARY_STEPS = 100  # increasing percents: 100 is also as many as there can be
MAX_WEIGHT = 1_000_000
#: Bounds of ``timeout_s``, ``per_try_timeout_s`` and ``circuit_breaker.open_s``.
MIN_TIMEOUT_S, MAX_TIMEOUT_S = 0.001, 3600.0
#: Bounds of ``canary.interval_s``: the canary is judged every few seconds; a week per step.
MIN_INTERVAL_S, MAX_INTERVAL_S = 1.0, 604_800.0


class PolicyError(ValueError):
    """A route policy that cannot be used; the message names the field path and the problem."""


class FieldError(PolicyError):
    """Raised inside ``__post_init__``; ``field`` is relative to the struct being checked."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def check_name(value: str, what: str) -> None:
    """Refuse (:class:`PolicyError`) a ``what`` ("route name", "version") that is no valid name."""
    if problem := name_problem(value, what):
        raise PolicyError(problem)


def is_valid_name(value: str) -> bool:
    """Whether ``value`` can name a route, model, version or arm."""
    return len(value) <= MAX_NAME_CHARS and _NAME.fullmatch(value) is not None


def name_problem(value: str, what: str) -> str | None:
    """Why ``value`` cannot be a ``what`` ("route name", "version"); None when it can."""
    if is_valid_name(value):
        return None
    return f"{_shorten(value)} is not a valid {what} ({_NAME_RULE})"


def _shorten(value: str) -> str:
    """``value`` quoted, cut short when it is long: messages quote what clients sent."""
    if len(value) <= 60:
        return repr(value)
    return f"{value[:56]!r}... ({len(value)} characters)"


def _check_name(field: str, value: str, what: str) -> None:
    if problem := name_problem(value, what):
        raise FieldError(field, problem)


def _check_seconds(field: str, value: float, least: float, most: float) -> None:
    if not (math.isfinite(value) and least <= value <= most):
        raise FieldError(field, f"must be between {least:g} and {most:g} seconds, got {value}")


def _check_count(field: str, items: tuple[object, ...], most: int, what: str) -> None:
    if len(items) > most:
        raise FieldError(field, f"at most {most} {what}, got {len(items)}")


class Target(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A model and version on the runtime replicas; ``version=None`` is the runtime default."""

    model: str
    version: str | None = None

    def __post_init__(self) -> None:
        _check_name("model", self.model, "model name")
        if self.version is not None:
            _check_name("version", self.version, "version")


def _show(target: Target) -> str:
    return f"{target.model} version {target.version or '(default)'}"


#: An HTTP field name (RFC 9110 "token"): a sticky header named otherwise never matches.
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class Sticky(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Where the split's sticky key comes from; ``name`` is the header or body field."""

    by: Literal["subject", "header", "field", "random"] = "subject"
    name: str | None = None

    def __post_init__(self) -> None:
        if self.by in ("header", "field"):
            if not self.name or not self.name.strip():
                raise FieldError("name", f"by: {self.by} needs the name of the {self.by} to hash")
            if self.by == "header" and not _HEADER_NAME.fullmatch(self.name):
                raise FieldError(
                    "name",
                    f"{_shorten(self.name)} is not a header name"
                    " (letters, digits and !#$%&'*+-.^_`|~, no spaces)",
                )
        elif self.name is not None:
            raise FieldError("name", f"only used with by: header or field, not by: {self.by}")


class Arm(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One arm of a split: its name (response header, metrics label), target and weight.

    A weight of 0 drains the arm: it stays configured and gets no traffic (``Split`` needs
    one arm with a weight above 0)."""

    name: str
    target: Target
    weight: int

    def __post_init__(self) -> None:
        _check_name("name", self.name, "arm name")
        if self.name == "primary":
            raise FieldError("name", "'primary' is reserved for routes without a split")
        if self.weight < 0:
            raise FieldError("weight", f"must be >= 0, got {self.weight}")
        if self.weight > MAX_WEIGHT:
            raise FieldError("weight", f"must be <= {MAX_WEIGHT}, got {self.weight}")


class Split(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Weighted A/B arms; replaces ``primary`` as the answering target."""

    arms: tuple[Arm, ...]
    sticky: Sticky = Sticky()

    def __post_init__(self) -> None:
        if not self.arms:
            raise FieldError("arms", "a split needs at least one arm")
        _check_count("arms", self.arms, MAX_ARMS, "arms")
        seen: dict[str, int] = {}
        for index, arm in enumerate(self.arms):
            if arm.name in seen:
                raise FieldError(
                    f"arms[{index}].name", f"{arm.name!r} is already used by arms[{seen[arm.name]}]"
                )
            seen[arm.name] = index
        if not any(arm.weight for arm in self.arms):
            raise FieldError(
                "arms",
                "every arm has weight 0, so none could answer: give at least one a weight > 0",
            )

    @property
    def total_weight(self) -> int:
        return sum(arm.weight for arm in self.arms)


class Compare(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a shadow's answer is compared with the answering target's.

    ``class``: the named output is equal; ``numeric``: ``|a - b| <= tolerance`` elementwise.
    """

    kind: Literal["class", "numeric"]
    output: str
    tolerance: float = 0.0

    def __post_init__(self) -> None:
        if not self.output:
            raise FieldError("output", "must name the output to compare")
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise FieldError("tolerance", f"must be >= 0, got {self.tolerance}")
        if self.kind == "class" and self.tolerance != 0:
            raise FieldError("tolerance", "only applies to kind: numeric")


class Shadow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Mirror ``percent`` of requests to ``target`` after answering; never seen by clients."""

    target: Target
    percent: float = 100.0
    compare: Compare | None = None

    def __post_init__(self) -> None:
        if not (0 <= self.percent <= 100):
            raise FieldError("percent", f"must be between 0 and 100, got {self.percent}")


STABLE_ARM = "stable"
CANARY_ARM = "canary"


class Canary(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Automated canary analysis: traffic to ``target`` steps up through ``steps`` (percent)
    while the canary stays healthy, and goes back to 0 when it does not (``gateway.canary``).

    ``step``, ``status`` and ``reason`` are state, written by the gateway as it goes. While a
    canary progresses, the route's ``split`` is derived from it: arms ``stable`` (the primary)
    and ``canary``, weighted by the current step.
    """

    target: Target
    steps: tuple[int, ...] = (5, 25, 50, 100)
    interval_s: float = 300.0
    min_requests: int = 100
    max_error_rate: float = 0.01
    max_latency_ratio: float = 1.5
    #: The latency bound also needs the canary's p90 this much above the stable arm's: a
    #: ratio of two sub-millisecond latencies is mostly noise.
    latency_slack_s: float = 0.005
    #: Drift: roll back when the drift job's latest checks since the step began find more
    #: than this many features drifted on the canary arm and not on the stable arm; None
    #: does not judge drift.
    max_extra_drifted_features: int | None = None
    sticky: Sticky = Sticky()
    step: int = 0
    status: Literal["progressing", "rolled_back"] = "progressing"
    reason: str | None = None

    def __post_init__(self) -> None:
        if not self.steps:
            raise FieldError("steps", "needs at least one step, e.g. [5, 25, 50, 100]")
        _check_count("steps", self.steps, MAX_CANARY_STEPS, "steps")
        for index, percent in enumerate(self.steps):
            if not 1 <= percent <= 100:
                raise FieldError(f"steps[{index}]", f"must be 1 to 100 percent, got {percent}")
            if index and percent <= self.steps[index - 1]:
                raise FieldError(f"steps[{index}]", "steps must increase")
        if not 0 <= self.step < len(self.steps):
            raise FieldError("step", f"must index steps (0 to {len(self.steps) - 1})")
        _check_seconds("interval_s", self.interval_s, MIN_INTERVAL_S, MAX_INTERVAL_S)
        if self.min_requests < 1:
            raise FieldError("min_requests", f"must be >= 1, got {self.min_requests}")
        if not 0 <= self.max_error_rate <= 1:
            raise FieldError("max_error_rate", f"must be 0 to 1, got {self.max_error_rate}")
        if not (math.isfinite(self.max_latency_ratio) and self.max_latency_ratio >= 1):
            raise FieldError("max_latency_ratio", f"must be >= 1, got {self.max_latency_ratio}")
        if not (math.isfinite(self.latency_slack_s) and self.latency_slack_s >= 0):
            raise FieldError("latency_slack_s", f"must be >= 0, got {self.latency_slack_s}")
        extra = self.max_extra_drifted_features
        if extra is not None and extra < 0:
            raise FieldError("max_extra_drifted_features", f"must be >= 0, got {extra}")

    @property
    def weight(self) -> int:
        """Percent of the route's traffic the canary answers now."""
        return self.steps[self.step] if self.status == "progressing" else 0

    def split_for(self, primary: Target) -> Split | None:
        """The split this canary puts on a route answered by ``primary``."""
        weight = self.weight
        if weight == 0:
            return None
        arms = (Arm(name=STABLE_ARM, target=primary, weight=100 - weight),) if weight < 100 else ()
        return Split((*arms, Arm(name=CANARY_ARM, target=self.target, weight=weight)), self.sticky)


class CircuitBreakerSettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Open after ``failures`` consecutive failures; probe again after ``open_s`` seconds."""

    failures: int = 5
    open_s: float = 10.0

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise FieldError("failures", f"must be >= 1, got {self.failures}")
        _check_seconds("open_s", self.open_s, MIN_TIMEOUT_S, MAX_TIMEOUT_S)


class RoutePolicy(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Everything the gateway needs to answer one route. See ``docs/routing.md``."""

    primary: Target
    split: Split | None = None
    shadow: tuple[Shadow, ...] = ()
    fallback: tuple[Target, ...] = ()
    retries: int = 1
    per_try_timeout_s: float | None = None
    timeout_s: float = 15.0
    circuit_breaker: CircuitBreakerSettings | None = CircuitBreakerSettings()
    canary: Canary | None = None

    @property
    def answering_targets(self) -> tuple[Target, ...]:
        """The targets that can answer without a fallback: the split's arms above weight 0
        (a drained arm's gets no request), else primary."""
        if self.split is None:
            return (self.primary,)
        return tuple(arm.target for arm in self.split.arms if arm.weight)

    @property
    def named_targets(self) -> frozenset[Target]:
        """Every target the policy names: primary, arms (drained or a canary's too),
        shadows and fallbacks. A circuit breaker of any other target on the route is stale."""
        arms = (arm.target for arm in self.split.arms) if self.split is not None else ()
        shadows = (shadow.target for shadow in self.shadow)
        return frozenset((self.primary, *arms, *shadows, *self.fallback))

    def __post_init__(self) -> None:
        if self.canary is not None:
            self._derive_split(self.canary)
        if not 0 <= self.retries <= MAX_RETRIES:
            raise FieldError("retries", f"must be between 0 and {MAX_RETRIES}, got {self.retries}")
        _check_seconds("timeout_s", self.timeout_s, MIN_TIMEOUT_S, MAX_TIMEOUT_S)
        if self.per_try_timeout_s is not None:
            _check_seconds(
                "per_try_timeout_s", self.per_try_timeout_s, MIN_TIMEOUT_S, MAX_TIMEOUT_S
            )
            if self.per_try_timeout_s > self.timeout_s:
                raise FieldError(
                    "per_try_timeout_s",
                    f"must be <= timeout_s ({self.timeout_s}), got {self.per_try_timeout_s}",
                )
        _check_count("shadow", self.shadow, MAX_SHADOWS, "shadows")
        _check_count("fallback", self.fallback, MAX_FALLBACKS, "fallbacks")
        answering = self.answering_targets
        mirrored: list[Target] = []
        for index, shadow in enumerate(self.shadow):
            if shadow.target in answering:
                raise FieldError(
                    f"shadow[{index}].target",
                    f"{_show(shadow.target)} already answers this route; shadow another target",
                )
            if shadow.target in mirrored:
                raise FieldError(
                    f"shadow[{index}].target", f"{_show(shadow.target)} is mirrored twice"
                )
            mirrored.append(shadow.target)
        for index, target in enumerate(self.fallback):
            if target in self.fallback[:index]:
                raise FieldError(f"fallback[{index}]", f"{_show(target)} is listed twice")
            if self.split is None and target == self.primary:
                raise FieldError(
                    f"fallback[{index}]", f"{_show(target)} is the primary; a fallback must differ"
                )

    def _derive_split(self, canary: Canary) -> None:
        if canary.target == self.primary:
            raise FieldError("canary.target", f"{_show(canary.target)} is already the primary")
        derived = canary.split_for(self.primary)
        if self.split is None:
            msgspec.structs.force_setattr(self, "split", derived)
        elif self.split != derived:
            raise FieldError(
                "split", "the canary manages this route's split: leave split out, or remove canary"
            )
