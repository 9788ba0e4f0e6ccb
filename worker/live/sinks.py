"""Where ``worker monitor`` events go: a JSON-lines file or a Redis stream.

The file is appended to and flushed per event rather than written under a temporary name:
an event log is read while it grows (``tail -f``, log shippers), and every line in it is
complete when written. The Redis sink sends from a thread of its own, so a slow or absent
Redis never holds up a camera; while Redis is away it keeps up to ``buffer`` events and sends
them when it is back (older ones beyond that are counted as lost and said so).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from pathlib import Path
from typing import IO, Any, Protocol

from worker.constants import EVENTS_MAXLEN, Keys
from worker.errors import OutputError, SettingsError

__all__ = ["EventSink", "JsonlEvents", "RedisEvents", "open_events"]

log = logging.getLogger(__name__)


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


class RedisEvents:
    def __init__(self, url: str, queue: str, *, buffer: int = 10_000) -> None:
        import redis

        self.key = Keys(queue).monitor_events
        self.written = 0
        self.lost = 0
        self._client = redis.Redis.from_url(
            url, socket_timeout=2.0, socket_connect_timeout=2.0, health_check_interval=10
        )
        self._pending: deque[str] = deque()
        self._buffer = buffer
        self._cv = threading.Condition()
        self._closing = False
        self._down = False
        self._thread = threading.Thread(target=self._send_loop, name="events-redis", daemon=True)
        self._thread.start()

    def write(self, event: dict[str, Any]) -> None:
        with self._cv:
            if len(self._pending) >= self._buffer:
                self._pending.popleft()
                self.lost += 1
            self._pending.append(json.dumps(event, separators=(",", ":")))
            self._cv.notify()

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
