"""What the ``driftgate`` command line accepts, and how it refuses the rest.

A user's mistake gets one line naming it and exit status 2, never a traceback. Flags are
checked as argparse parses them, by the types here (``port``, ``count``, ``seconds``,
``http_url``, ``log_level``); files and settings are checked by the sub-command before it
starts anything, which reports a problem with :func:`fail` (a missing gateway.yaml with
:func:`missing_config`). ``driftgate.cli`` and the
modules of its sub-commands (``driftgate.demo_cli``, ``driftgate.routes_cli``) use both.
Standard library only, so that ``driftgate --help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit


def port(text: str) -> int:
    """A TCP port, 1-65535 (a larger one would wrap around to another port, silently)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port 1-65535, got {text!r}")
    return value


def count(minimum: int) -> Callable[[str], int]:
    """A whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return value

    return parse


def seconds(*, zero: bool) -> Callable[[str], float]:
    """A finite number of seconds, > 0 (or >= 0 when ``zero`` means something)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(
                f"expected a finite number of seconds {'>= 0' if zero else '> 0'}, got {text!r}"
            )
        return value

    return parse


def http_url(text: str, example: str = "http://127.0.0.1:8001") -> str:
    """An http:// or https:// URL with a host (and a valid port, if any); a refusal shows
    ``example`` (a runtime replica's, unless said otherwise)."""
    try:
        parts = urlsplit(text)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 (raises ValueError when out of range)
    except ValueError:
        valid = False
    if not valid:
        raise argparse.ArgumentTypeError(
            f"expected an http:// or https:// URL such as {example}, got {text!r}"
        )
    return text


def gateway_url(text: str) -> str:
    """``http_url`` for a gateway: a refusal shows the gateway's default address."""
    return http_url(text, example="http://127.0.0.1:8000")


def log_level(text: str) -> str:
    """A logging level name; the default comes from DRIFTGATE_LOG_LEVEL, so say so."""
    levels = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
    if text.upper() not in levels:
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(levels)} (flag or DRIFTGATE_LOG_LEVEL), got {text!r}"
        )
    return text.upper()


def missing_config(path: Path) -> str | None:
    """Why ``path``, a sub-command's ``--config``, cannot be read as gateway.yaml when it
    is not a file (the default, ``var/gateway.yaml``, is relative: it exists only where
    ``driftgate up`` ran); None when it is one. Commands that read gateway.yaml check
    this first, so each says the same one line, not ``[Errno 2]``."""
    if path.is_file():
        return None
    return (
        f"no gateway configuration at {path}: name the gateway's with --config, or run "
        "`driftgate up` here first (it writes var/gateway.yaml)"
    )


def fail(message: str) -> int:
    """Print ``message`` as the command's one line on stderr; returns exit status 2."""
    print(f"driftgate: {message}", file=sys.stderr)
    return 2
