"""``GET /reports/...``: the jobs' HTML reports, served from the store's ``reports/`` folder.

The drift and explain jobs write self-contained HTML (inline SVG, no scripts) under
``<store>/reports/``: ``drift/<model>/<version>/<run>.html`` and ``latest.html`` beside
it, ``explain/...`` likewise, and ``index.html`` listing the latest of each. Alerts link
to them. They show distributions of logged inputs, so they need the scope ``read:logs``
when auth is on, like the SQL endpoint.

Only files inside the reports folder are served (a path that resolves outside it, a
symlink out, or a file that is not ``.html``/``.svg``/``.json`` is a 404). So is any path
the file system refuses (a NUL byte, a name too long) or a file that cannot be read: the
client sees a 404 in JSON, never a 500.
"""

from __future__ import annotations

from pathlib import Path

from litestar import Response, get
from litestar.params import FromPath

from gateway.errors import GatewayError
from gateway.feedback import LogUnavailable
from gateway.state import AnyRequest, gateway_state

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}


class ReportNotFound(GatewayError):
    status_code = 404


def report_file(reports: Path, path: str) -> Path:
    """The file under ``reports`` that ``path`` names; raises ``ReportNotFound``."""
    root = reports.resolve()
    try:
        candidate = (root / (path or "index.html")).resolve()
        if candidate.is_dir():
            candidate = candidate / "index.html"
        inside = candidate == root or root in candidate.parents
        if inside and candidate.suffix in _MEDIA_TYPES and candidate.is_file():
            return candidate
    except (OSError, ValueError):  # a name too long; ValueError: a NUL byte
        pass
    raise _not_found(path)


def read_report(reports: Path, path: str) -> tuple[bytes, str]:
    """The bytes and media type of the report ``path`` names; raises ``ReportNotFound``."""
    found = report_file(reports, path)
    try:
        return found.read_bytes(), _MEDIA_TYPES[found.suffix]
    except OSError:  # removed by the jobs' clean-up since, or not readable
        raise _not_found(path) from None


def _not_found(path: str) -> ReportNotFound:
    if not path:
        return ReportNotFound(
            "no reports yet: the list at /reports/ appears once the drift or explain "
            "job has written a report"
        )
    return ReportNotFound(f"no report at /reports/{path}; the list is at /reports/")


@get("/reports", sync_to_thread=False)
def reports_index(request: AnyRequest) -> Response[bytes]:
    return _serve(request, "")


@get("/reports/{path:path}", sync_to_thread=False)
def reports(request: AnyRequest, path: FromPath[str]) -> Response[bytes]:
    return _serve(request, path)


def _serve(request: AnyRequest, path: str) -> Response[bytes]:
    state = gateway_state(request)
    state.authorize(request, "read:logs")
    if state.settings.log is None:
        raise LogUnavailable("the prediction log is off, so there are no job reports")
    body, media_type = read_report(state.settings.log.store / "reports", path.lstrip("/"))
    return Response(
        body,
        media_type=media_type,
        headers={
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
            # Reports are static: no scripts, styles and images inline only.
            "Content-Security-Policy": (
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
            ),
        },
    )


ROUTES = [reports_index, reports]
