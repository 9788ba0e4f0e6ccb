"""The Redis connection: built from ``WORKER_REDIS_URL``, named without its password.

redis-py's own retries are turned off: a command it retries after the connection dropped may
already have run on the server, and our callers decide themselves which calls are safe to
repeat (every Lua script here is: each checks a job id or lease token before it changes
anything). The worker loop retries with backoff; the CLI reports one ``error:`` line.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from worker.errors import QueueError, SettingsError
from worker.settings import Settings

__all__ = ["TRANSIENT", "connect", "describe_url", "printable", "redis_errors", "utf8_problem"]

#: Errors after which the same call may succeed later: Redis restarting (refused, LOADING),
#: a network blip, a replica promoted (READONLY until clients reconnect to the new primary).
#: Authentication failures are ConnectionErrors in redis-py but will not pass by themselves.
TRANSIENT: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)
_SCHEMES = ("redis", "rediss", "unix")


def utf8_problem(text: str) -> str | None:
    """Why ``text`` (as read with ``surrogateescape``) was not UTF-8 in Redis, or None."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        byte = text[e.start].encode("utf-8", "surrogateescape")
        return f"not UTF-8 text (byte 0x{byte.hex()} at position {e.start})"
    return None


def printable(text: str) -> str:
    """``text`` with the bytes that were not UTF-8 written as ``\\xNN`` escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def describe_url(url: str) -> str:
    """``scheme://host:port/db`` with the user and password left out: safe for logs and errors."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "localhost"
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "an unparsable URL"
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    return f"{parts.scheme}://{host}{port}{parts.path or ''}"


def connect(settings: Settings, *, name: str = "video-worker") -> redis.Redis:
    url = settings.redis_url.get_secret_value()
    scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    if scheme not in _SCHEMES:
        raise SettingsError(
            f"setting WORKER_REDIS_URL: expected redis://, rediss:// or unix:// "
            f"(got {'scheme ' + repr(scheme) if scheme else 'no scheme'})"
        )
    try:
        client: redis.Redis = redis.Redis.from_url(
            url,
            decode_responses=True,
            # Bytes that are not UTF-8 (anyone can XADD raw bytes) must not crash a reply's
            # decoding: they arrive as lone surrogates, which ``utf8_problem`` finds, and go
            # back out as the same bytes.
            encoding_errors="surrogateescape",
            # Longer than the longest BLOCK we issue (about one heartbeat), short enough that a
            # frozen Redis is noticed before a lease runs out.
            socket_timeout=max(5.0, 3 * settings.heartbeat_s),
            socket_connect_timeout=5.0,
            socket_keepalive=True,
            health_check_interval=15,
            retry=Retry(NoBackoff(), 0),
            client_name=f"{name}-{socket.gethostname()}"[:64].replace(" ", "_"),
        )
    except ValueError:
        # redis-py's message may quote the URL, which may carry the password: say it ourselves.
        raise SettingsError(
            "setting WORKER_REDIS_URL: not a valid Redis URL "
            "(expected redis://[user:password@]host:port/db)"
        ) from None
    return client


@contextlib.contextmanager
def redis_errors(settings: Settings) -> Iterator[None]:
    """Turn redis-py errors into one-line ``QueueError``s naming the server but no password."""
    where = describe_url(settings.redis_url.get_secret_value())
    try:
        yield
    except (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError):
        raise SettingsError(
            f"setting WORKER_REDIS_URL: Redis at {where} refused the user/password"
        ) from None
    except redis.exceptions.NoPermissionError as e:
        raise QueueError(f"Redis at {where}: the user lacks a permission ({e})") from None
    except TRANSIENT as e:
        raise QueueError(f"Redis at {where}: unreachable ({e})") from None
