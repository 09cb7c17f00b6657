"""``POST /admin/sql`` while another process holds the store's catalog open read-write.

DuckDB's default ``duckdb.connect(path)`` opens the file read-write and locks it against
every other process. That is the server's condition for as long as the connection lives,
not a fault of the query: the answer is a 503 with ``Retry-After`` naming the holder.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.settings import GatewaySettings
from tests.catalog_holder import catalog_held_read_write
from tests.gateway.fakes import REPLICAS, GatewayFactory


def settings(tmp_path: Path) -> GatewaySettings:
    return GatewaySettings.from_dict(
        {
            "replicas": [f"http://{r}" for r in REPLICAS],
            "auth": {"enabled": False},
            "health_check": {"interval_s": 0.05, "timeout_s": 0.5},
            "log": {"store": str(tmp_path / "store"), "flush_interval_s": 0.2},
        }
    )


@pytest.fixture
def held_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The store's catalog, held read-write by another process (its PID)."""
    with catalog_held_read_write(tmp_path / "store", monkeypatch) as pid:
        yield pid


@pytest.mark.skipif(sys.platform != "linux", reason="file locks as on Linux")
def test_a_catalog_held_read_write_elsewhere_is_a_503_naming_the_holder(
    start: GatewayFactory, tmp_path: Path, held_catalog: int
) -> None:
    """It was a 400 ("query failed"), as if the analyst's query were wrong."""
    gateway = start(settings(tmp_path))

    answer = gateway.client.post("/admin/sql", json={"sql": "select 1"})

    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "10"
    error = answer.json()["error"]
    assert error.startswith("the store's catalog is busy: cannot open ")
    assert f"(PID {held_catalog})" in error
    assert "open it read-only (duckdb -readonly)" in error


def test_a_failing_query_is_still_a_400(start: GatewayFactory, tmp_path: Path) -> None:
    gateway = start(settings(tmp_path))

    answer = gateway.client.post("/admin/sql", json={"sql": "select * from nosuch"})

    assert answer.status_code == 400
    assert answer.json()["error"].startswith("query failed: Catalog Error")
