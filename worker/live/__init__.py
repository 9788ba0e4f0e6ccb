"""Live cameras: reconnecting RTSP sources, drop-oldest queues with counted drops, one model
batched across cameras, segmented recordings, watch rules and where their events go.

``Monitor`` wires them; ``worker monitor`` (``worker.cli.monitor``) is its command.
"""

from worker.live.camera import Backoff, Camera, CameraState, ConnectOptions, redact
from worker.live.events import Rule, Watcher, parse_rule
from worker.live.metrics import MonitorMetrics
from worker.live.monitor import Monitor, MonitorOptions
from worker.live.queues import DROP_REASONS, Counters, LatencyStats, LiveFrame
from worker.live.segments import SegmentRecorder
from worker.live.sinks import EventSink, JsonlEvents, RedisEvents, open_events

__all__ = [
    "DROP_REASONS",
    "Backoff",
    "Camera",
    "CameraState",
    "ConnectOptions",
    "Counters",
    "EventSink",
    "JsonlEvents",
    "LatencyStats",
    "LiveFrame",
    "Monitor",
    "MonitorMetrics",
    "MonitorOptions",
    "RedisEvents",
    "Rule",
    "SegmentRecorder",
    "Watcher",
    "open_events",
    "parse_rule",
    "redact",
]
