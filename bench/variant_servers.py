"""The servers behind gateway_overhead.py's variants that are not a plain ``driftgate``
command; the script starts each from itself through a hidden flag:

- ``--serve-gateway VARIANT CONFIG``: ``driftgate gateway`` with its upstream client swapped
  (``serve_gateway``); it says so on stderr (``SWAP_MARKER``), which the script checks.
- ``--serve-floor CONFIG``: ``proxy-floor``, a bare proxy on the gateway's stack
  (``serve_floor``).
- ``--serve-collector PORT``: the stand-in OTLP collector of ``gateway-exported``
  (``serve_collector``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

SWAP_MARKER = "bench: upstream client swapped for"


def _plain_httpx_transport(max_connections: int = 256) -> httpx.AsyncBaseTransport:
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=30,
    )
    return httpx.AsyncHTTPTransport(limits=limits)


def serve_gateway(variant: str, config: str) -> int:
    """``driftgate gateway --config CONFIG`` with the upstream client of ``variant``."""
    import gateway.app
    import gateway.upstream
    from driftgate.cli import main as cli_main

    if variant == "gateway-httpx":
        gateway.app.make_upstream = lambda _=None: gateway.upstream.HttpxUpstream(  # type: ignore[attr-defined,assignment]
            _plain_httpx_transport()
        )
    elif variant == "gateway-aiohttp":
        gateway.app.make_upstream = lambda _=None: gateway.upstream.AiohttpUpstream()  # type: ignore[attr-defined,assignment]
    elif variant == "gateway-httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        gateway.app.make_upstream = lambda _=None: gateway.upstream.HttpxUpstream(  # type: ignore[attr-defined,assignment]
            AiohttpTransport(
                limits=httpx.Limits(max_connections=256, max_keepalive_connections=256)
            )
        )
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    print(f"{SWAP_MARKER} {variant}", file=sys.stderr, flush=True)
    return cli_main(["--log-level", "WARNING", "gateway", "--config", config])


def serve_floor(config: str) -> int:
    """The ``proxy-floor`` variant: forward every request to the config's first replica.

    Reads the body, sends it on with ``Http1Upstream`` and answers with the runtime's status
    and body; GETs (the readiness probe) go through the same way. Nothing else: it is the
    yardstick for the gateway, not a product.
    """
    import uvicorn

    from gateway.http1 import Http1Upstream

    settings = json.loads(Path(config).read_text())
    replica, listen = settings["replicas"][0], settings["listen"]
    upstream = Http1Upstream()

    async def app(
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        url = f"{replica}{scope['path']}"
        headers = {"content-type": "application/json"}
        answer = await upstream.send(str(scope["method"]), url, headers, body, 30.0)
        length = str(len(answer.body)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", length)],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})

    uvicorn.run(
        app,
        host=listen["host"],
        port=listen["port"],
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    return 0


def serve_collector(port: int) -> int:
    """The ``gateway-exported`` variant's collector: 200 and an empty
    ``ExportTraceServiceResponse`` (no bytes) for every OTLP/HTTP export, counted;
    ``GET /stats`` says how many exports and bytes arrived; any other GET answers 200 (the
    readiness probe). Nothing is decoded: the cost measured is the exporting gateway's."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received = {"exports": 0, "bytes": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            size = len(self.rfile.read(int(self.headers.get("content-length", 0))))
            with lock:
                received["exports"] += 1
                received["bytes"] += size
            self._answer(b"", "application/x-protobuf")

        def do_GET(self) -> None:
            with lock:
                body = json.dumps(received).encode() if self.path == "/stats" else b"{}"
            self._answer(body, "application/json")

        def _answer(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: no line per export
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
    return 0
