"""Route policies from and to plain data: parsing, validation messages, serialisation.

A route is keyed by the public model name clients call; its policy is the data model of
``gateway.policy_model`` (:class:`RoutePolicy` and the structs it holds). Policies come
from ``gateway.yaml`` (``routes:``), from one YAML file per route, or from the admin API;
all three go through :func:`parse_route`, and :func:`route_to_dict` is its inverse (admin
``GET`` and persistence). The reference for every key is ``docs/routing.md``.

Problems raise :class:`PolicyError` naming the field path, e.g.
``routes.titanic.split.arms[1].weight: must be >= 0, got -3``: msgspec's own errors are
reworded here with the full path, the allowed values and the bad value. Before any struct
is built, the raw data is bounded too: how deeply it nests (:data:`MAX_DEPTH`) and the size
of a policy document (:data:`MAX_POLICY_BYTES`, which its readers enforce).

Where it sits: policy (data) -> ``gateway.planner.plan_route`` (pure decision per request)
-> the dispatcher (I/O), which also owns ``gateway.balancer`` and ``gateway.circuit`` state.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import msgspec
import msgspec.inspect as mi

from gateway.policy_model import (
    Compare,
    FieldError,
    PolicyError,
    RoutePolicy,
    Target,
    check_name,
    is_valid_name,
    name_problem,
)

#: Lists and mappings inside one another in a policy's raw data; a valid policy needs 5.
MAX_DEPTH = 32
#: The largest policy document (an admin ``PUT`` body, a route file) taken at all.
MAX_POLICY_BYTES = 1 << 20

#: This module's names, and the model's names most callers import from here.
__all__ = [
    "MAX_DEPTH",
    "MAX_POLICY_BYTES",
    "Compare",
    "PolicyError",
    "RoutePolicy",
    "Target",
    "check_name",
    "default_route",
    "is_valid_name",
    "parse_route",
    "parse_routes",
    "route_to_dict",
    "too_deep",
]


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
    if problem := name_problem(name, "route name"):
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
    if isinstance(cause, FieldError):
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
