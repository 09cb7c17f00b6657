"""Which event loop the servers run on (driftgate.cli): asyncio for the runtime, uvloop for
the gateway, either on request (BENCHMARKS.md, "Runtime: event loop")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

import runtime.heap
from driftgate.cli import build_parser, main


def test_the_runtime_defaults_to_asyncio_and_the_gateway_to_uvloop() -> None:
    parser = build_parser()
    assert parser.parse_args(["runtime", "--repository", "m"]).loop == "asyncio"
    assert parser.parse_args(["gateway", "--config", "g.yaml"]).loop == "uvloop"


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["runtime", "--repository", "m", "--loop", "trio"])


@pytest.mark.parametrize("choice", ["asyncio", "uvloop"])
def test_the_runtime_serves_on_the_loop_asked_for(
    choice: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options))
    monkeypatch.setattr(runtime.heap, "enable", lambda: None)

    assert main(["runtime", "--repository", str(tmp_path), "--loop", choice]) == 0

    assert served["loop"] == choice
    assert issubclass(served["http"], HttpToolsProtocol)  # with the slow-client deadline
