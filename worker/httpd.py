"""The one HTTP server a long-running command starts: ``/metrics`` in the Prometheus text
format and ``/healthz`` as JSON, for ``worker serve`` and ``worker monitor`` alike."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from worker.errors import WorkerError

__all__ = ["Health", "serve_http"]

#: What ``/healthz`` reports: (healthy?, JSON body).
Health = Callable[[], tuple[bool, dict[str, Any]]]


def serve_http(
    port: int, exposition: Callable[[], bytes], health: Health, host: str = ""
) -> ThreadingHTTPServer:
    """``/metrics`` (Prometheus text format) and ``/healthz`` (200 when ``health`` says ok,
    else 503) on ``host:port`` (``""``: all interfaces), in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, exposition())
            elif path in ("/healthz", "/health"):
                ok, state = health()
                self._send(200 if ok else 503, "application/json", json.dumps(state).encode())
            else:
                self._send(404, "text/plain", b"not found: try /metrics or /healthz\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a scrape every few seconds is not news

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        where = f"{host}:{port}" if host else f"port {port}"
        raise WorkerError(
            f"setting WORKER_METRICS_PORT/WORKER_METRICS_HOST: cannot listen on {where} "
            f"({e.strerror or e})"
        ) from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True).start()
    return server
