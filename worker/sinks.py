"""Where events go: a JSON-lines file, a Redis stream, a webhook; for cameras and files alike.

The file is appended to and flushed per event rather than written under a temporary name:
an event log is read while it grows (``tail -f``, log shippers), and every line in it is
complete when written. The Redis and webhook sinks send from a thread of their own, so a slow
or absent receiver never holds up a camera or a run; while it is away they keep up to
``buffer`` events and send them when it is back (older ones beyond that are counted as lost
and said so). A webhook gets each event as the JSON body of an HTTP POST, retried with
backoff on connection errors, timeouts and 5xx answers (a 4xx is the receiver refusing that
event: it is counted as lost, not retried).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from worker.constants import EVENTS_MAXLEN, Keys
from worker.errors import OutputError, SettingsError
from worker.messages import redact
from worker.retry import backoff
from worker.urls import check_http_url, with_basic_auth

__all__ = [
    "EventSink",
    "Fanout",
    "JsonlEvents",
    "RedisEvents",
    "Webhook",
    "open_events",
    "open_sinks",
]

log = logging.getLogger(__name__)

#: How long closing a webhook sink keeps trying to deliver what it still holds.
_DRAIN_S = 10.0


class EventSink(Protocol):
    def write(self, event: dict[str, Any]) -> None: ...

    def close(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


class JsonlEvents:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = 0
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as e:
            raise OutputError(f"events '{path}': cannot write ({e.strerror or e})") from e

    def write(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(line)
            self._file.flush()
            self.written += 1

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def describe(self) -> dict[str, Any]:
        return {"to": str(self.path), "written": self.written, "lost": 0}


class _Unavailable(Exception):
    """The receiver cannot take events now (down, unreachable, a 5xx): keep them, retry."""


class _Outbox:
    """Events waiting for a sender thread of their own: ``write`` never blocks; when
    ``buffer`` events wait, the oldest makes room and is counted lost. The thread hands them to
    ``_deliver`` (up to ``batch`` at a time) and, while the receiver is away
    (``_Unavailable``), keeps them and tries again after a backoff; ``close`` keeps trying for
    ``drain_s``, then counts what is left as lost."""

    #: Named in the log lines and the summary.
    what = "events"
    batch = 1

    def __init__(
        self,
        *,
        buffer: int = 10_000,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
        drain_s: float = _DRAIN_S,
    ) -> None:
        self.written = 0
        self.lost = 0
        self.retries = 0
        self._pending: deque[bytes] = deque()
        self._buffer = buffer
        self._retry = (retry_base_s, retry_max_s)
        self._drain_s = drain_s
        self._cv = threading.Condition()
        self._closing = False
        self._give_up_at = float("inf")  # set by close(): the end of the last tries
        self._down = False
        self._thread = threading.Thread(
            target=self._send_loop, name=f"events-{self.what.lower()}", daemon=True
        )
        self._thread.start()

    def write(self, event: dict[str, Any]) -> None:
        with self._cv:
            if len(self._pending) >= self._buffer:
                self._pending.popleft()
                self.lost += 1
            self._pending.append(json.dumps(event, separators=(",", ":")).encode())
            self._cv.notify()

    def _deliver(self, batch: list[bytes]) -> int:
        """Send ``batch``; how many of them the receiver refused (lost, not retried).
        Raises ``_Unavailable`` when it cannot take them now."""
        raise NotImplementedError

    def _send_loop(self) -> None:
        failures = 0
        while True:
            with self._cv:
                self._cv.wait_for(lambda: bool(self._pending) or self._closing)
                if not self._pending:
                    return
                batch = list(self._pending)[: self.batch]
            try:
                refused = self._deliver(batch)
            except _Unavailable as e:
                failures += 1
                if not self._wait_after(failures, str(e)):
                    return  # stopping, the receiver still away: close() counts the rest lost
                continue
            if self._down:
                log.warning("events: %s is back; sending the events kept meanwhile", self.what)
                self._down = False
            failures = 0
            with self._cv:
                for body in batch:  # unless write() pushed them out meanwhile
                    if self._pending and self._pending[0] is body:
                        self._pending.popleft()
                self.written += len(batch) - refused
                self.lost += refused

    def _wait_after(self, failures: int, why: str) -> bool:
        """Wait before the next try; False once closing has run out of time to try."""
        if not self._down:
            log.warning("events: %s unavailable (%s); keeping events to retry", self.what, why)
            self._down = True
        self.retries += 1
        base, cap = self._retry
        with self._cv:
            left = self._give_up_at - time.monotonic()
            if left <= 0:
                return False
            self._cv.wait(min(backoff(failures, base, cap, jitter=False), left))
        return True

    def close(self, drain_s: float | None = None) -> None:
        """Deliver what is left, trying for up to ``drain_s``; what is still unsent then is
        counted as lost."""
        drain = self._drain_s if drain_s is None else drain_s
        with self._cv:
            self._closing = True
            self._give_up_at = time.monotonic() + drain
            self._cv.notify()
        self._thread.join(drain + 6.0)
        with self._cv:
            unsent = len(self._pending)
            self._pending.clear()
        self.lost += unsent
        if self.lost:
            log.warning("events: %d events could not be sent to the %s", self.lost, self.what)
        self._closed()

    def _closed(self) -> None:
        """After the sender thread ended: let go of the connection."""

    def describe(self) -> dict[str, Any]:
        with self._cv:
            unsent = len(self._pending)
        return {
            "to": self._where(),
            "written": self.written,
            "lost": self.lost + unsent,
            "retries": self.retries,
        }

    def _where(self) -> str:
        raise NotImplementedError


class RedisEvents(_Outbox):
    """Each event as an entry of the monitor's events stream in Redis."""

    what = "Redis"
    batch = 1000  # one pipeline of XADDs

    def __init__(self, url: str, queue: str, *, buffer: int = 10_000) -> None:
        import redis

        self.key = Keys(queue).monitor_events
        self._client = redis.Redis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=10
        )
        # Closing sends what is left while Redis answers, and stops at its first failure.
        super().__init__(buffer=buffer, retry_base_s=1.0, retry_max_s=1.0, drain_s=0.0)

    def _deliver(self, batch: list[bytes]) -> int:
        import redis

        try:
            pipe = self._client.pipeline(transaction=False)
            for e in batch:
                pipe.xadd(self.key, {"event": e}, maxlen=EVENTS_MAXLEN, approximate=True)
            pipe.execute()
        except redis.RedisError as e:
            raise _Unavailable(str(e)) from e
        return 0

    def _closed(self) -> None:
        self._client.close()

    def _where(self) -> str:
        return f"redis stream {self.key}"


