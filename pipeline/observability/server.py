"""A worker's own HTTP port: /metrics for Prometheus, /healthz for orchestrators.

/healthz answers 200 "ok" or 503 with the reasons (subscribed to nothing, input not moving while
records wait); the worker supplies the check. Off unless TRUSTREEL_METRICS_PORT is set.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

HealthCheck = Callable[[], list[str]]
"""Returns the problems; empty means healthy."""


def serve(port: int, health: HealthCheck, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            if self.path.startswith("/metrics"):
                self._answer(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif self.path.startswith("/healthz"):
                problems = health()
                body = ("ok\n" if not problems else "".join(f"{p}\n" for p in problems)).encode()
                self._answer(503 if problems else 200, body, "text/plain; charset=utf-8")
            else:
                self._answer(404, b"try /metrics or /healthz\n", "text/plain; charset=utf-8")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args) -> None:  # scrapes every few seconds are not news
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="trustreel-metrics", daemon=True).start()
    return server
