"""Route policies: what a route answers with, as validated, immutable data.

A route is keyed by the public model name clients call. Its policy says which target answers
(``primary``, or the arms of a weighted ``split``, which a ``canary`` may manage), what to
mirror (``shadow``), what to try
when the answering target fails (``fallback``), and the retry, timeout and circuit-breaker
budget. Policies come from ``gateway.yaml`` (``routes:``), from one YAML file per route, or
from the admin API; all three go through :func:`parse_route`, and :func:`route_to_dict` is
its inverse (admin ``GET`` and persistence). The reference for every key is
``docs/routing.md``.

Every struct checks itself in ``__post_init__``, so a ``RoutePolicy`` that exists is valid,
whether parsed or built in code (``msgspec.structs.replace`` re-checks too). Problems raise
:class:`PolicyError` naming the field path, e.g.
``routes.titanic.split.arms[1].weight: must be > 0, got -3``.

Everything a policy holds is bounded (the ``MAX_*`` and ``*_S`` constants below, listed in
``docs/routing.md``): names, the number of arms, shadows, fallbacks and canary steps,
weights, durations, how deeply the raw data nests, and the size of a policy document. A
policy is sent by whoever holds the admin scope and read back by every gateway sharing
``routes_dir``; unbounded, one policy could hold the event loop for seconds.

Where it sits: policy (data) -> ``gateway.planner.plan_route`` (pure decision per request)
-> the dispatcher (I/O), which also owns ``gateway.balancer`` and ``gateway.circuit`` state.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from typing import Any, Literal

import msgspec
import msgspec.inspect as mi

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
#: Lists and mappings inside one another in a policy's raw data; a valid policy needs 5.
MAX_DEPTH = 32
#: The largest policy document (an admin ``PUT`` body, a route file) taken at all.
MAX_POLICY_BYTES = 1 << 20


class PolicyError(ValueError):
    """A route policy that cannot be used; the message names the field path and the problem."""


class _FieldError(PolicyError):
    """Raised inside ``__post_init__``; ``field`` is relative to the struct being checked."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def check_name(value: str, what: str) -> None:
    """Refuse (:class:`PolicyError`) a ``what`` ("route name", "version") that is no valid name."""
    if problem := _name_problem(value, what):
        raise PolicyError(problem)


def is_valid_name(value: str) -> bool:
    """Whether ``value`` can name a route, model, version or arm."""
    return len(value) <= MAX_NAME_CHARS and _NAME.fullmatch(value) is not None


def _name_problem(value: str, what: str) -> str | None:
    if is_valid_name(value):
        return None
    return f"{_shorten(value)} is not a valid {what} ({_NAME_RULE})"


def _shorten(value: str) -> str:
    """``value`` quoted, cut short when it is long: messages quote what clients sent."""
    if len(value) <= 60:
        return repr(value)
    return f"{value[:56]!r}... ({len(value)} characters)"


def _check_name(field: str, value: str, what: str) -> None:
    if problem := _name_problem(value, what):
        raise _FieldError(field, problem)


def _check_seconds(field: str, value: float, least: float, most: float) -> None:
    if not (math.isfinite(value) and least <= value <= most):
        raise _FieldError(field, f"must be between {least:g} and {most:g} seconds, got {value}")


def _check_count(field: str, items: tuple[object, ...], most: int, what: str) -> None:
    if len(items) > most:
        raise _FieldError(field, f"at most {most} {what}, got {len(items)}")


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
                raise _FieldError("name", f"by: {self.by} needs the name of the {self.by} to hash")
            if self.by == "header" and not _HEADER_NAME.fullmatch(self.name):
                raise _FieldError(
                    "name",
                    f"{_shorten(self.name)} is not a header name"
                    " (letters, digits and !#$%&'*+-.^_`|~, no spaces)",
                )
        elif self.name is not None:
            raise _FieldError("name", f"only used with by: header or field, not by: {self.by}")


