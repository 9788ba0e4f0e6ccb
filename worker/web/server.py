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

import contextlib
import json
import logging
import mimetypes
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from worker.errors import WorkerError
from worker.web.auth import Auth, TooManyFailures

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
#: Connections held at once (a thread each). One more closes the connection that has waited
#: longest without sending a request (a client that connects and never asks, or one keeping an
#: idle connection open): a flood of idle connections cannot keep anyone out. If none is
#: idle, the newcomer is answered 503 and closed at once.
MAX_CONNECTIONS = 64
#: Requests in progress at once, probes (``PROBES``) not counted: the rest of the connections
#: stay for probes and idle clients, so a liveness probe answers while the pages are flooded.
MAX_BUSY = 48
#: Paths a liveness or readiness probe, or a metrics scraper, asks for: never behind a login.
PROBES = frozenset({"/healthz", "/health", "/metrics"})
#: What the login page itself needs.
_OPEN = frozenset({"/login", "/api/session"})
#: A login form is small: more is not one.
_MAX_FORM = 4096
#: Files are sent in chunks of this size: memory per download stays flat, whatever the file.
_CHUNK = 256 * 1024


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
    # A streaming body: chunks written as they come, until the iterator ends. With ``length``
    # (a file), sent with its Content-Length on a connection kept alive; without (MJPEG),
    # the connection closes at its end.
    stream: Iterable[bytes] | None = None
    length: int | None = None


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
    try:
        f = path.open("rb")
    except OSError:
        return not_found()
    length = end - start + 1
    return Response(status, b"", ctype, headers, stream=_Chunks(f, start, length), length=length)


class _Chunks:
    """``length`` bytes of ``f`` from ``start``, a chunk at a time. ``close()`` closes the file
    whether or not sending began (a generator's ``with`` would not run if never started: a
    client gone before the headers were out leaked the file)."""

    def __init__(self, f: BinaryIO, start: int, length: int) -> None:
        self._f, self._start, self._length = f, start, length

    def __iter__(self) -> Iterator[bytes]:
        f, length = self._f, self._length
        f.seek(self._start)
        while length > 0:
            chunk = f.read(min(_CHUNK, length))
            if not chunk:
                return  # the file shrank under us: what there was
            length -= len(chunk)
            yield chunk

    def close(self) -> None:
        self._f.close()


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


def _see(location: str, headers: dict[str, str] | None = None) -> Response:
    """303 See Other: the browser asks for ``location`` next, with GET."""
    return Response(303, headers={"Location": location, **(headers or {})})


def _login_page() -> Response:
    path = Path(__file__).parent / "assets" / "login.html"
    return Response(200, path.read_bytes(), "text/html; charset=utf-8")


