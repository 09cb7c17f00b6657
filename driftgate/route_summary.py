"""What the ``routes`` commands do to and say about a route policy, as the admin API
returns it (plain dicts): ``reweigh`` changes its arms' weights and nothing else,
``summary`` and ``answering`` put it in one line for ``routes list`` and ``routes set``.
Pure functions: ``driftgate.routes_cli`` does the HTTP.
"""

from __future__ import annotations

from typing import Any


def reweigh(
    route: str, policy: dict[str, Any], weights: dict[str, int]
) -> tuple[dict[str, Any], list[tuple[str, int, int]]]:
    """``policy`` with the arms of its split weighted as ``weights`` says, and the changes
    as (arm, old, new); raises ValueError for a route without a split or an arm it lacks."""
    if (policy.get("canary") or {}).get("status") == "progressing":
        raise ValueError(
            f"route {route} runs a canary, which sets its arms' weights itself "
            "(docs/routing.md, 'Canary analysis'); change the canary with routes set"
        )
    split = policy.get("split")
    if not split:
        raise ValueError(f"route {route} has no split (A/B arms) to weigh; add one with routes set")
    arms = [dict(arm) for arm in split["arms"]]
    names = [arm["name"] for arm in arms]
    unknown = [name for name in weights if name not in names]
    if unknown:
        raise ValueError(
            f"route {route} has no arm {', '.join(map(repr, unknown))} "
            f"(its arms: {', '.join(names)})"
        )
    changes: list[tuple[str, int, int]] = []
    for arm in arms:
        old: int = arm["weight"]
        new = weights.get(arm["name"], old)
        if new != old:
            changes.append((arm["name"], old, new))
            arm["weight"] = new
    return {**policy, "split": {**split, "arms": arms}}, changes


def summary(policy: dict[str, Any]) -> str:
    """The route in one line: who answers it (``answering``), then what it mirrors to (each
    shadow with its percent) and its fallback chain, in order, e.g.
    ``iris v2; shadow iris v1 10%; fallback iris_onnx, iris v1``."""
    parts = [answering(policy)]
    shadows = policy.get("shadow") or []
    if shadows:
        mirrored = (f"{_target(s['target'])} {s.get('percent', 100):g}%" for s in shadows)
        parts.append("shadow " + ", ".join(mirrored))
    fallbacks = policy.get("fallback") or []
    if fallbacks:
        parts.append("fallback " + ", ".join(_target(target) for target in fallbacks))
    return "; ".join(parts)


def answering(policy: dict[str, Any]) -> str:
    """Who answers the route: its arms and weights (and canary), or its primary."""
    split = policy.get("split")
    if split:
        answers = ", ".join(
            f"{arm['name']} {arm['weight']} -> {_target(arm['target'])}" for arm in split["arms"]
        )
    else:
        answers = _target(policy["primary"])
    canary = policy.get("canary")
    if canary:
        answers += f" (canary {canary.get('status')}, step {canary.get('step')})"
    return answers


def _target(target: dict[str, Any]) -> str:
    version = target.get("version")
    return f"{target['model']} v{version}" if version else str(target["model"])
