"""The web interface: a small HTTP server (``server``), the pages, plain HTML, CSS and
JavaScript shipped as package data (``assets/``: no build step, nothing fetched from a CDN),
and MJPEG streams of annotated frames (``worker.web.mjpeg``, imported by itself: it needs
OpenCV, which the pages over the queue do not)."""

from worker.web.pages import asset_routes, page
from worker.web.server import (
    Request,
    Response,
    Router,
    WebServer,
    child,
    file_response,
    json_response,
    not_found,
)

__all__ = [
    "Request",
    "Response",
    "Router",
    "WebServer",
    "asset_routes",
    "child",
    "file_response",
    "json_response",
    "not_found",
    "page",
]
