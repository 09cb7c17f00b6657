"""Drift alerts of model versions gone quiet: resolved, saying why, and forgotten.

A drift run checks the (model, version, arm) groups with answered requests in the last
``lookback_s`` (``drift.window.groups``). A version that stops serving (retired, its
traffic moved to another, its clients gone) is never checked again, so no run of its own
would resolve what the webhook's receiver holds for it as firing: on-call would keep an
alert that no longer describes anything, or silence it by hand and miss the next one.

So after the checks, every group the receiver holds as firing (``drift.alert_state``)
that had no answered request in the lookback gets "resolved", with the annotation
``resolved_because: no_traffic`` and a description saying that the traffic ended, not
the drift (``drift.alerts.quiet_payload``), and its entry is dropped. Should the version
serve again, the next run checks it like any other and fires again if it still drifts.
A post the receiver does not take, or one a stopping run does not send, is sent again by
the next run.
"""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import duckdb

from drift.alert_state import forget_firing, held_firing
from drift.alerts import WebhookNotifier
from drift.window import last_answered, last_answered_sql
from monitoring.job_run import check_stop

log = logging.getLogger("driftgate.drift")


def resolve_quiet(
    store: Path,
    notifier: WebhookNotifier,
    con: duckdb.DuckDBPyConnection,
    active: set[tuple[str, str, str]],
    *,
    now: datetime,
    lookback_s: float,
) -> list[str]:
    """Resolve what the receiver holds as firing for groups not in ``active`` (those with
    traffic in the lookback); returns those resolved. A failure is logged and left to the
    next run: it never fails this one (a damaged store aside, which the caller handles)."""
    try:
        held = held_firing(store, notifier.url)
    except Exception:
        log.exception("could not read the drift webhook's delivery state")
        return []
    resolved = []
    for entry in held:
        if (entry.model, entry.version, entry.arm) in active:
            continue
        check_stop()  # the entries left are resolved by the next run
        name = f"{entry.model}/{entry.version} arm {entry.arm}"
        try:
            sent = notifier.resolve_quiet(
                entry,
                now=now,
                last_seen=last_answered(con, entry.model, entry.version, entry.arm),
                lookback_s=lookback_s,
                sql=last_answered_sql(entry.model, entry.version, entry.arm),
            )
            if sent:
                forget_firing(store, entry.key, notifier.url, entry.firing)
        except duckdb.Error:  # the store's, not the alert's: set_aside_damaged's
            raise
        except Exception:
            log.exception("could not resolve the drift alerts of %s", name)
            continue
        if sent:
            log.info(
                "resolved the drift alerts of %s (%s): no traffic in the last %g s",
                name,
                ", ".join(sorted(entry.firing)),
                lookback_s,
            )
            resolved.append(name)
    return resolved
