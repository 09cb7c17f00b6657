"""What an admin ``DELETE`` of a route does to the route's canary, in words (pure).

A canary's progress (``step``, ``status``, ``reason``) is part of the route's policy, saved
in the route's file in ``routes_dir``; a ``DELETE`` removes that file, so the canary ends
there and its progress is gone. What serves next is gateway.yaml's policy, whose canary
(if any) runs as gateway.yaml writes it, or nothing: a later ``PUT`` with a ``canary``
section starts a new canary from the step it gives (the first by default). The admin API
(``gateway.admin``) answers and logs :func:`canary_discarded`'s sentence, so that an
operator who expected the canary to pause learns that it will not resume.
"""

from __future__ import annotations

from gateway.policy_model import Canary, RoutePolicy


def canary_discarded(
    route: str, removed: RoutePolicy | None, restored: RoutePolicy | None
) -> str | None:
    """The sentence for a ``DELETE`` of ``route`` that removed ``removed`` (None when it
    had no canary) and let ``restored`` (gateway.yaml's policy, or None) serve again."""
    canary = removed.canary if removed is not None else None
    if canary is None:
        return None
    ended = (
        f"the canary of route {route} ({_target(canary)}, {_progress(canary)}) ended and its "
        "progress is discarded"
    )
    again = restored.canary if restored is not None else None
    if again is not None:
        return (
            f"{ended}; gateway.yaml's canary ({_target(again)}) serves again as gateway.yaml "
            f"writes it ({_progress(again)})"
        )
    return (
        f"{ended}; a later PUT with a canary section starts a new canary, from the step that "
        "PUT gives (the first unless it sets canary.step)"
    )


def _target(canary: Canary) -> str:
    return f"{canary.target.model} version {canary.target.version or '(default)'}"


def _progress(canary: Canary) -> str:
    if canary.status == "progressing":
        return f"step {canary.step + 1} of {len(canary.steps)}, {canary.weight}% of the traffic"
    return f"rolled back: {canary.reason or 'no reason recorded'}"
