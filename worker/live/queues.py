"""Live-stream bookkeeping: drop-oldest queues, per-camera counters and latency statistics.

A file is lossless (``run_file`` blocks the decoder when inference is behind); a camera is
not: it will not wait for us, so holding its frames only makes every later answer later.
Here a full queue drops its *oldest* frame, and every drop is counted with its reason, so
that at any moment ``received == processed + skipped + dropped + in flight`` and, once the
pipeline has drained, ``received == processed + skipped + dropped`` exactly. ``skipped``
counts frames not run on purpose (``--every``, ``--fps``): they are recorded, with the latest
mask, and never read as dropped.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from worker.stages.frames import Frame

__all__ = [
    "DROP_REASONS",
    "LATENCY_BUCKETS_S",
    "Counters",
    "DropQueue",
    "Ingress",
    "LatencyStats",
    "LiveFrame",
]

#: Why a frame was dropped: its camera's queue was full (inference behind), it was older than
#: the latency limit when inference was free, drawing/encoding was behind, or its camera had
#: failed (its writer could not go on).
DROP_REASONS = ("queue_full", "late", "writer_behind", "camera_failed")

#: Upper bounds of the latency histogram, in seconds (Prometheus ``le`` buckets).
LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)


@dataclass
class LiveFrame:
    """A decoded camera frame and when it reached us."""

    camera: str
    frame: Frame
    received_at: float  # time.monotonic() right after decoding
    wall: float  # time.time() at the same moment, for file names and events
    generation: int  # which connection of this camera it came from (1, 2, ... per reconnect)
    # Not run on purpose (--every, --fps): it still travels with the others, so that it is
    # recorded in its place, drawn with the latest mask.
    skip: bool = False


@dataclass
class Counters:
    """Frames of one camera. Updated from several threads, hence the lock."""

    received: int = 0
    processed: int = 0
    skipped: int = 0  # not run on purpose (--every, --fps): recorded, never "dropped"
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> frames
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def receive(self) -> None:
        with self._lock:
            self.received += 1

    def process(self) -> None:
        with self._lock:
            self.processed += 1

    def skip(self) -> None:
        with self._lock:
            self.skipped += 1

    def drop(self, reason: str, n: int = 1) -> None:
        with self._lock:
            self.dropped[reason] = self.dropped.get(reason, 0) + n

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "received": self.received,
                "processed": self.processed,
                "skipped": self.skipped,
                "dropped": sum(self.dropped.values()),
                "dropped_by_reason": dict(self.dropped),
            }


class LatencyStats:
    """Receive-to-annotated latency of one camera: a cumulative histogram (for Prometheus)
    and the most recent values (for percentiles in the summary and the health endpoint)."""

    def __init__(self, recent: int = 4096) -> None:
        self.buckets = LATENCY_BUCKETS_S
        self.counts = [0] * len(self.buckets)  # per bucket, not cumulative
        self.count = 0
        self.sum = 0.0
        self.max = 0.0
        self._recent: deque[float] = deque(maxlen=recent)
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        with self._lock:
            for i, le in enumerate(self.buckets):
                if seconds <= le:
                    self.counts[i] += 1
                    break
            self.count += 1
            self.sum += seconds
            self.max = max(self.max, seconds)
            self._recent.append(seconds)

    def cumulative(self) -> tuple[list[tuple[str, int]], int, float]:
        """Prometheus form: ``[(le, count <= le), ..., ("+Inf", count)]``, count, sum."""
        with self._lock:
            out, running = [], 0
            for le, c in zip(self.buckets, self.counts, strict=True):
                running += c
                out.append((repr(le), running))
            out.append(("+Inf", self.count))
            return out, self.count, self.sum

    def recent(self) -> list[float]:
        """The most recent values, oldest first, in seconds."""
        with self._lock:
            return list(self._recent)

    def percentiles_ms(self, ps: tuple[int, ...] = (50, 90, 99)) -> dict[str, float]:
        """Over the recent values, in milliseconds; empty before the first frame."""
        with self._lock:
            values = np.fromiter(self._recent, dtype=np.float64)
            top = self.max
        if values.size == 0:
            return {}
        q = np.percentile(values, ps)
        out = {f"p{p}": round(float(v) * 1000, 1) for p, v in zip(ps, q, strict=True)}
        out["max"] = round(top * 1000, 1)
        return out


class DropQueue:
    """A bounded FIFO whose ``put`` never blocks: when full, the oldest item makes room and
    is passed to ``on_drop``."""

    def __init__(self, maxlen: int, on_drop: Callable[[Any], None]) -> None:
        self._items: deque[Any] = deque()
        self._maxlen = maxlen
        self._on_drop = on_drop
        self._cv = threading.Condition()

    def put(self, item: Any) -> None:
        dropped: list[Any] = []
        with self._cv:
            if len(self._items) >= self._maxlen:
                dropped.append(self._items.popleft())
            self._items.append(item)
            self._cv.notify()
        for d in dropped:  # outside the lock: on_drop may take locks of its own
            self._on_drop(d)

    def get(self, timeout: float) -> Any:
        """The oldest item; ``queue.Empty`` after ``timeout`` seconds without one."""
        with self._cv:
            if not self._items and not self._cv.wait_for(lambda: bool(self._items), timeout):
                raise queue.Empty
            return self._items.popleft()

    def __len__(self) -> int:
        with self._cv:
            return len(self._items)


class Ingress:
    """Every camera's waiting frames, in one place so one inference stage can batch across
    cameras: a drop-oldest queue per camera, taken from in turn so that a busy camera cannot
    starve a quiet one, and frames older than ``max_age_s`` dropped as late when taken.

    ``clock`` dates the frames (their ``received_at`` comes from the same clock); the waits
    themselves are in real time."""

    def __init__(
        self,
        maxlen: int,
        max_age_s: float | None,
        on_drop: Callable[[LiveFrame, str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queues: dict[str, deque[LiveFrame]] = {}
        self._maxlen = maxlen
        self._max_age_s = max_age_s
        self._on_drop = on_drop
        self._clock = clock
        self._turn = 0
        self._cv = threading.Condition()

    def put(self, item: LiveFrame) -> None:
        dropped = None
        with self._cv:
            q = self._queues.setdefault(item.camera, deque())
            if len(q) >= self._maxlen:
                dropped = q.popleft()
            q.append(item)
            self._cv.notify()
        if dropped is not None:
            self._on_drop(dropped, "queue_full")

    def __len__(self) -> int:
        with self._cv:
            return sum(len(q) for q in self._queues.values())

    def take(self, size: int, first_wait_s: float, batch_wait_s: float) -> list[LiveFrame]:
        """Up to ``size`` frames, at most one per camera per round. Waits up to
        ``first_wait_s`` for the first (returns ``[]`` if none came), then at most
        ``batch_wait_s`` more for the rest of the batch."""
        late: list[LiveFrame] = []
        items: list[LiveFrame] = []
        with self._cv:
            deadline = self._clock() + first_wait_s
            while not items:
                items += self._pop(size, late)
                remaining = deadline - self._clock()
                if items or remaining <= 0:
                    break
                self._cv.wait(remaining)
            if items:
                deadline = self._clock() + batch_wait_s
                while len(items) < size:
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        break
                    self._cv.wait(remaining)
                    items += self._pop(size - len(items), late)
        for f in late:
            self._on_drop(f, "late")
        return items

    def _pop(self, size: int, late: list[LiveFrame]) -> list[LiveFrame]:
        """Round robin over the cameras, oldest frame first; the lock is held."""
        names = list(self._queues)
        out: list[LiveFrame] = []
        now = self._clock()
        progress = True
        while len(out) < size and progress:
            progress = False
            for k in range(len(names)):
                q = self._queues[names[(self._turn + k) % len(names)]]
                while q:
                    f = q.popleft()
                    if self._max_age_s is not None and now - f.received_at > self._max_age_s:
                        late.append(f)
                        continue
                    out.append(f)
                    progress = True
                    break
                if len(out) >= size:
                    break
            self._turn += 1
        return out
