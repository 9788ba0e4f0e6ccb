"""Live cameras: reconnecting RTSP sources, drop-oldest queues with counted drops, one model
batched across cameras, segmented recordings, and per camera its zones and events.

``Monitor`` wires them from the same stages as a file run; ``worker monitor``
(``worker.cli.monitor``) is its command.
"""

from worker.live.camera import Camera, CameraState, redact
from worker.live.counters import DROP_REASONS, Counters, LatencyStats
from worker.live.metrics import MonitorMetrics
from worker.live.monitor import Monitor
from worker.live.segments import SegmentRecorder

__all__ = [
    "DROP_REASONS",
    "Camera",
    "CameraState",
    "Counters",
    "LatencyStats",
    "Monitor",
    "MonitorMetrics",
    "SegmentRecorder",
    "redact",
]
