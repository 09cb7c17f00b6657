"""Re-reads the JWT verification keys while the gateway runs, so that keys rotate without a
restart.

Every ``auth.jwks_refresh_s`` seconds, and soon after a token names a ``kid`` the keys lack
(the identity provider may have published a new key), the configured ``public_key_file``,
``jwks_file`` or ``jwks_url`` is read again in a worker thread. Keys that differ replace the
ones in use on the event loop, and the tokens verified so far are forgotten. A read that
fails keeps the keys in use, is logged, and is counted in
``driftgate_auth_key_refreshes_total{outcome="failed"}``, its time in
``driftgate_auth_keys_last_failure_timestamp_seconds``; alert ``DriftgateAuthKeysStale``
fires when no read has succeeded for an hour and one failed since the last good one.

Reads that an unknown kid asks for are at least ``MIN_GAP_S`` apart: a client sending tokens
with made-up kids cannot make the gateway hammer the identity provider.
"""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.auth import TokenVerifier
from gateway.jwks import KeyRing
from monitoring.gateway_metrics import GatewayMetrics

log = logging.getLogger("driftgate.gateway.keys")

#: Least seconds between two reads asked for by unknown kids.
MIN_GAP_S = 30.0


class KeyRefresher:
    """The background task that keeps ``verifier``'s keys current."""

    def __init__(
        self, verifier: TokenVerifier, metrics: GatewayMetrics, min_gap_s: float = MIN_GAP_S
    ) -> None:
        self.verifier = verifier
        self.metrics = metrics
        self.interval_s = verifier.config.jwks_refresh_s
        self.min_gap_s = min_gap_s
        self._asked = asyncio.Event()
        self._last_read = time.monotonic()
        verifier.on_unknown_kid = self._asked.set
        metrics.auth_keys_loaded.set(time.time())  # the verifier read them at start
        for outcome in ("changed", "unchanged", "failed"):  # at 0, for increase() and alerts
            metrics.auth_key_refreshes.labels(outcome)

    async def run(self) -> None:
        """Refresh until cancelled."""
        while True:
            await self._next_turn()
            await self.refresh()

    async def refresh(self) -> str:
        """Read the keys once; returns the outcome (changed | unchanged | failed)."""
        self._last_read = time.monotonic()
        source = self.verifier.config.key_source
        try:
            ring: KeyRing | None = await asyncio.to_thread(self.verifier.load_keys)
        except ValueError as exc:  # AuthConfigError: the file or URL cannot be used now
            log.error("JWT keys not refreshed from %s, the keys in use stay: %s", source, exc)
            self.metrics.auth_keys_failed.set(time.time())
            outcome = "failed"
        else:
            self.metrics.auth_keys_loaded.set(time.time())
            outcome = "changed" if self.verifier.use_keys(ring) else "unchanged"
            if outcome == "changed":
                kids = sorted(str(kid) for kid in (ring.keys if ring else {}))
                log.warning("JWT keys changed (%s): now kid %s", source, ", ".join(kids))
        self.metrics.auth_key_refreshes.labels(outcome).inc()
        return outcome

    async def _next_turn(self) -> None:
        """Wait for the interval to pass, or for an unknown kid once ``min_gap_s`` passed."""
        deadline = self._last_read + self.interval_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._asked.clear()
            try:
                await asyncio.wait_for(self._asked.wait(), timeout=remaining)
            except TimeoutError:
                return
            gap = self._last_read + self.min_gap_s - time.monotonic()
            if gap > 0:
                await asyncio.sleep(min(gap, max(deadline - time.monotonic(), 0)))
            return
