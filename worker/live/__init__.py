"""Live cameras: reconnecting RTSP sources, drop-oldest queues with counted drops, one model
batched across cameras, segmented recordings, and per camera its zones and events.

``Monitor`` wires them; ``worker monitor`` (``worker.cli.monitor``) is its command.
"""

from worker.live.camera import Backoff, Camera, CameraState, ConnectOptions, redact
from worker.live.metrics import MonitorMetrics
from worker.live.monitor import Monitor, MonitorOptions
from worker.live.queues import DROP_REASONS, Counters, LatencyStats, LiveFrame
from worker.live.segments import SegmentRecorder

__all__ = [
    "DROP_REASONS",
    "Backoff",
    "Camera",
    "CameraState",
    "ConnectOptions",
    "Counters",
    "LatencyStats",
    "LiveFrame",
    "Monitor",
    "MonitorMetrics",
    "MonitorOptions",
    "SegmentRecorder",
    "redact",
]