def open_events(spec: str, redis_url: str, queue: str) -> EventSink:
    """``redis``: the queue's Redis (``WORKER_REDIS_URL``); anything else: a JSON-lines path."""
    if spec == "redis":
        try:
            return RedisEvents(redis_url, queue)
        except ValueError as e:  # from_url: bad scheme or port; the message has no secrets
            raise SettingsError(f"setting WORKER_REDIS_URL: {e}") from None
    return JsonlEvents(Path(spec))


class Webhook(_Outbox):
    """HTTP POST of each event's JSON to ``url``, from a thread of its own."""

    what = "webhook"

    def __init__(
        self,
        url: str,
        *,
        buffer: int = 10_000,
        timeout_s: float = 5.0,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
    ) -> None:
        check_http_url(url, "webhook")
        self.url = url
        # user:password in the URL is sent as HTTP Basic authentication, not as the host.
        self._target, self._headers = with_basic_auth(url)
        self._timeout_s = timeout_s
        super().__init__(buffer=buffer, retry_base_s=retry_base_s, retry_max_s=retry_max_s)

    def _deliver(self, batch: list[bytes]) -> int:
        (body,) = batch
        req = urllib.request.Request(
            self._target, data=body, method="POST",
            headers={"Content-Type": "application/json", **self._headers},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=self._timeout_s):
                return 0
        except urllib.error.HTTPError as e:
            if e.code < 500:  # the receiver refuses this event: retrying will not help
                log.warning("events: webhook refused an event (HTTP %d); dropped", e.code)
                return 1
            raise _Unavailable(f"HTTP {e.code}") from e
        except (OSError, ValueError) as e:  # refused, unreachable, timeout, bad answer
            raise _Unavailable(str(getattr(e, "reason", e))) from e

    def _where(self) -> str:
        return f"webhook {redact(self.url)}"


class Fanout:
    """Several sinks as one: each event goes to every one of them."""

    def __init__(self, sinks: Sequence[EventSink]) -> None:
        self.sinks = list(sinks)

    def write(self, event: dict[str, Any]) -> None:
        for s in self.sinks:
            s.write(event)

    def close(self) -> None:
        for s in self.sinks:
            s.close()

    def describe(self) -> dict[str, Any]:
        described = [s.describe() for s in self.sinks]
        return described[0] if len(described) == 1 else {"sinks": described}


def open_sinks(
    events: str | None, webhook: str | None, redis_url: str, queue: str
) -> EventSink | None:
    """The sinks the settings ask for (``events``: a .jsonl path or ``redis``; ``webhook``:
    a URL), as one; None if none."""
    sinks: list[EventSink] = []
    if events:
        sinks.append(open_events(events, redis_url, queue))
    if webhook:
        try:
            sinks.append(Webhook(webhook))
        except BaseException:
            for s in sinks:
                s.close()
            raise
    if not sinks:
        return None
    return sinks[0] if len(sinks) == 1 else Fanout(sinks)
