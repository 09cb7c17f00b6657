"""Automated canary analysis: step a new version's traffic up while it stays healthy.

A route whose policy has a ``canary`` section (``gateway.policy_model.Canary``) answers through a
split the canary derives: arm ``stable`` (the primary) and arm ``canary`` (the new target),
weighted by the current step. The gateway watches both arms and, every ``TICK_S``:

- **rolls back** (weight 0, ``status: rolled_back``) as soon as the canary, with at least
  ``min_requests`` requests in the current step, fails more than ``max_error_rate`` of them
  (a 5xx, or an answer that needed a fallback), or its p90 latency passes
  ``max_latency_ratio`` times the stable arm's (and by more than ``latency_slack_s``), or,
  with ``max_extra_drifted_features`` set, when the drift job's latest checks of both arms
  since the step began find more features drifted on the canary arm and not on the stable
  arm than that (``DriftCheck``, read from the prediction log's latest drift results);
- **advances** to the next step once the step has lasted ``interval_s`` and the canary has
  ``min_requests`` requests in it without tripping a bound;
- **promotes** after the last step: the canary's target becomes the primary and the
  ``canary`` section goes.

Each decision is applied like an admin ``PUT``: validated, persisted (in a worker thread:
the write may wait for another gateway's lock), swapped atomically (``gateway.route_table``),
unless the route's file changed since the policy it was measured on was read (another
gateway's ``PUT``): then it is dropped, and the new policy judged afresh.
``gateway.canary_verdict`` decides (``judge``, pure, and ``applied``, the policy after a
decision); :class:`CanaryController` measures and applies. Any change to the route,
by the controller or the admin API, restarts the current step's window. Metrics:
``driftgate_canary_weight_percent{route}``, ``driftgate_canary_decisions_total{route,action}``,
``driftgate_canary_leader``; each applied decision is an INTERNAL span ``canary {route}``
and a log line; alert ``DriftgateCanaryRolledBack``.

Gateways that share a ``routes_dir`` each measure the traffic they answer and publish it
(``gateway.canary_share``); only the one holding the folder's lease (``gateway.lease``)
decides, on all of it, and the others take its decisions from the folder
(``gateway.route_watch``). A decider whose looks keep failing (``MAX_FAILED_LOOKS`` in a
row: its writes into the folder, or its reads, raise) gives the lease up, so that another
gateway decides, from the steps saved in the route files; it tries to take the lease back
like any gateway, ``LOOKS_WITHOUT_LEASE`` looks later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from opentelemetry import trace

from gateway.canary_share import Gathered, SharedWindows, policy_digest
from gateway.canary_verdict import (
    DriftCheck,
    DriftChecks,
    Verdict,
    applied,
    judge,
    no_drift_checks,
)
from gateway.canary_window import ArmWindow
from gateway.lease import FileLease
from gateway.policy_model import CANARY_ARM, STABLE_ARM, Canary, RoutePolicy
from gateway.route_table import RouteTable
from monitoring.gateway_metrics import GatewayMetrics

log = logging.getLogger("driftgate.gateway.canary")

#: Seconds between two looks at every canary.
TICK_S = 5.0
#: Failed looks in a row after which the decider gives the lease up: a gateway whose
#: writes into ``routes_dir`` (decisions, measurements) keep failing would otherwise keep
#: every canary where it is for as long as the fault lasts, while another could decide.
MAX_FAILED_LOOKS = 3
#: Looks a gateway that gave the lease up makes without trying to take it back, so that
#: every other gateway sharing the folder tries first.
LOOKS_WITHOUT_LEASE = 3


class CanaryStats:
    """Per route, the stable and canary arms' windows; fed by every answered request."""

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], ArmWindow] = {}

    def observe(self, route: str, arm: str, *, failed: bool, seconds: float) -> None:
        if arm not in (STABLE_ARM, CANARY_ARM):
            return
        window = self._windows.get((route, arm))
        if window is None:
            window = self._windows[(route, arm)] = ArmWindow()
        window.requests += 1
        window.failures += failed
        window.latencies.append(seconds)

    def window(self, route: str, arm: str) -> ArmWindow:
        return self._windows.get((route, arm)) or ArmWindow()

    def restart(self, route: str) -> None:
        for arm in (STABLE_ARM, CANARY_ARM):
            self._windows.pop((route, arm), None)

    def routes(self) -> set[str]:
        """The routes that have windows."""
        return {route for route, _ in self._windows}

    def keep_only(self, routes: set[str]) -> None:
        """Forget the windows of every other route (its canary ended, or the route went)."""
        for key in [key for key in self._windows if key[0] not in routes]:
            del self._windows[key]


