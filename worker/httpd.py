"""``/metrics`` in the Prometheus text format and ``/healthz`` as JSON, for ``worker serve`` and
``worker monitor`` alike; the monitor adds its pages to the same server (``worker.web``)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from worker.web.auth import Auth
from worker.web.server import Request, Response, Router, WebServer

__all__ = ["Health", "serve_http"]

#: What ``/healthz`` reports: (healthy?, JSON body).
Health = Callable[[], tuple[bool, dict[str, Any]]]


def serve_http(
    port: int,
    exposition: Callable[[], bytes],
    health: Health,
    host: str = "",
    router: Router | None = None,
    auth: Auth | None = None,
) -> WebServer:
    """``/metrics`` and ``/healthz`` (200 when ``health`` says ok, else 503) on ``host:port``
    (``""``: all interfaces), plus ``router``'s pages if given (behind ``auth``'s login, if
    given; the probes never are), in a daemon thread."""
    routes = router or Router()

    def metrics(_: Request) -> Response:
        return Response(200, exposition(), CONTENT_TYPE_LATEST)

    def healthz(_: Request) -> Response:
        ok, state = health()
        return Response(200 if ok else 503, json.dumps(state).encode(), "application/json")

    routes.add("/metrics", metrics)
    routes.add("/healthz", healthz)
    routes.add("/health", healthz)
    return WebServer(
        routes, port, host, what="setting WORKER_METRICS_PORT/WORKER_METRICS_HOST", auth=auth
    )
