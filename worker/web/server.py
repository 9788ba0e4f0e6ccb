"""The one HTTP server a long-running command starts: ``/metrics``, ``/healthz``, and the pages.

Plain ``http.server`` with a thread per connection: a viewer that stops reading, or twenty of
them, ties up only its own thread. Nothing here waits on the pipeline and the pipeline never
waits on a connection: handlers read state the pipeline publishes (see ``mjpeg``).

Routes are exact paths or a prefix followed by path segments. Every segment taken from a URL
is checked before it names a file (``child``): plain names only (no ``..``, no hidden files,
no slashes, encoded or not), and the resolved path (symlinks followed) must stay inside its
folder. Files are served with HTTP range requests, so a browser's video element can seek.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from worker.errors import WorkerError

__all__ = [
    "Request",
    "Response",
    "Router",
    "WebServer",
    "child",
    "file_response",
    "json_response",
    "not_found",
]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=,@-]{0,254}$")
#: A socket read or write that makes no progress for this long: the client is gone, not
#: reading, or never sent its request.
_SEND_TIMEOUT_S = 20.0
#: Connections served at once (a thread each); more are answered 503 and closed at once.
MAX_CONNECTIONS = 64


@dataclass
class Request:
    method: str
    path: str  # decoded, without the query
    segments: list[str]  # the path segments after the route's prefix (decoded)
    query: dict[str, list[str]]
    headers: Any

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    # A streaming body (MJPEG): chunks written as they come, until the iterator ends.
    stream: Iterator[bytes] | None = None


Handler = Callable[[Request], Response]


def json_response(obj: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(obj).encode(), "application/json")


def not_found(what: str = "not found") -> Response:
    return Response(404, f"{what}\n".encode())


def child(root: Path, *parts: str) -> Path | None:
    """``root/parts...`` if every part is a plain name and the resolved path stays inside
    ``root``; None otherwise (the caller answers 404, saying nothing about why)."""
    for p in parts:
        if not _NAME.match(p) or ".." in p:
            return None
    base = root.resolve()
    path = base.joinpath(*parts).resolve()
    if path != base and base not in path.parents:
        return None
    return path


def file_response(path: Path, request: Request, content_type: str | None = None) -> Response:
    """The file, or the byte range the request asks for (206), or 416 for a range outside it."""
    try:
        size = path.stat().st_size
    except OSError:
        return not_found()
    ctype = content_type or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = {"Accept-Ranges": "bytes"}
    rng = request.headers.get("Range")
    start, end = 0, size - 1
    status = 200
    if rng:
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
        if m is None or (not m.group(1) and not m.group(2)):
            return Response(416, b"", headers={"Content-Range": f"bytes */{size}"})
        if m.group(1):
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
        else:  # the last N bytes
            start, end = max(0, size - int(m.group(2))), size - 1
        if start > end or start >= size:
            return Response(416, b"", headers={"Content-Range": f"bytes */{size}"})
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    with path.open("rb") as f:
        f.seek(start)
        body = f.read(end - start + 1)
    return Response(status, body, ctype, headers)


class Router:
    """Exact paths, and prefixes followed by path segments (``/cameras/`` -> [name, ...])."""

    def __init__(self) -> None:
        self.exact: dict[str, Handler] = {}
        self.prefixes: list[tuple[str, Handler]] = []

    def add(self, path: str, handler: Handler) -> None:
        if path.endswith("/") and path != "/":
            self.prefixes.append((path, handler))
            self.prefixes.sort(key=lambda p: -len(p[0]))
        else:
            self.exact[path] = handler

    def find(self, path: str) -> tuple[Handler, list[str]] | None:
        if path in self.exact:
            return self.exact[path], []
        for prefix, handler in self.prefixes:
            if path.startswith(prefix):
                # Split the raw path, then decode each segment: an encoded slash stays inside
                # its segment, where ``child`` refuses it.
                return handler, [unquote(s) for s in path[len(prefix) :].split("/")]
        return None


class WebServer:
    """A router served on ``host:port`` by a daemon thread; ``close()`` stops it."""

    def __init__(self, router: Router, port: int, host: str = "", what: str = "port") -> None:
        routes = router

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = _SEND_TIMEOUT_S  # also for a client that connects and never asks

            def do_GET(self) -> None:
                self._serve("GET")

            def do_HEAD(self) -> None:
                self._serve("HEAD")

            def _serve(self, method: str) -> None:
                self.connection.settimeout(_SEND_TIMEOUT_S)
                url = urlsplit(self.path)
                raw = url.path
                found = routes.find(raw)
                if found is None:
                    self._send(not_found(f"not found: {raw[:200]}"), method)
                    return
                handler, segments = found
                req = Request(method, unquote(raw), segments, parse_qs(url.query), self.headers)
                try:
                    resp = handler(req)
                except Exception as e:  # a handler's bug: one line in the log, a 500 here
                    log.warning("http %s: %s: %s", raw[:200], type(e).__name__, e)
                    resp = Response(500, b"internal error\n")
                self._send(resp, method)

            def _send(self, resp: Response, method: str) -> None:
                try:
                    self.send_response(resp.status)
                    self.send_header("Content-Type", resp.content_type)
                    self.send_header("Cache-Control", "no-store")
                    for k, v in resp.headers.items():
                        self.send_header(k, v)
                    if resp.stream is None:
                        self.send_header("Content-Length", str(len(resp.body)))
                        self.end_headers()
                        if method != "HEAD":
                            self.wfile.write(resp.body)
                        return
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    if method == "HEAD":
                        return
                    for chunk in resp.stream:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                except (OSError, ValueError):
                    self.close_connection = True  # the client went away, or stopped reading
                finally:
                    close = getattr(resp.stream, "close", None)
                    if close is not None:
                        close()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a scrape or a page refresh every second is not news

        slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def process_request(self, request: Any, client_address: Any) -> None:
                if not slots.acquire(blocking=False):
                    # Full: say so and close, in this (the accepting) thread, without waiting.
                    try:
                        request.settimeout(1.0)
                        request.sendall(
                            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                            b"Connection: close\r\n\r\n"
                        )
                    except OSError:
                        pass
                    self.shutdown_request(request)
                    return
                super().process_request(request, client_address)

            def process_request_thread(self, request: Any, client_address: Any) -> None:
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    slots.release()

        try:
            self.httpd = Server((host, port), Handler)
        except OSError as e:
            where = f"{host}:{port}" if host else f"port {port}"
            raise WorkerError(f"{what}: cannot listen on {where} ({e.strerror or e})") from None
        self.port = int(self.httpd.server_address[1])
        self.host = host
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="http-server", daemon=True
        )
        self._thread.start()

    @property
    def server_address(self) -> tuple[str, int]:
        return self.httpd.server_address[0], self.port  # type: ignore[return-value]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