class CanaryController:
    """Looks at every progressing canary each ``tick_s`` and applies what :func:`judge` says."""

    def __init__(
        self,
        routes: RouteTable,
        stats: CanaryStats,
        metrics: GatewayMetrics,
        tracer: trace.Tracer,
        *,
        clock: Callable[[], float] = time.monotonic,
        tick_s: float = TICK_S,
        drift_checks: DriftChecks = no_drift_checks,
        wall_clock: Callable[[], float] = time.time,
        lease: FileLease | None = None,
        shared: SharedWindows | None = None,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self.routes = routes
        self.stats = stats
        self.metrics = metrics
        self.tracer = tracer
        self.clock = clock
        self.tick_s = tick_s
        self.drift_checks = drift_checks
        self.wall_clock = wall_clock  # drift checks are dated in Unix time
        self.lease = lease or FileLease(None)
        self.shared = shared or SharedWindows(None)
        #: Called (on the event loop) after a decision changed a route.
        self.on_change = on_change
        #: The policy seen per route, since when (clock) and since when in Unix time.
        self._watched: dict[str, tuple[RoutePolicy, float, float]] = {}
        #: Routes whose canary weight is exported: a route removed takes its series along.
        self._weighted: set[str] = set()
        #: One look at a time, however many callers (the run loop, tests).
        self._ticking = asyncio.Lock()
        #: Looks in a row that failed while this gateway held the lease.
        self._failed_looks = 0
        #: Looks left before this gateway, which gave the lease up, tries to take it back.
        self._lease_rest = 0

    async def run(self) -> None:
        """Look every ``tick_s`` until cancelled. A look that fails (the shared folder full,
        or a network file system's hiccup: a write raises ``OSError``) is logged and the
        next one goes ahead: ended, the loop would judge no canary again until a restart.
        After ``MAX_FAILED_LOOKS`` in a row, the decider gives the lease up."""
        try:
            while True:
                try:
                    await self._look()
                except OSError as exc:
                    log.error("canary analysis: %s; trying again in %g s", exc, self.tick_s)
                    self._look_failed(exc)
                except Exception as exc:  # a bug must not end canary analysis for good either
                    log.exception("canary analysis failed; trying again in %g s", self.tick_s)
                    self._look_failed(exc)
                else:
                    self._failed_looks = 0
                await asyncio.sleep(self.tick_s)
        finally:
            # Not ``release``: a look cancelled while it took the lease in a worker thread
            # must not keep it after this gateway stopped.
            self.lease.close()
            try:
                await asyncio.to_thread(self.shared.withdraw)
            except OSError as exc:  # stopping all the same; the file goes stale in 30 s
                log.error("could not withdraw this gateway's canary measurements: %s", exc)

    async def _look(self) -> None:
        if self._lease_rest:
            self._lease_rest -= 1
            decides = False
        else:
            decides = await asyncio.to_thread(self.lease.held)
        self.metrics.canary_leader.set(1 if decides else 0)
        others = await asyncio.to_thread(self.shared.gather) if decides else {}
        await self.tick(decides=decides, others=others)
        await asyncio.to_thread(self.shared.publish, self.measured())

    def _look_failed(self, exc: Exception) -> None:
        """Count a look that failed while this gateway decides, and give the lease up after
        ``MAX_FAILED_LOOKS`` in a row: the route files keep every canary's step, so another
        gateway sharing the folder goes on from there."""
        if not self.lease.holding:
            return
        self._failed_looks += 1
        if self._failed_looks < MAX_FAILED_LOOKS:
            return
        self._failed_looks = 0
        self._lease_rest = LOOKS_WITHOUT_LEASE
        self.lease.release()
        self.metrics.canary_leader.set(0)
        self.metrics.canary_lease_given_up.inc()
        log.error(
            "gave up the canary lease %s after %d failed looks in a row (the last: %s): "
            "another gateway sharing the folder may make the canary decisions, from the "
            "steps saved in the route files; this one tries to take it back in %g s",
            self.lease.path,
            MAX_FAILED_LOOKS,
            str(exc) or repr(exc),
            (LOOKS_WITHOUT_LEASE + 1) * self.tick_s,
        )

    def measured(self) -> dict[str, tuple[str, dict[str, ArmWindow]]]:
        """This gateway's windows of every progressing canary, for the other gateways."""
        return {
            route: (
                policy_digest(policy),
                {arm: self.stats.window(route, arm) for arm in (STABLE_ARM, CANARY_ARM)},
            )
            for route, (policy, _, _) in self._watched.items()
        }

    async def tick(
        self, *, decides: bool = True, others: Gathered | None = None
    ) -> dict[str, Verdict]:
        """One look at every canary; returns the verdicts (for tests and the admin view).

        A gateway that does not hold the lease (``decides=False``) measures and judges but
        applies nothing: the lease holder's decisions reach it through ``routes_dir``. The
        holder adds ``others``, the other gateways' windows (``gateway.canary_share``), to
        its own.

        The windows change with every request on the event loop, so they are judged there;
        only the decisions' writes, which may wait for another gateway's lock and then
        fsync, run in a worker thread, one after the other.
        """
        async with self._ticking:
            verdicts, decisions = self._judge_all(decides, others or {})
            for route, policy, verdict in decisions:
                await self._apply(route, policy, verdict)
            return verdicts

    def _judge_all(
        self, decides: bool, others: Gathered
    ) -> tuple[dict[str, Verdict], list[tuple[str, RoutePolicy, Verdict]]]:
        """Every canary's verdict, and the decisions to apply (route, measured policy,
        verdict); on the event loop, like the requests that fill the windows."""
        now = self.clock()
        verdicts: dict[str, Verdict] = {}
        decisions: list[tuple[str, RoutePolicy, Verdict]] = []
        configured = self.routes.configured()
        for route in [r for r in self._watched if r not in configured]:
            del self._watched[route]
        for route in self._weighted - configured.keys():  # a route removed: its series too
            self._export_weight(route, None)
        for route, policy in configured.items():
            canary = policy.canary
            self._export_weight(route, canary)
            if canary is None or canary.status != "progressing":
                self._watched.pop(route, None)
                continue
            seen = self._watched.get(route)
            if seen is None:
                # Every action's series exists from the start at 0, so that increase() and
                # the rollback alert see the first decision.
                for action in ("advance", "promote", "rollback"):
                    self.metrics.canary_decisions.labels(route, action)
                if self.routes.routes_dir is None:
                    log.warning(
                        "the canary of route %s is not saved (no routes_dir): a restart of "
                        "this gateway forgets its steps, rollback or promotion and starts "
                        "over from gateway.yaml",
                        route,
                    )
            if seen is None or seen[0] is not policy:  # a new step, or the route changed
                self._watched[route] = (policy, now, self.wall_clock())
                self.stats.restart(route)
                continue
            elsewhere = others.get((route, policy_digest(policy)), {})
            verdict = judge(
                canary,
                self.stats.window(route, STABLE_ARM).plus(elsewhere.get(STABLE_ARM)),
                self.stats.window(route, CANARY_ARM).plus(elsewhere.get(CANARY_ARM)),
                now - seen[1],
                self._drift_since(policy, canary, seen[2]),
            )
            verdicts[route] = verdict
            if decides and verdict.action != "hold":
                decisions.append((route, policy, verdict))
        # Requests answered after their canary ended (in flight at the decision) land here.
        self.stats.keep_only(set(self._watched))
        return verdicts, decisions

    def _drift_since(
        self, policy: RoutePolicy, canary: Canary, step_began: float
    ) -> tuple[DriftCheck, DriftCheck] | None:
        """Both arms' latest drift checks, when both ran since the step began."""
        if canary.max_extra_drifted_features is None:
            return None
        checks = [
            self.drift_checks(target.model, target.version, arm)
            for target, arm in ((policy.primary, STABLE_ARM), (canary.target, CANARY_ARM))
        ]
        stable, candidate = checks
        if stable is None or candidate is None:
            return None
        if min(stable.checked_at, candidate.checked_at) < step_began:
            return None
        return stable, candidate

    async def _apply(self, route: str, policy: RoutePolicy, verdict: Verdict) -> None:
        canary = policy.canary
        assert canary is not None
        updated = applied(policy, verdict)
        attributes: dict[str, str | int] = {
            "driftgate.route": route,
            "driftgate.canary.action": verdict.action,
            "driftgate.canary.reason": verdict.reason,
            "driftgate.canary.step": canary.step,
            "driftgate.canary.weight_percent": canary.weight,
            "driftgate.canary.target": f"{canary.target.model}:{canary.target.version or ''}",
        }
        with self.tracer.start_as_current_span(f"canary {route}", attributes=attributes) as span:
            # Measured on the policy as this gateway last read it: another gateway may have
            # written the route since (an operator's PUT), and that write wins.
            write = asyncio.ensure_future(
                asyncio.to_thread(self.routes.replace_if_unchanged, route, policy, updated)
            )
            try:
                written = await asyncio.shield(write)
            except asyncio.CancelledError:
                # The gateway stops (run() cancelled), but a worker thread cannot be stopped:
                # wait for the write and note it, so that the lease goes, and the windows are
                # withdrawn, only after this gateway's last write.
                await asyncio.wait({write})
                if not write.cancelled() and write.exception() is None:
                    self._settle(
                        route, canary, verdict, updated=updated, written=write.result(), span=span
                    )
                raise
            self._settle(route, canary, verdict, updated=updated, written=written, span=span)

    def _settle(
        self,
        route: str,
        canary: Canary,
        verdict: Verdict,
        *,
        updated: RoutePolicy,
        written: bool,
        span: trace.Span,
    ) -> None:
        """Note a decision's write, back on the event loop: metrics, span, log line."""
        if not written:
            span.set_attribute("driftgate.canary.dropped", True)
            log.info(
                "canary decision on route %s dropped (%s): the route changed since it was "
                "measured (another gateway or an operator wrote it); the new policy is "
                "judged afresh",
                route,
                verdict.action,
            )
            return
        self.metrics.canary_decisions.labels(route, verdict.action).inc()
        self._export_weight(route, updated.canary)
        self.on_change()
        level = logging.WARNING if verdict.action == "rollback" else logging.INFO
        log.log(
            level,
            "canary of route %s (%s version %s) at %d%%: %s (%s)",
            route,
            canary.target.model,
            canary.target.version or "(default)",
            canary.weight,
            verdict.action,
            verdict.reason,
        )

    def _export_weight(self, route: str, canary: Canary | None) -> None:
        gauge = self.metrics.canary_weight
        if canary is None:
            self._weighted.discard(route)
            with contextlib.suppress(KeyError):  # it never had one
                gauge.remove(route)
        else:
            self._weighted.add(route)
            gauge.labels(route).set(canary.weight)
