"""The stages of a video job and their wiring.

Pure functions (pre/post-processing, mask maths, blending) work on numpy arrays and are
usable on their own; ``run_file`` wires the PyAV source, the ONNX Runtime inference stage
and the H.264 writer together with threads and bounded queues; ``Monitor`` does the same for
live RTSP cameras (reconnecting sources, drop-oldest queues, segmented recordings, events).
"""

from pipelines.camera import Backoff, Camera, ConnectOptions, redact
from pipelines.events import Rule, Watcher, parse_rule
from pipelines.frames import Answer, Frame, VideoInfo
from pipelines.infer import Inferencer, plan_for
from pipelines.live import Counters, LatencyStats, LiveFrame
from pipelines.monitor import Monitor, MonitorOptions
from pipelines.overlay import Blender, draw_top, pad_even
from pipelines.postprocess import (
    NO_CLASS,
    classify,
    coverage,
    coverage_bits,
    restore,
    segment,
    sigmoid,
    softmax,
)
from pipelines.preprocess import Geometry, InputPlan, geometry, preprocess, warp_matrix
from pipelines.runner import RunSummary, default_batch, run_file
from pipelines.segments import SegmentRecorder
from pipelines.source import VideoSource
from pipelines.writer import Annotator, VideoWriter

__all__ = [
    "NO_CLASS",
    "Annotator",
    "Answer",
    "Backoff",
    "Blender",
    "Camera",
    "ConnectOptions",
    "Counters",
    "Frame",
    "Geometry",
    "Inferencer",
    "InputPlan",
    "LatencyStats",
    "LiveFrame",
    "Monitor",
    "MonitorOptions",
    "Rule",
    "RunSummary",
    "SegmentRecorder",
    "VideoInfo",
    "VideoSource",
    "VideoWriter",
    "Watcher",
    "classify",
    "coverage",
    "coverage_bits",
    "default_batch",
    "draw_top",
    "geometry",
    "pad_even",
    "parse_rule",
    "plan_for",
    "preprocess",
    "redact",
    "restore",
    "run_file",
    "segment",
    "sigmoid",
    "softmax",
    "warp_matrix",
]
