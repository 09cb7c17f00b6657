"""What the drift webhook's receiver holds as firing, kept in the store so that it outlives
the jobs process.

``WebhookNotifier`` sends changes: "firing" for a drifted feature the receiver does not
hold as firing, "resolved" for one it holds that no longer drifts, and a post the receiver
did not take changes nothing it holds. That knowledge must survive a deploy, a crash,
``driftgate up`` restarting the jobs, and above all a Kubernetes CronJob, where every
``driftgate jobs --once`` is a new process: kept in memory, an undelivered "resolved" was
never sent again and an undelivered "firing" was lost while the drift went on. The last
published verdicts (``latest/drift.json``) are no substitute: they say what the job found,
not what the receiver heard.

    <store>/alerts/drift_webhook.json
    {"<model>/<version>/<arm>": {"webhook_sha256": "<hex>", "firing": ["sex", ...],
                                 "run_id": "...", "updated": ISO 8601}, ...}

One small JSON object replaced whole (staged, fsynced, ``os.replace``d) under the store
lock ``<store>/.staging/drift_webhook.lock``, like the latest results, rather than rows in
a tree: it is mutable state of a few keys read back by key on every run, not history for
analysts, and it is read before anything else of the run is known. Entries name the
webhook they describe by its URL's SHA-256 (a webhook URL often carries a token, and the
store is shared with analysts): a receiver at another URL has heard nothing, so it gets
"firing" for the drift going on. A missing or unreadable file means the same (a warning
says so): at worst a "firing" the receiver already has is sent again, which a receiver
that deduplicates by fingerprint ignores, never an alert lost.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from monitoring.prediction_log.layout import store_lock, write_text_file

log = logging.getLogger(__name__)

ALERTS_DIR = "alerts"
STATE_FILE = "drift_webhook.json"
LOCK_NAME = "drift_webhook"  # <store>/.staging/drift_webhook.lock


def state_path(store: Path) -> Path:
    return store / ALERTS_DIR / STATE_FILE


def webhook_digest(webhook: str) -> str:
    """How the file names a webhook: never the URL itself, which may hold a secret."""
    return hashlib.sha256(webhook.encode("utf-8")).hexdigest()


def read_firing(store: Path, key: str, webhook: str) -> frozenset[str]:
    """The features the receiver at ``webhook`` holds as firing for ``key``
    (``<model>/<version>/<arm>``); empty when nothing was delivered there."""
    entry = _read(store).get(key)
    if not isinstance(entry, dict) or entry.get("webhook_sha256") != webhook_digest(webhook):
        return frozenset()
    firing = entry.get("firing")
    if not isinstance(firing, list):
        return frozenset()
    return frozenset(str(feature) for feature in firing)


def record_firing(
    store: Path,
    key: str,
    webhook: str,
    firing: Iterable[str],
    *,
    run_id: str,
    updated: datetime,
) -> None:
    """Set what the receiver at ``webhook`` holds as firing for ``key``, keeping every
    other key (read, merge and replace under the store lock)."""
    entry = {
        "webhook_sha256": webhook_digest(webhook),
        "firing": sorted(set(firing)),
        "run_id": run_id,
        "updated": updated.isoformat(),
    }
    path = state_path(store)
    with store_lock(store, LOCK_NAME):
        entries = _read(store)
        entries[key] = entry
        write_text_file(store, path, json.dumps(entries, indent=1, sort_keys=True))


def _read(store: Path) -> dict[str, Any]:
    path = state_path(store)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # a JSONDecodeError is a ValueError
        log.warning(
            "ignoring the drift webhook's delivery state %s (%s): alerts still firing "
            "are sent again",
            path,
            exc,
        )
        return {}
    if not isinstance(data, dict):
        log.warning("ignoring the drift webhook's delivery state %s: not a JSON object", path)
        return {}
    return data
