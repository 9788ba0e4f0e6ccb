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
        return {"to": str(self.path), "written": self.written}


class _Outbox:
    """Events waiting for a sender thread of their own (``_send_loop``): ``write`` never
    blocks; when ``buffer`` events wait, the oldest makes room and is counted lost."""

    def _open_outbox(self, buffer: int, thread_name: str) -> None:
        self.written = 0
        self.lost = 0
        self._pending: deque[bytes] = deque()
        self._buffer = buffer
        self._cv = threading.Condition()
        self._closing = False
        self._down = False
        self._thread = threading.Thread(target=self._send_loop, name=thread_name, daemon=True)
        self._thread.start()

    def write(self, event: dict[str, Any]) -> None:
        with self._cv:
            if len(self._pending) >= self._buffer:
                self._pending.popleft()
                self.lost += 1
            self._pending.append(json.dumps(event, separators=(",", ":")).encode())
            self._cv.notify()

    def _send_loop(self) -> None:
        raise NotImplementedError


class RedisEvents(_Outbox):
    def __init__(self, url: str, queue: str, *, buffer: int = 10_000) -> None:
        import redis

        self.key = Keys(queue).monitor_events
        self._client = redis.Redis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=10
        )
        self._open_outbox(buffer, "events-redis")

    def _send_loop(self) -> None:
        import redis

        while True:
            with self._cv:
                self._cv.wait_for(lambda: bool(self._pending) or self._closing)
                if not self._pending:
                    return
                batch = list(self._pending)
            try:
                pipe = self._client.pipeline(transaction=False)
                for e in batch:
                    pipe.xadd(self.key, {"event": e}, maxlen=EVENTS_MAXLEN, approximate=True)
                pipe.execute()
            except redis.RedisError as e:
                if not self._down:
                    log.warning("events: Redis unavailable (%s); keeping events to retry", e)
                    self._down = True
                with self._cv:
                    if self._closing:
                        return
                    self._cv.wait(1.0)
                continue
            if self._down:
                log.warning("events: Redis is back; sending the events kept meanwhile")
                self._down = False
            with self._cv:
                for _ in batch:
                    self._pending.popleft()
                self.written += len(batch)

    def close(self) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(5.0)
        with self._cv:
            unsent = len(self._pending)
        if unsent or self.lost:
            log.warning("events: %d events could not be sent to Redis", unsent + self.lost)
        self._client.close()

    def describe(self) -> dict[str, Any]:
        with self._cv:
            unsent = len(self._pending)
        lost = self.lost + unsent
        return {"to": f"redis stream {self.key}", "written": self.written, "lost": lost}


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

    def __init__(
        self,
        url: str,
        *,
        buffer: int = 10_000,
        timeout_s: float = 5.0,
        retry_base_s: float = 0.5,
        retry_max_s: float = 30.0,
    ) -> None:
        if not url.lower().startswith(("http://", "https://")):
            raise SettingsError(
                f"setting WORKER_WEBHOOK: expected an http:// or https:// URL (got '{redact(url)}')"
            )
        self.url = url
        self.retries = 0
        self._timeout_s = timeout_s
        self._retry = (retry_base_s, retry_max_s)
        self._give_up_at = float("inf")  # set by close(): the end of the last tries
        self._open_outbox(buffer, "events-webhook")

    def _post(self, body: bytes) -> int:
        req = urllib.request.Request(
            self.url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=self._timeout_s) as r:
            return int(r.status)

    def _send_loop(self) -> None:
        failures = 0
        while True:
            with self._cv:
                self._cv.wait_for(lambda: bool(self._pending) or self._closing)
                if not self._pending:
                    return
                if time.monotonic() >= self._give_up_at:
                    return  # stopping, the receiver still away: close() counts the rest lost
                body = self._pending[0]
            try:
                self._post(body)
            except urllib.error.HTTPError as e:
                if e.code < 500:  # the receiver refuses this event: retrying will not help
                    log.warning("events: webhook refused an event (HTTP %d); dropped", e.code)
                    self._done(body, sent=False)
                    continue
                failures = self._failed(failures, f"HTTP {e.code}")
                continue
            except (OSError, ValueError) as e:  # refused, unreachable, timeout, bad answer
                failures = self._failed(failures, str(getattr(e, "reason", e)))
                continue
            if self._down:
                log.warning("events: webhook is back; sending the events kept meanwhile")
                self._down = False
            failures = 0
            self._done(body, sent=True)

    def _done(self, body: bytes, *, sent: bool) -> None:
        with self._cv:
            if self._pending and self._pending[0] is body:
                self._pending.popleft()
            if sent:
                self.written += 1
            else:
                self.lost += 1

    def _failed(self, failures: int, why: str) -> int:
        if not self._down:
            log.warning("events: webhook unavailable (%s); keeping events to retry", why)
            self._down = True
        self.retries += 1
        base, cap = self._retry
        with self._cv:
            left = self._give_up_at - time.monotonic()
            self._cv.wait(max(0.0, min(cap, base * 2**failures, left)))
        return failures + 1

    def close(self, drain_s: float = _DRAIN_S) -> None:
        """Deliver what is left, trying for up to ``drain_s``; what is still unsent then is
        counted as lost."""
        with self._cv:
            self._closing = True
            self._give_up_at = time.monotonic() + drain_s
            self._cv.notify()
        self._thread.join(drain_s + self._timeout_s + 1)
        with self._cv:
            unsent = len(self._pending)
            self._pending.clear()
        if unsent or self.lost:
            log.warning("events: %d events could not be sent to the webhook", unsent + self.lost)
        self.lost += unsent

    def describe(self) -> dict[str, Any]:
        with self._cv:
            unsent = len(self._pending)
        return {
            "to": f"webhook {redact(self.url)}",
            "written": self.written,
            "lost": self.lost + unsent,
            "retries": self.retries,
        }


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
