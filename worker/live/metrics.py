"""Prometheus metrics and the health answer of ``worker monitor``.

Read from the monitor's own counters at scrape time (a custom collector) rather than kept
twice: ``/metrics``, ``/healthz`` and the final summary can never disagree. Labels carry
camera names only, never URLs (they may hold credentials).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any, get_args

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from worker.live.camera import CameraState
from worker.live.counters import DROP_REASONS
from worker.live.monitor import Monitor

__all__ = ["MonitorMetrics"]

_NS = "video_worker_camera"
_STATES: tuple[str, ...] = get_args(CameraState)


class _Collector(Collector):
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        stats = self.monitor.stats()
        received = CounterMetricFamily(
            f"{_NS}_frames_received", "Frames decoded from the camera", labels=["camera"]
        )
        processed = CounterMetricFamily(
            f"{_NS}_frames_processed", "Frames run, annotated and written", labels=["camera"]
        )
        skipped = CounterMetricFamily(
            f"{_NS}_frames_skipped",
            "Frames not run on purpose (--every, --fps); recorded with the latest mask",
            labels=["camera"],
        )
        dropped = CounterMetricFamily(
            f"{_NS}_frames_dropped",
            "Frames dropped to keep latency bounded, by reason",
            labels=["camera", "reason"],
        )
        connections = CounterMetricFamily(
            f"{_NS}_connections", "Successful connections (1 + reconnects)", labels=["camera"]
        )
        segments = CounterMetricFamily(
            f"{_NS}_segments_written", "Recordings closed and renamed into place", labels=["camera"]
        )
        state = GaugeMetricFamily(
            f"{_NS}_state", "1 for the camera's current state", labels=["camera", "state"]
        )
        age = GaugeMetricFamily(
            f"{_NS}_last_frame_age_seconds", "Time since the last frame came", labels=["camera"]
        )
        objects = GaugeMetricFamily(
            f"{_NS}_objects",
            "Objects (boxes or regions) of each label in the newest processed frame",
            labels=["camera", "label"],
        )
        crossings = CounterMetricFamily(
            f"{_NS}_line_crossings",
            "Tracked objects that crossed a line, by direction and label",
            labels=["camera", "line", "direction", "label"],
        )
        latency = HistogramMetricFamily(
            f"{_NS}_latency_seconds",
            "Receive-to-annotated latency per frame",
            labels=["camera"],
        )
        for name, s in stats.items():
            received.add_metric([name], s["received"])
            processed.add_metric([name], s["processed"])
            skipped.add_metric([name], s["skipped"])
            for reason in DROP_REASONS:
                dropped.add_metric([name, reason], s["dropped_by_reason"].get(reason, 0))
            connections.add_metric([name], s["connections"])
            segments.add_metric([name], s["segments_written"])
            for st in _STATES:
                state.add_metric([name, st], 1.0 if s["state"] == st else 0.0)
            if s["last_frame_age_s"] is not None:
                age.add_metric([name], s["last_frame_age_s"])
            for label, n in s.get("objects", {}).items():
                objects.add_metric([name, label], n)
            for line, ways in s.get("lines", {}).items():
                for way, by_label in ways.items():
                    for label, n in by_label.items():
                        crossings.add_metric([name, line, way, label], n)
            buckets, _count, total = self.monitor.cams[name].latency.cumulative()
            latency.add_metric([name], buckets, total)
        yield from (
            received,
            processed,
            skipped,
            dropped,
            connections,
            segments,
            state,
            age,
            objects,
            crossings,
            latency,
        )


class MonitorMetrics:
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self.registry = CollectorRegistry()
        self.registry.register(_Collector(monitor))
        self.started = time.time()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Healthy while the pipeline runs. A camera that is down does not make the process
        unhealthy: restarting the worker would not bring the camera back."""
        ok = not self.monitor.failed.is_set()
        stats = self.monitor.stats()
        return ok, {
            "ok": ok,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started, 1),
            "cameras_live": sum(1 for s in stats.values() if s["state"] == "live"),
            "cameras": stats,
        }