class Arm(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One arm of a split: its name (response header, metrics label), target and weight."""

    name: str
    target: Target
    weight: int

    def __post_init__(self) -> None:
        _check_name("name", self.name, "arm name")
        if self.name == "primary":
            raise _FieldError("name", "'primary' is reserved for routes without a split")
        if self.weight <= 0:
            raise _FieldError("weight", f"must be > 0, got {self.weight}")
        if self.weight > MAX_WEIGHT:
            raise _FieldError("weight", f"must be <= {MAX_WEIGHT}, got {self.weight}")


class Split(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Weighted A/B arms; replaces ``primary`` as the answering target."""

    arms: tuple[Arm, ...]
    sticky: Sticky = Sticky()

    def __post_init__(self) -> None:
        if not self.arms:
            raise _FieldError("arms", "a split needs at least one arm")
        _check_count("arms", self.arms, MAX_ARMS, "arms")
        seen: dict[str, int] = {}
        for index, arm in enumerate(self.arms):
            if arm.name in seen:
                raise _FieldError(
                    f"arms[{index}].name", f"{arm.name!r} is already used by arms[{seen[arm.name]}]"
                )
            seen[arm.name] = index

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
            raise _FieldError("output", "must name the output to compare")
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise _FieldError("tolerance", f"must be >= 0, got {self.tolerance}")
        if self.kind == "class" and self.tolerance != 0:
            raise _FieldError("tolerance", "only applies to kind: numeric")


class Shadow(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Mirror ``percent`` of requests to ``target`` after answering; never seen by clients."""

    target: Target
    percent: float = 100.0
    compare: Compare | None = None

    def __post_init__(self) -> None:
        if not (0 <= self.percent <= 100):
            raise _FieldError("percent", f"must be between 0 and 100, got {self.percent}")


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
            raise _FieldError("steps", "needs at least one step, e.g. [5, 25, 50, 100]")
        _check_count("steps", self.steps, MAX_CANARY_STEPS, "steps")
        for index, percent in enumerate(self.steps):
            if not 1 <= percent <= 100:
                raise _FieldError(f"steps[{index}]", f"must be 1 to 100 percent, got {percent}")
            if index and percent <= self.steps[index - 1]:
                raise _FieldError(f"steps[{index}]", "steps must increase")
        if not 0 <= self.step < len(self.steps):
            raise _FieldError("step", f"must index steps (0 to {len(self.steps) - 1})")
        _check_seconds("interval_s", self.interval_s, MIN_INTERVAL_S, MAX_INTERVAL_S)
        if self.min_requests < 1:
            raise _FieldError("min_requests", f"must be >= 1, got {self.min_requests}")
        if not 0 <= self.max_error_rate <= 1:
            raise _FieldError("max_error_rate", f"must be 0 to 1, got {self.max_error_rate}")
        if not (math.isfinite(self.max_latency_ratio) and self.max_latency_ratio >= 1):
            raise _FieldError("max_latency_ratio", f"must be >= 1, got {self.max_latency_ratio}")
        if not (math.isfinite(self.latency_slack_s) and self.latency_slack_s >= 0):
            raise _FieldError("latency_slack_s", f"must be >= 0, got {self.latency_slack_s}")
        extra = self.max_extra_drifted_features
        if extra is not None and extra < 0:
            raise _FieldError("max_extra_drifted_features", f"must be >= 0, got {extra}")

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
            raise _FieldError("failures", f"must be >= 1, got {self.failures}")
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
        """The targets that can answer without a fallback: the split's arms, else primary."""
        if self.split is None:
            return (self.primary,)
        return tuple(arm.target for arm in self.split.arms)

    def __post_init__(self) -> None:
        if self.canary is not None:
            self._derive_split(self.canary)
        if not 0 <= self.retries <= MAX_RETRIES:
            raise _FieldError("retries", f"must be between 0 and {MAX_RETRIES}, got {self.retries}")
        _check_seconds("timeout_s", self.timeout_s, MIN_TIMEOUT_S, MAX_TIMEOUT_S)
        if self.per_try_timeout_s is not None:
            _check_seconds(
                "per_try_timeout_s", self.per_try_timeout_s, MIN_TIMEOUT_S, MAX_TIMEOUT_S
            )
            if self.per_try_timeout_s > self.timeout_s:
                raise _FieldError(
                    "per_try_timeout_s",
                    f"must be <= timeout_s ({self.timeout_s}), got {self.per_try_timeout_s}",
                )
        _check_count("shadow", self.shadow, MAX_SHADOWS, "shadows")
        _check_count("fallback", self.fallback, MAX_FALLBACKS, "fallbacks")
        answering = self.answering_targets
        mirrored: list[Target] = []
        for index, shadow in enumerate(self.shadow):
            if shadow.target in answering:
                raise _FieldError(
                    f"shadow[{index}].target",
                    f"{_show(shadow.target)} already answers this route; shadow another target",
                )
            if shadow.target in mirrored:
                raise _FieldError(
                    f"shadow[{index}].target", f"{_show(shadow.target)} is mirrored twice"
                )
            mirrored.append(shadow.target)
        for index, target in enumerate(self.fallback):
            if target in self.fallback[:index]:
                raise _FieldError(f"fallback[{index}]", f"{_show(target)} is listed twice")
            if self.split is None and target == self.primary:
                raise _FieldError(
                    f"fallback[{index}]", f"{_show(target)} is the primary; a fallback must differ"
                )

    def _derive_split(self, canary: Canary) -> None:
        if canary.target == self.primary:
            raise _FieldError("canary.target", f"{_show(canary.target)} is already the primary")
        derived = canary.split_for(self.primary)
        if self.split is None:
            msgspec.structs.force_setattr(self, "split", derived)
        elif self.split != derived:
            raise _FieldError(
                "split", "the canary manages this route's split: leave split out, or remove canary"
            )


def default_route(model: str) -> RoutePolicy:
    """The policy of a model with no configured route: its default version, default budgets.

    Raises :class:`PolicyError` when ``model`` is not a valid route name.
    """
    check_name(model, "route name")
    return RoutePolicy(primary=Target(model=model))


def parse_route(name: str, raw: object) -> RoutePolicy:
    """Validate one route's policy (a YAML/JSON mapping); ``primary`` defaults to ``{model: name}``.

    Raises :class:`PolicyError` with a message such as
    ``routes.titanic.retries: must be between 0 and 5, got 9``.
    """
    where = _where(name)
    if problem := _name_problem(name, "route name"):
        raise PolicyError(f"{where}: {problem}")
    if _nests_deeper_than(raw, MAX_DEPTH):
        raise too_deep(name)
    if isinstance(raw, dict) and "primary" not in raw:
        raw = {"primary": {"model": name}, **raw}
    raw = _versions_as_strings(raw)
    try:
        return msgspec.convert(raw, RoutePolicy)
    except msgspec.ValidationError as exc:
        raise PolicyError(_explain(exc, raw, where)) from None


def too_deep(name: str) -> PolicyError:
    """The refusal of route ``name``'s raw data nested past :data:`MAX_DEPTH`.

    Also for a document a decoder gave up on (``RecursionError``), which happens deeper.
    """
    return PolicyError(
        f"{_where(name)}: nested too deeply (more than {MAX_DEPTH} levels of lists and mappings)"
    )


def _where(name: str) -> str:
    return f"routes.{name if len(name) <= 60 else name[:56] + '...'}"


def _nests_deeper_than(raw: object, most: int) -> bool:
    """Whether lists and mappings nest past ``most`` levels; iterative, so any depth is safe."""
    pending: list[tuple[object, int]] = [(raw, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            children: Iterable[object] = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > most:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def parse_routes(raw: object) -> dict[str, RoutePolicy]:
    """Validate a ``routes:`` mapping of route name to policy (``None`` means no routes)."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PolicyError(
            f"routes: expected a mapping of route name to policy, got {type(raw).__name__}"
        )
    routes: dict[str, RoutePolicy] = {}
    for name, policy in raw.items():
        if not isinstance(name, str):
            raise PolicyError(f"routes: route names must be strings, got {name!r}")
        routes[name] = parse_route(name, policy)
    return routes


def route_to_dict(policy: RoutePolicy) -> dict[str, Any]:
    """Plain data for JSON/YAML with every effective value spelled out; ``parse_route`` inverts it.

    Keys whose value is ``None`` and whose default is ``None`` (no split, default version,
    no per-try timeout, no compare rule) are left out; ``circuit_breaker: null`` (disabled)
    is kept because its default is enabled.
    """
    plain = _to_plain(policy)
    assert isinstance(plain, dict)
    return plain


def _to_plain(value: object) -> object:
    if isinstance(value, msgspec.Struct):
        out: dict[str, object] = {}
        for field in msgspec.structs.fields(value):
            item = getattr(value, field.name)
            if item is None and field.default is None:
                continue
            out[field.name] = _to_plain(item)
        return out
    if isinstance(value, tuple):
        return [_to_plain(item) for item in value]
    return value


def _versions_as_strings(raw: object) -> object:
    """YAML reads ``version: 2`` as an int; targets name versions as strings."""
    if isinstance(raw, list):
        return [_versions_as_strings(item) for item in raw]
    if not isinstance(raw, dict):
        return raw
    out = {key: _versions_as_strings(value) for key, value in raw.items()}
    version = out.get("version")
    if "model" in out and isinstance(version, int) and not isinstance(version, bool):
        out["version"] = str(version)
    return out


# ---- msgspec's errors, reworded with the full path, the allowed values and the bad value ----

_SEGMENT = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_WORDS = {"int": "an integer", "float": "a number", "str": "a string"}
_WORDS |= {"object": "a mapping", "array": "a list"}


def _explain(exc: msgspec.ValidationError, raw: object, where: str) -> str:
    message, _, at = str(exc).partition(" - at `")
    if at.startswith("key` in `"):  # a mapping key that is not a string, e.g. ``1: x``
        message, at = "keys must be strings", at.removeprefix("key` in `")
    relative = at.rstrip("`").removeprefix("$")
    path = where + relative
    cause = exc.__cause__
    if isinstance(cause, _FieldError):
        return f"{path}{'' if cause.field.startswith('[') else '.'}{cause.field}: {cause.problem}"
    node = _type_at(relative)
    if match := re.fullmatch(r"Object contains unknown field `(.+)`", message):
        names = [f.name for f in node.fields] if isinstance(node, mi.StructType) else []
        return f"{path}: unknown key {match[1]!r}; expected one of {', '.join(names)}"
    if match := re.fullmatch(r"Object missing required field `(.+)`", message):
        return f"{path}: missing required key {match[1]!r}"
    if match := re.fullmatch(r"Invalid enum value (.+)", message):
        return f"{path}: {match[1]} is not one of {', '.join(getattr(node, 'values', ()))}"
    if match := re.fullmatch(r"Expected `(.+)`, got `.+`", message):
        expected = " or ".join(_WORDS.get(t, t) for t in match[1].split(" | "))
        got = repr(_value_at(raw, relative))
        return f"{path}: expected {expected}, got {got if len(got) < 60 else got[:56] + '...'}"
    return f"{path}: {message}"


def _segments(path: str) -> list[str | int]:
    return [name or int(index) for name, index in _SEGMENT.findall(path)]


def _unwrap(node: mi.Type) -> mi.Type:
    """``X | None`` -> ``X``: errors inside an optional section are about ``X``."""
    if isinstance(node, mi.UnionType):
        return next(t for t in node.types if not isinstance(t, mi.NoneType))
    return node


def _type_at(path: str) -> mi.Type:
    node = _unwrap(mi.type_info(RoutePolicy))
    for segment in _segments(path):
        if isinstance(segment, int) and isinstance(node, mi.VarTupleType):
            node = _unwrap(node.item_type)
        elif isinstance(segment, str) and isinstance(node, mi.StructType):
            node = _unwrap(next((f.type for f in node.fields if f.name == segment), mi.AnyType()))
        else:
            return mi.AnyType()
    return node


def _value_at(raw: object, path: str) -> object:
    for segment in _segments(path):
        if isinstance(segment, int) and isinstance(raw, list) and segment < len(raw):
            raw = raw[segment]
        elif isinstance(segment, str) and isinstance(raw, dict):
            raw = raw.get(segment)
        else:
            return None
    return raw
