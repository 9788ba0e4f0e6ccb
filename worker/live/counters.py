"""Live-stream bookkeeping: per-camera frame counters and latency statistics.

A camera's queues drop their oldest frame instead of waiting (``worker.stages.channels``),
and every drop is counted here with its reason, so that at any moment ``received ==
processed + skipped + dropped + in flight`` and, once the pipeline has drained, ``received ==
processed + skipped + dropped`` exactly. ``skipped``
counts frames not run on purpose (``--every``, ``--fps``): they are recorded, with the latest
mask, and never read as dropped.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["DROP_REASONS", "LATENCY_BUCKETS_S", "Counters", "LatencyStats"]

#: Why a frame was dropped: its camera's queue was full (inference behind), it was older than
#: the latency limit when inference was free, drawing/encoding was behind, or its camera had
#: failed (its writer could not go on).
DROP_REASONS = ("queue_full", "late", "writer_behind", "camera_failed")

#: Upper bounds of the latency histogram, in seconds (Prometheus ``le`` buckets).
LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)


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
