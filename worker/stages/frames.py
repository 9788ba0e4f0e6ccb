"""What travels between stages."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = ["Answer", "Frame", "Item", "VideoInfo"]

Image = np.ndarray[Any, np.dtype[np.uint8]]


@dataclass(frozen=True)
class VideoInfo:
    """What the source knows before the first frame."""

    path: str
    codec: str
    pix_fmt: str | None
    width: int
    height: int
    time_base: Fraction
    rate: Fraction  # average frame rate, or a guess where the container has none
    frames: int | None  # what the container header announces: an estimate, not a promise
    format: str | None = None  # FFmpeg's demuxer: "mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", ...
    # Seconds the header states: its frame count at the average rate, or its duration (None:
    # it states neither, and FFmpeg's estimate from the file as it is would not be a statement).
    duration: float | None = None
    # The file's timestamps are known to be wrong (worker.stages.packed: the header states
    # twice the rate): frames are timed at ``rate`` from the first one.
    by_count: bool = False


@dataclass
class Frame:
    """One decoded frame: BGR uint8, upright, with its position and timing in the input."""

    index: int
    pts: int | None
    time: float  # seconds, from the timestamp
    image: Image


@dataclass
class Answer:
    """The model's answer for one frame, at model resolution (the writer maps it to the frame)."""

    class_map: Image | None = None  # segment: (h, w) uint8 class per pixel, 255 = none
    bits: np.ndarray[Any, Any] | None = None  # multi-label: (h, w) uint32, bit c = class c
    top: list[tuple[int, float]] = field(default_factory=list)  # classify: (index, score)
    zones: dict[str, Answer] | None = None  # classify with zones: each zone's crop, classified
    # detect: (k, 6) float32 x1, y1, x2, y2, score, class in model input pixels, best first
    # (an instance segmenter's rows: then its 32 mask coefficients)
    boxes: np.ndarray[Any, Any] | None = None
    protos: np.ndarray[Any, Any] | None = None  # an instance segmenter's (32, h, w) prototypes


@dataclass
class Item:
    """A frame on its way through the stages, with the stream it belongs to (a file's name, a
    camera's) and when it reached us."""

    stream: str
    frame: Frame
    received_at: float = 0.0  # time.monotonic() right after decoding (cameras: for latency)
    wall: float = 0.0  # time.time() at the same moment (cameras: for file names and events)
    generation: int = 1  # cameras: which connection it came from (1, 2, ... per reconnect)
    # Not run on purpose (--every, --fps): it still travels with the others, so that it is
    # written in its place, drawn with the latest answer.
    skip: bool = False
