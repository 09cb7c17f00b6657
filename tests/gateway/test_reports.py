"""``GET /reports/...`` serves the jobs' HTML reports from the store, and nothing else.

On-call follows an alert's report link; the reports show distributions of logged inputs,
so they need ``read:logs``, and no path may reach a file outside the reports folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.auth import AuthConfig, mint_token
from gateway.reports import ReportNotFound, read_report, report_file
from gateway.settings import GatewaySettings
from tests.gateway.fakes import REPLICAS, FakeRuntime, gateway_factory

SECRET = "r" * 48
AUTH = AuthConfig.from_dict({"algorithm": "HS256", "secret": SECRET})
PAGE = "<!doctype html><title>drift</title><svg></svg>"


def _settings(store: Path) -> GatewaySettings:
    return GatewaySettings.from_dict(
        {
            "replicas": [f"http://{r}" for r in REPLICAS],
            "auth": {"algorithm": "HS256", "secret": SECRET},
            "log": {"store": str(store)},
        }
    )


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    folder = tmp_path / "store" / "reports"
    (folder / "drift" / "titanic" / "2").mkdir(parents=True)
    (folder / "drift" / "titanic" / "2" / "latest.html").write_text(PAGE)
    (folder / "index.html").write_text("<!doctype html><title>index</title>")
    (tmp_path / "store" / "secret.html").write_text("not a report")
    (folder / "drift" / "notes.txt").write_text("not served")
    return folder


@pytest.fixture
def gateway(tmp_path: Path, reports: Path) -> Iterator[Any]:
    with gateway_factory(FakeRuntime(models={"iris": ["1"]})) as start:
        yield start(_settings(tmp_path / "store"))


def _as(scope: str) -> dict[str, str]:
    return {"authorization": f"Bearer {mint_token(AUTH, 'oncall', [scope], 600)}"}


def test_a_report_is_served_as_html_to_a_reader(gateway: Any) -> None:
    answer = gateway.client.get("/reports/drift/titanic/2/latest.html", headers=_as("read:logs"))
    assert answer.status_code == 200
    assert answer.text == PAGE
    assert answer.headers["content-type"].startswith("text/html")
    assert "script-src" not in answer.headers["content-security-policy"]
    assert "default-src 'none'" in answer.headers["content-security-policy"]


def test_the_index_is_the_folder_page(gateway: Any) -> None:
    for path in ("/reports", "/reports/"):
        answer = gateway.client.get(path, headers=_as("read:logs"))
        assert answer.status_code == 200, path
        assert "index" in answer.text


def test_reports_need_the_read_logs_scope(gateway: Any) -> None:
    path = "/reports/drift/titanic/2/latest.html"
    assert gateway.client.get(path).status_code == 401
    assert gateway.client.get(path, headers=_as("predict")).status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/reports/drift/titanic/2/missing.html",
        "/reports/drift/notes.txt",
        "/reports/../secret.html",
        "/reports/%2e%2e/secret.html",
        "/reports/drift/..%2f..%2fsecret.html",
    ],
)
def test_nothing_outside_the_reports_is_served(gateway: Any, path: str) -> None:
    answer = gateway.client.get(path, headers=_as("read:logs"))
    assert answer.status_code == 404, (path, answer.text)
    assert "not a report" not in answer.text


def test_report_file_refuses_paths_out_of_the_folder(reports: Path) -> None:
    assert report_file(reports, "drift/titanic/2/latest.html").name == "latest.html"
    assert report_file(reports, "").name == "index.html"
    outside = reports.parent / "secret.html"
    (reports / "drift" / "link.html").symlink_to(outside)
    for path in ("../secret.html", "drift/link.html", "/etc/passwd", "drift/notes.txt"):
        with pytest.raises(ReportNotFound):
            report_file(reports, path)


@pytest.mark.parametrize(
    "path",
    [
        "/reports/x%00y",
        "/reports/drift/%00.html",
        "/reports/" + "a" * 300 + ".html",
        "/reports/" + ("b" * 200 + "/") * 30 + "latest.html",
    ],
)
def test_a_path_the_file_system_refuses_is_a_404(gateway: Any, path: str) -> None:
    answer = gateway.client.get(path, headers=_as("read:logs"))
    assert answer.status_code == 404, (path, answer.text)
    assert answer.json()["error"].startswith("no report at /reports/")


def test_a_report_that_cannot_be_read_is_a_404(reports: Path, monkeypatch) -> None:
    def unreadable(_: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", unreadable)
    with pytest.raises(ReportNotFound, match=r"no report at /reports/index\.html"):
        read_report(reports, "index.html")


def test_no_reports_yet_says_so_rather_than_pointing_at_itself(gateway: Any, reports: Path):
    (reports / "index.html").unlink()
    answer = gateway.client.get("/reports/", headers=_as("read:logs"))
    assert answer.status_code == 404
    assert answer.json() == {
        "error": "no reports yet: the list at /reports/ appears once the drift or explain "
        "job has written a report"
    }
