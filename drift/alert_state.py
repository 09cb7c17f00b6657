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
                                 "model": "...", "version": "...", "arm": "...",
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

A model version that stops serving is no longer checked, so no run of its own would ever
resolve what the receiver holds for it: ``held_firing`` lists every entry, and the job
resolves those of versions gone quiet, then ``forget_firing`` drops them. (Entries
written before ``model``/``version``/``arm`` were kept are read from their key, whose
last two parts are the version and the arm, which hold no ``/``.)
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from monitoring.prediction_log.layout import store_lock, write_text_file

log = logging.getLogger(__name__)

ALERTS_DIR = "alerts"
STATE_FILE = "drift_webhook.json"
LOCK_NAME = "drift_webhook"  # <store>/.staging/drift_webhook.lock


@dataclass(frozen=True, slots=True)
class HeldFiring:
    """What the receiver holds as firing for one model version and arm."""

    key: str
    model: str
    version: str
    arm: str
    firing: frozenset[str]


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
    target: tuple[str, str, str] | None = None,
) -> None:
    """Set what the receiver at ``webhook`` holds as firing for ``key``, keeping every
    other key (read, merge and replace under the store lock). ``target``: the key's
    (model, version, arm), kept for ``held_firing``."""
    entry: dict[str, Any] = {
        "webhook_sha256": webhook_digest(webhook),
        "firing": sorted(set(firing)),
        "run_id": run_id,
        "updated": updated.isoformat(),
    }
    if target is not None:
        entry["model"], entry["version"], entry["arm"] = target
    path = state_path(store)
    with store_lock(store, LOCK_NAME):
        entries = _read(store)
        entries[key] = entry
        write_text_file(store, path, json.dumps(entries, indent=1, sort_keys=True))


def held_firing(store: Path, webhook: str) -> list[HeldFiring]:
    """Every model version and arm for which the receiver at ``webhook`` holds a firing
    alert, in key order."""
    digest = webhook_digest(webhook)
    held = []
    for key, entry in sorted(_read(store).items()):
        if not isinstance(entry, dict) or entry.get("webhook_sha256") != digest:
            continue
        firing = entry.get("firing")
        if not isinstance(firing, list) or not firing:
            continue
        target = _target(key, entry)
        if target is None:
            log.warning("ignoring the drift webhook's delivery state of %r: no model version", key)
            continue
        held.append(HeldFiring(key, *target, frozenset(str(f) for f in firing)))
    return held


def forget_firing(store: Path, key: str, webhook: str, firing: Iterable[str]) -> bool:
    """Drop ``key``'s entry once its alerts are resolved for good, unless it changed in the
    meantime (another process fired them again). True when it was dropped."""
    with store_lock(store, LOCK_NAME):
        entries = _read(store)
        entry = entries.get(key)
        if (
            not isinstance(entry, dict)
            or entry.get("webhook_sha256") != webhook_digest(webhook)
            or set(entry.get("firing") or ()) != set(firing)
        ):
            return False
        del entries[key]
        write_text_file(store, state_path(store), json.dumps(entries, indent=1, sort_keys=True))
        return True


def _target(key: str, entry: dict[str, Any]) -> tuple[str, str, str] | None:
    fields = (entry.get("model"), entry.get("version"), entry.get("arm"))
    if all(isinstance(field, str) for field in fields):
        return str(fields[0]), str(fields[1]), str(fields[2])
    parts = key.rsplit("/", 2)
    return (parts[0], parts[1], parts[2]) if len(parts) == 3 and all(parts) else None


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
