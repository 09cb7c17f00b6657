"""What a canary's current step deserves, decided from its measurements alone (pure).

:func:`judge` takes a ``canary`` section (``gateway.policy_model.Canary``), the step's
windows of both arms (``gateway.canary_window.ArmWindow``), how long the step has run and,
when the drift job has checked both arms since it began, those checks (:class:`DriftCheck`),
and returns a :class:`Verdict`: hold, advance, promote or roll back, with the reason.
:func:`applied` is the route's policy after a verdict. ``drift_checks_from`` reads the
checks from the drift job's latest results (``monitoring.job_results``).

``gateway.canary.CanaryController`` measures, calls these every tick and applies what they
say; the rules themselves are told in that module's docstring and ``docs/routing.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import msgspec

from gateway.canary_window import ArmWindow
from gateway.policy_model import Canary, RoutePolicy
from monitoring.job_results import Entries, drifted_features

# One logger for the whole canary, judging and applying alike (operators filter on it).
log = logging.getLogger("driftgate.gateway.canary")

Action = Literal["hold", "advance", "promote", "rollback"]


@dataclass(frozen=True)
class DriftCheck:
    """The drift job's latest check of one arm: when it ran, and what it found drifted."""

    checked_at: float  # Unix seconds
    drifted: frozenset[str]  # input and output features


#: The latest drift check of (model, version, arm), or None. A version that is None or a
#: label (the gateway does not know which number it names) matches any version.
DriftChecks = Callable[[str, str | None, str], DriftCheck | None]


def no_drift_checks(model: str, version: str | None, arm: str) -> DriftCheck | None:
    """Without a prediction log there is no drift job to ask."""
    return None


def drift_checks_from(entries: Callable[[], Entries]) -> DriftChecks:
    """``DriftChecks`` over the latest drift results (``monitoring.job_results``)."""

    def latest(model: str, version: str | None, arm: str) -> DriftCheck | None:
        newest: DriftCheck | None = None
        for key, entry in entries().items():
            if entry.get("model") != model or entry.get("arm") != arm:
                continue
            if version is not None and version.isdigit() and str(entry.get("version")) != version:
                continue
            try:
                checked_at, drifted = drifted_features(entry)
            except (KeyError, TypeError, ValueError) as exc:
                log.debug("skipping malformed latest drift entry %s: %r", key, exc)
                continue
            if newest is None or checked_at > newest.checked_at:
                newest = DriftCheck(checked_at, frozenset(drifted))
        return newest

    return latest


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str


def judge(
    canary: Canary,
    stable: ArmWindow,
    candidate: ArmWindow,
    elapsed_s: float,
    drift: tuple[DriftCheck, DriftCheck] | None = None,
) -> Verdict:
    """What to do with a progressing canary, from its current step's windows and, when the
    drift job has checked both arms since the step began, those checks (stable, canary)."""
    enough = candidate.requests >= canary.min_requests
    if enough and candidate.error_rate > canary.max_error_rate:
        return Verdict(
            "rollback",
            f"error rate {candidate.error_rate:.2%} ({candidate.failures} of "
            f"{candidate.requests}) > {canary.max_error_rate:.2%}",
        )
    allowed = canary.max_extra_drifted_features
    if allowed is not None and drift is not None:
        extra = sorted(drift[1].drifted - drift[0].drifted)
        if len(extra) > allowed:
            return Verdict(
                "rollback",
                f"drift: {len(extra)} feature(s) drifted on the canary arm and not on the "
                f"stable arm ({', '.join(extra)}) > {allowed}",
            )
    if enough and stable.requests >= canary.min_requests:
        slower_by = candidate.p90() - stable.p90()
        ratio = candidate.p90() / stable.p90() if stable.p90() > 0 else 1.0
        if ratio > canary.max_latency_ratio and slower_by > canary.latency_slack_s:
            return Verdict(
                "rollback",
                f"p90 latency {candidate.p90() * 1000:.1f} ms is {ratio:.2f}x the stable "
                f"arm's {stable.p90() * 1000:.1f} ms (> {canary.max_latency_ratio:g}x)",
            )
    if elapsed_s < canary.interval_s:
        return Verdict("hold", f"step {canary.step} runs {canary.interval_s:g}s")
    if not enough:
        return Verdict(
            "hold", f"waiting for traffic: {candidate.requests} of {canary.min_requests} requests"
        )
    last = canary.step == len(canary.steps) - 1
    healthy = f"healthy at {canary.weight}%: error rate {candidate.error_rate:.2%}"
    return Verdict("promote" if last else "advance", healthy)


def applied(policy: RoutePolicy, verdict: Verdict) -> RoutePolicy:
    """The route's policy after ``verdict`` (not ``hold``) on its canary."""
    canary = policy.canary
    assert canary is not None
    replace = msgspec.structs.replace
    if verdict.action == "advance":
        return replace(policy, split=None, canary=replace(canary, step=canary.step + 1))
    if verdict.action == "rollback":
        return replace(
            policy,
            split=None,
            canary=replace(canary, status="rolled_back", reason=verdict.reason),
            # A fallback to the primary backed the canary; the primary needs none to itself.
            fallback=tuple(t for t in policy.fallback if t != policy.primary),
        )
    if verdict.action == "promote":
        return replace(
            policy,
            primary=canary.target,
            split=None,
            canary=None,
            fallback=tuple(t for t in policy.fallback if t != canary.target),
        )
    raise ValueError(f"nothing to apply for {verdict.action!r}")
