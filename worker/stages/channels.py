"""The queues between stages, one per policy; both give ``END`` when their stream is over.

- ``Lossless`` (files): bounded, ``put`` waits for room, so a slow model slows the decoder
  and no frame is lost. Waits are short slices that give up (``Stopped``) as soon as the run
  is stopping, so a failure anywhere, Ctrl-C or a cancel request stops every stage promptly.
- ``DropOldest`` (cameras): a camera will not wait for us, and holding its frames only makes
  every later answer later. ``put`` never waits: when a stream's queue is full its oldest
  item makes room and is handed to ``on_drop`` with the reason, so every drop is counted.
  Several streams share one queue and are taken from in turn (a busy camera cannot starve a
  quiet one); items older than ``max_age_s`` when taken are dropped as ``late``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["END", "DropOldest", "Lossless", "Stopped"]

#: What ``get`` returns once the stream is over.
END: Any = object()
_POLL_S = 0.1


class Stopped(Exception):
    """Raised inside a stage waiting on a ``Lossless`` queue when the run is stopping."""


class Lossless:
    """A bounded queue whose waits give up as soon as ``stop`` is set."""

    def __init__(self, maxsize: int, stop: threading.Event) -> None:
        self._q: queue.Queue[Any] = queue.Queue(maxsize)
        self._stop = stop

    def put(self, item: Any) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue
        raise Stopped

    def get(self, timeout: float | None = None) -> Any:
        """The next item (``END`` after the last); ``queue.Empty`` if ``timeout`` seconds pass
        first (None: no limit)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            wait = _POLL_S if deadline is None else min(_POLL_S, deadline - time.monotonic())
            if wait <= 0:
                raise queue.Empty
            try:
                return self._q.get(timeout=wait)
            except queue.Empty:
                continue
        raise Stopped


class DropOldest:
    """Bounded per stream, never blocking ``put``; ``close`` ends it (see the module)."""

    def __init__(
        self,
        maxlen: int,
        on_drop: Callable[[Any, str], None],
        *,
        full: str = "queue_full",
        stream: Callable[[Any], Hashable] = lambda item: None,
        max_age_s: float | None = None,
        age: Callable[[Any], float] = lambda item: 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``full``: the reason given for an item dropped to make room; ``stream``: which
        stream an item belongs to; ``age``: when it was received, on ``clock``."""
        self._queues: dict[Hashable, deque[Any]] = {}
        self._maxlen = maxlen
        self._on_drop = on_drop
        self._full = full
        self._stream = stream
        self._max_age_s = max_age_s
        self._age = age
        self._clock = clock
        self._turn = 0
        self._closed = False
        self._cv = threading.Condition()

    def put(self, item: Any) -> None:
        dropped = None
        with self._cv:
            q = self._queues.setdefault(self._stream(item), deque())
            if len(q) >= self._maxlen:
                dropped = q.popleft()
            q.append(item)
            self._cv.notify()
        if dropped is not None:  # outside the lock: on_drop may take locks of its own
            self._on_drop(dropped, self._full)

    def close(self, *, drain: bool = True) -> list[Any]:
        """No more items will come: ``get`` gives ``END`` once the queue is empty (at once if
        not ``drain``: the items still held are returned, for the caller to account for)."""
        with self._cv:
            self._closed = True
            left: list[Any] = []
            if not drain:
                for q in self._queues.values():
                    left += q
                    q.clear()
            self._cv.notify_all()
        return left

    def __len__(self) -> int:
        with self._cv:
            return sum(len(q) for q in self._queues.values())

    def get(self, timeout: float | None = None) -> Any:
        """The next item, streams taken in turn, oldest first (``END`` once closed and empty);
        ``queue.Empty`` after ``timeout`` seconds without one (None: no limit)."""
        late: list[Any] = []
        try:
            with self._cv:
                deadline = None if timeout is None else time.monotonic() + timeout
                while True:
                    item = self._pop(late)
                    if item is not None:
                        return item
                    if self._closed:
                        return END
                    if deadline is None:
                        self._cv.wait()
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise queue.Empty
                    self._cv.wait(remaining)
        finally:
            for f in late:
                self._on_drop(f, "late")

    def _pop(self, late: list[Any]) -> Any:
        """The next stream's oldest item that is not late (None: none); the lock is held."""
        names = list(self._queues)
        now = self._clock() if self._max_age_s is not None else 0.0
        for k in range(len(names)):
            q = self._queues[names[(self._turn + k) % len(names)]]
            while q:
                item = q.popleft()
                if self._max_age_s is not None and now - self._age(item) > self._max_age_s:
                    late.append(item)
                    continue
                self._turn = (self._turn + k + 1) % len(names)
                return item
        return None