class _Handler(BaseHTTPRequestHandler):
    """One connection's requests, answered from ``server.routes``."""

    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = _SEND_TIMEOUT_S  # also for a client that connects and never asks

    def handle_one_request(self) -> None:
        self.server.waiting(self.connection, True)
        super().handle_one_request()

    def parse_request(self) -> bool:
        self.server.waiting(self.connection, False)  # a request came: not idle now
        return super().parse_request()

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        self.connection.settimeout(_SEND_TIMEOUT_S)
        url = urlsplit(self.path)
        raw = url.path
        probe = raw in PROBES
        if not probe and not self.server.busy.acquire(blocking=False):
            self.close_connection = True
            self._send(Response(503, b"busy\n", headers={"Retry-After": "1"}), method)
            return
        try:
            if method == "POST":
                self._send(self._post(raw), method)
            elif probe or self._allowed(raw):
                self._send(self._answer(method, raw, url.query), method)
            else:
                self._send(self._login_first(raw, url.query), method)
        finally:
            if not probe:
                self.server.busy.release()

    # -- the login -------------------------------------------------------------------------

    def _allowed(self, raw: str) -> bool:
        auth = self.server.auth
        if auth is None or raw in _OPEN or raw.startswith("/assets/"):
            return True
        return auth.allows(self.headers.get("Cookie"))

    def _login_first(self, raw: str, query: str) -> Response:
        """Not logged in: a page goes to the login, anything else is told so."""
        wants_page = "text/html" in (self.headers.get("Accept") or "")
        if wants_page and not raw.startswith("/api/"):
            back = raw + (f"?{query}" if query else "")
            return _see("/login?" + urlencode({"next": back}))
        return json_response({"error": "log in first (/login)"}, 401)

    def _post(self, raw: str) -> Response:
        auth = self.server.auth
        if raw == "/logout":
            if auth is not None:
                auth.logout(self.headers.get("Cookie"))
            return _see("/login?out", {"Set-Cookie": Auth.cleared()})
        if raw != "/login" or auth is None:
            return Response(405, b"not here\n")
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = -1
        if not 0 <= n <= _MAX_FORM:
            self.close_connection = True
            return Response(413, b"a login form is smaller\n")
        form = parse_qs(self.rfile.read(n).decode("utf-8", "replace"))
        user, password = (form.get(k, [""])[0] for k in ("user", "password"))
        back = form.get("next", ["/"])[0]
        if not back.startswith("/") or back.startswith("//"):
            back = "/"  # only here: a login is no door to another site
        try:
            token = auth.login(user, password, self.client_address[0])
        except TooManyFailures as e:
            wait = f"{e.retry_after_s:.0f}"
            return Response(
                303, headers={"Location": f"/login?limited={wait}", "Retry-After": wait}
            )
        if token is None:
            return Response(
                303, headers={"Location": "/login?" + urlencode({"failed": 1, "next": back})}
            )
        return Response(303, headers={"Location": back, "Set-Cookie": auth.cookie(token)})

    def _answer(self, method: str, raw: str, query: str) -> Response:
        found = self.server.routes.find(raw)
        if found is None:
            return not_found(f"not found: {raw[:200]}")
        handler, segments = found
        req = Request(method, unquote(raw), segments, parse_qs(query), self.headers)
        try:
            return handler(req)
        except Exception as e:  # a handler's bug: one line in the log, a 500 here
            log.warning("http %s: %s: %s", raw[:200], type(e).__name__, e)
            return Response(500, b"internal error\n")

    def _send(self, resp: Response, method: str) -> None:
        try:
            self.send_response(resp.status)
            self.send_header("Content-Type", resp.content_type)
            self.send_header("Cache-Control", "no-store")
            for k, v in resp.headers.items():
                self.send_header(k, v)
            if resp.stream is not None and resp.length is None:
                self.send_header("Connection", "close")
                self.close_connection = True
            else:
                n = len(resp.body) if resp.stream is None else resp.length
                self.send_header("Content-Length", str(n))
            self.end_headers()
            if method == "HEAD":
                return
            self.wfile.write(resp.body)
            for chunk in resp.stream or ():
                self.wfile.write(chunk)
                if resp.length is None:
                    self.wfile.flush()
        except (OSError, ValueError):
            self.close_connection = True  # the client went away, or stopped reading
        finally:
            close = getattr(resp.stream, "close", None)
            if close is not None:
                close()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape or a page refresh every second is not news


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 makes a burst of connections wait for the kernel's
    # SYN retries (1 s, 3 s, 7 s...) before the server even sees them.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], routes: Router, auth: Auth | None) -> None:
        self.routes = routes
        self.auth = auth
        self.busy = threading.BoundedSemaphore(MAX_BUSY)
        self._lock = threading.Lock()
        # Open connections -> since when they have waited for a request (None: serving one).
        self._open: dict[socket.socket, float | None] = {}
        super().__init__(address, _Handler)

    def waiting(self, conn: socket.socket, idle: bool) -> None:
        with self._lock:
            if conn in self._open:
                self._open[conn] = time.monotonic() if idle else None

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            full = len(self._open) >= MAX_CONNECTIONS
            idle = [(t, c) for c, t in self._open.items() if t is not None]
            victim = min(idle, key=lambda p: p[0])[1] if full and idle else None
            if not full or victim is not None:
                self._open[request] = time.monotonic()
        if victim is not None:
            with contextlib.suppress(OSError):
                victim.shutdown(socket.SHUT_RDWR)  # its thread reads the end and leaves
        elif full:
            # Full of requests in progress: say so and close, in this (the accepting)
            # thread, without waiting.
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
            with self._lock:
                self._open.pop(request, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client resetting its connection (a video element abandoning a range download)
        # is routine: one debug line, not a traceback on the console.
        e = sys.exc_info()[1]
        log.debug("http: connection from %s ended: %s: %s", client_address, type(e).__name__, e)


class WebServer:
    """A router served on ``host:port`` by a daemon thread; ``close()`` stops it. With
    ``auth``, every path but the probes and the login asks for a logged-in session."""

    def __init__(
        self,
        router: Router,
        port: int,
        host: str = "",
        what: str = "port",
        auth: Auth | None = None,
    ) -> None:
        router.add("/login", lambda _: _login_page())
        router.add("/api/session", lambda _: json_response({"login": auth is not None}))
        try:
            self.httpd = _Server((host, port), router, auth)
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
