"""``worker.web.auth``: the pages' login, on its own (injected clocks) and over HTTP (a real
server on a free port, raw requests: no redirect followed, every header seen)."""

from __future__ import annotations

import http.client
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from worker.errors import SettingsError
from worker.httpd import serve_http
from worker.web import Response, Router, json_response
from worker.web.auth import COOKIE, Auth, TooManyFailures, hash_password, verify

PASSWORD = "correct horse battery"
STORED = hash_password(PASSWORD)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_password_is_kept_as_a_salted_hash_only() -> None:
    assert PASSWORD not in STORED and STORED.startswith("scrypt$16384$8$1$")
    assert verify(PASSWORD, STORED) and not verify(PASSWORD + " ", STORED)
    assert hash_password(PASSWORD) != STORED  # a salt of its own each time
    with pytest.raises(SettingsError, match="WORKER_UI_PASSWORD_HASH: not a password hash"):
        Auth("admin", "hunter2")  # the password itself configured by mistake: refused


def test_sessions_end_with_their_time_or_at_logout() -> None:
    clock = Clock()
    auth = Auth("admin", STORED, session_s=60, clock=clock)
    assert auth.login("admin", "wrong", "10.0.0.1") is None
    assert auth.login("root", PASSWORD, "10.0.0.1") is None
    token = auth.login("admin", PASSWORD, "10.0.0.1")
    assert token is not None and auth.allows(f"{COOKIE}={token}")
    assert not auth.allows(f"{COOKIE}=forged") and not auth.allows(None)
    clock.now += 61
    assert not auth.allows(f"{COOKIE}={token}")
    token = auth.login("admin", PASSWORD, "10.0.0.1")
    assert token is not None
    auth.logout(f"{COOKIE}={token}")
    assert not auth.allows(f"{COOKIE}={token}")


def test_failed_logins_are_limited_per_client_and_in_all() -> None:
    clock = Clock()
    auth = Auth("admin", STORED, max_failures=3, window_s=60, clock=clock)
    for _ in range(3):
        assert auth.login("admin", "guess", "10.0.0.1") is None
    with pytest.raises(TooManyFailures) as e:
        auth.login("admin", PASSWORD, "10.0.0.1")  # even the right one, for now
    assert 0 < e.value.retry_after_s <= 60
    assert auth.login("admin", PASSWORD, "10.0.0.2") is not None  # another client is not
    clock.now += 61
    assert auth.login("admin", PASSWORD, "10.0.0.1") is not None
    # Many addresses guessing together: everyone waits once they failed 10x the limit.
    for i in range(30):
        auth.login("admin", "guess", f"10.1.0.{i}")
    with pytest.raises(TooManyFailures):
        auth.login("admin", PASSWORD, "10.0.0.3")


# ------------------------------------------------------------------------------ over HTTP


@pytest.fixture
def port() -> Iterator[int]:
    routes = Router()
    routes.add("/", lambda _: Response(200, b"<h1>the cameras</h1>", "text/html"))
    routes.add("/api/cameras", lambda _: json_response({"cameras": {}}))
    server = serve_http(
        0, lambda: b"up 1\n", lambda: (True, {"ok": True}), "127.0.0.1", router=routes,
        auth=Auth("admin", STORED, max_failures=3),
    )  # fmt: skip
    yield server.port
    server.close()


def ask(
    port: int, method: str, path: str, *, form: dict[str, str] | None = None,
    cookie: str | None = None, accept: str = "text/html",
) -> tuple[int, Any, bytes]:  # fmt: skip
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Accept": accept}
    if cookie:
        headers["Cookie"] = cookie
    body = None
    if form is not None:
        body = urllib.parse.urlencode(form)
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    try:
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, r.headers, r.read()
    finally:
        c.close()


def test_pages_ask_for_a_login_and_the_probes_do_not(port: int) -> None:
    status, headers, _ = ask(port, "GET", "/")
    assert status == 303 and headers["Location"] == "/login?next=%2F"
    assert ask(port, "GET", "/api/cameras", accept="*/*")[0] == 401
    status, _, body = ask(port, "GET", "/login")
    assert status == 200 and b'action="/login"' in body
    assert ask(port, "GET", "/metrics")[2] == b"up 1\n"  # Prometheus needs no cookie
    assert ask(port, "GET", "/healthz")[0] == 200  # nor does a liveness probe


def test_a_login_gives_a_strict_session_and_logout_ends_it(port: int) -> None:
    status, headers, _ = ask(port, "POST", "/login",
                             form={"user": "admin", "password": "nope", "next": "/"})  # fmt: skip
    assert status == 303 and headers["Location"].startswith("/login?failed=1")
    assert "Set-Cookie" not in headers
    status, headers, _ = ask(
        port, "POST", "/login",
        form={"user": "admin", "password": PASSWORD, "next": "//evil.example/"},
    )  # fmt: skip
    assert status == 303 and headers["Location"] == "/"  # no open redirect to another site
    cookie = headers["Set-Cookie"]
    parts = {p.strip().split("=")[0].lower() for p in cookie.split(";")}
    assert {"httponly", "samesite", "path", "max-age"} <= parts and "SameSite=Strict" in cookie
    session = cookie.split(";")[0]
    assert ask(port, "GET", "/", cookie=session)[2] == b"<h1>the cameras</h1>"
    assert ask(port, "GET", "/api/cameras", cookie=session)[0] == 200
    status, headers, _ = ask(port, "POST", "/logout", cookie=session)
    assert status == 303 and "Max-Age=0" in headers["Set-Cookie"]
    assert ask(port, "GET", "/api/cameras", cookie=session, accept="*/*")[0] == 401


def test_failed_logins_are_answered_slowly_over_http(port: int) -> None:
    for _ in range(3):
        ask(port, "POST", "/login", form={"user": "admin", "password": "guess"})
    status, headers, _ = ask(port, "POST", "/login", form={"user": "admin", "password": PASSWORD})
    assert status == 303 and headers["Location"].startswith("/login?limited=")
    assert "Set-Cookie" not in headers and int(headers["Retry-After"]) > 0
