"""Who may see the pages: one user, a salted password hash, a session cookie.

- The password is never stored or configured in the clear: ``hash_password`` makes the line to
  configure (``worker password`` prints it), scrypt with a random salt; ``verify`` compares in
  constant time.
- A login gives a random session token in a cookie that scripts cannot read (``HttpOnly``) and
  other sites cannot send (``SameSite=Strict``); sessions end after ``session_s`` or at logout.
- Failed logins are limited per client address (``max_failures`` a ``window_s``), and in all
  (ten times that), so guessing is slow even from many addresses.

Probes (``/healthz``, ``/metrics``) stay open: ``worker.web.server`` decides which paths ask.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie

from worker.errors import SettingsError

__all__ = ["COOKIE", "Auth", "TooManyFailures", "hash_password", "verify"]

COOKIE = "vw_session"
_SCHEME = "scrypt"
_N, _R, _P = 2**14, 8, 1  # ~16 MiB and ~50 ms a check here: slow to guess, quick to log in
_MAX_SESSIONS = 1000


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 << 20, dklen=32)


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$16384$8$1$<salt>$<hash>`` (base64): what ``WORKER_UI_PASSWORD_HASH`` holds."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = _scrypt(password, salt, _N, _R, _P)
    b64 = base64.b64encode
    return f"{_SCHEME}${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes]:
    try:
        scheme, n, r, p, salt, digest = stored.strip().split("$")
        if scheme != _SCHEME:
            raise ValueError(scheme)
        return int(n), int(r), int(p), base64.b64decode(salt), base64.b64decode(digest)
    except ValueError:
        raise SettingsError(
            "setting WORKER_UI_PASSWORD_HASH: not a password hash; expected the line "
            "'worker password' prints (scrypt$...)"
        ) from None


def verify(password: str, stored: str) -> bool:
    """Whether ``password`` is the one ``stored`` (a ``hash_password`` line) was made from."""
    n, r, p, salt, digest = _parse(stored)
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), digest)


class TooManyFailures(Exception):
    """Logins refused for now; ``retry_after_s`` says for how long."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed logins; try again in {retry_after_s:.0f} s")
        self.retry_after_s = retry_after_s


class Auth:
    """The login of one server's pages."""

    def __init__(
        self,
        user: str,
        password_hash: str,
        *,
        session_s: float = 12 * 3600,
        max_failures: int = 5,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _parse(password_hash)  # a malformed hash is refused at start, not at the first login
        self.user = user
        self._hash = password_hash
        self.session_s = session_s
        self.max_failures = max_failures
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, float] = {}  # token -> when it expires
        self._failures: dict[str, deque[float]] = {}  # client address -> when it failed
        self._all_failures: deque[float] = deque()

    def _wait_s(self, failed: deque[float], limit: int, now: float) -> float:
        while failed and now - failed[0] > self.window_s:
            failed.popleft()
        return self.window_s - (now - failed[0]) if len(failed) >= limit else 0.0

    def login(self, user: str, password: str, client: str) -> str | None:
        """A new session's token, or None for a wrong user or password; ``TooManyFailures``
        while this client (or everyone) failed too often lately."""
        now = self._clock()
        with self._lock:
            mine = self._failures.setdefault(client, deque())
            wait = max(
                self._wait_s(mine, self.max_failures, now),
                self._wait_s(self._all_failures, 10 * self.max_failures, now),
            )
            if wait > 0:
                raise TooManyFailures(wait)
        # Both compared, always: the time taken says nothing of which one was wrong.
        right_user = hmac.compare_digest(user.encode(), self.user.encode())
        right_password = verify(password, self._hash)
        with self._lock:
            if not (right_user and right_password):
                mine.append(now)
                self._all_failures.append(now)
                return None
            if len(self._sessions) >= _MAX_SESSIONS:
                self._expire(now, oldest=True)
            token = secrets.token_urlsafe(32)
            self._sessions[token] = now + self.session_s
            return token

    def _expire(self, now: float, *, oldest: bool = False) -> None:
        for token, until in list(self._sessions.items()):
            if until <= now:
                del self._sessions[token]
        if oldest and len(self._sessions) >= _MAX_SESSIONS:
            del self._sessions[min(self._sessions, key=self._sessions.__getitem__)]

    def token_of(self, cookie_header: str | None) -> str | None:
        if not cookie_header:
            return None
        try:
            morsel = SimpleCookie(cookie_header).get(COOKIE)
        except CookieError:
            return None
        return morsel.value if morsel is not None else None

    def allows(self, cookie_header: str | None) -> bool:
        """Whether the request's cookie holds a live session."""
        token = self.token_of(cookie_header)
        if token is None:
            return False
        with self._lock:
            until = self._sessions.get(token)
            if until is None or until <= self._clock():
                self._sessions.pop(token, None)
                return False
            return True

    def logout(self, cookie_header: str | None) -> None:
        token = self.token_of(cookie_header)
        if token is not None:
            with self._lock:
                self._sessions.pop(token, None)

    def cookie(self, token: str) -> str:
        """The ``Set-Cookie`` value for a new session."""
        return f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={int(self.session_s)}"

    @staticmethod
    def cleared() -> str:
        return f"{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
