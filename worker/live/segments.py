"""Recordings of one camera, split into segments of fixed length.

Each segment is a complete MP4 (H.264, faststart), written under a temporary name and renamed
to ``<folder>/<camera>/<camera>-<UTC start>.mp4`` when it is closed, so a reader of the folder
never sees a half-written file. A segment ends when the next frame would pass its length
(that frame opens the next one: no frame falls between two segments), when the camera
reconnects or changes resolution, when no frame came for a while (a dead camera's last
segment is finished, not left open), and at shutdown.

Timestamps are receive times in milliseconds since the segment start: dropped frames and
outages show as the gaps they were, instead of being played back faster.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from worker.description import Encode
from worker.stages.atomic import AtomicFile
from worker.stages.frames import Answer, Frame, Item, VideoInfo
from worker.stages.loop import Output, Picture, Record
from worker.stages.writer import VideoWriter

__all__ = ["LAST_SEGMENTS", "SegmentRecorder", "segment_name"]

log = logging.getLogger(__name__)

_MS = Fraction(1, 1000)

#: Paths of the most recent segments kept for the summary and ``/healthz``. Not all of them: a
#: year of 60 s segments is ~525,000 per camera, and every health answer would carry them.
LAST_SEGMENTS = 5
#: Closed segments whose times are kept, to play an event across them (``parts``): hours of
#: 60 s segments, a few kB.
_SPANS_KEPT = 256


def segment_name(camera: str, wall: float) -> str:
    """``<camera>-YYYYmmddTHHMMSS.mmmZ.mp4`` (UTC), which sorts by start time."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(wall))
    return f"{camera}-{stamp}.{int(wall * 1000) % 1000:03d}Z.mp4"


@dataclass
class _Open:
    writer: VideoWriter
    target: AtomicFile
    start: float  # received_at (monotonic) of its first frame
    generation: int
    size: tuple[int, int]  # (h, w) of the frames
    wall: float = 0.0  # time.time() of its first frame
    frames: int = 0


class SegmentRecorder(Output):
    """One camera's recordings: an output of its frame loop, every frame written, skipped
    ones (``--every``, ``--fps``) drawn with the latest answer."""

    def __init__(
        self,
        folder: Path,
        camera: str,
        *,
        seconds: float,
        encode: Encode,
        rate: Fraction = Fraction(25),
    ) -> None:
        self.folder = folder / camera
        self.camera = camera
        self.seconds = seconds
        self.encode, self.rate = encode, rate
        self.written = 0  # segments closed and renamed into place
        # Replaced, never changed in place: other threads read it while this one writes.
        self.last: tuple[Path, ...] = ()  # the newest LAST_SEGMENTS of them, oldest first
        # (path, first wall time, last wall time) of the newest closed segments: where an
        # event that started before the open segment was recorded.
        self._spans: tuple[tuple[Path, float, float], ...] = ()
        self._last_wall = 0.0
        self._open: _Open | None = None

    def processed(self, item: Item, answer: Answer, record: Record, picture: Picture) -> None:
        self.write(item, picture())

    def skipped(self, item: Item, picture: Picture) -> None:
        self.write(item, picture())

    def write(self, item: Item, image: Any) -> None:
        seg = self._open
        size = (image.shape[0], image.shape[1])
        if seg is not None and (
            item.generation != seg.generation
            or size != seg.size
            or item.received_at - seg.start >= self.seconds
        ):
            self.close()
            seg = None
        if seg is None:
            seg = self._start(item, size)
        ms = round((item.received_at - seg.start) * 1000)
        seg.writer.write(Frame(index=seg.frames, pts=ms, time=ms / 1000, image=image), image)
        seg.frames += 1
        self._last_wall = item.wall

    def _start(self, item: Item, size: tuple[int, int]) -> _Open:
        target = AtomicFile(self.folder / segment_name(self.camera, item.wall), "recording")
        info = VideoInfo(
            path=self.camera,
            codec="h264",
            pix_fmt="yuv420p",
            width=size[1],
            height=size[0],
            time_base=_MS,
            rate=self.rate,
            frames=None,
        )
        writer = VideoWriter(target, info, self.encode)
        self._open = _Open(writer, target, item.received_at, item.generation, size, item.wall)
        return self._open

    def location(self, wall: float) -> dict[str, Any] | None:
        """Where wall-clock time ``wall`` is recorded: the segment file (its final name) and the
        offset into it, for an event's start; None if no recent segment holds it."""
        seg = self._open
        if seg is not None and wall >= seg.wall:
            return {"file": str(seg.target.final), "offset_s": round(wall - seg.wall, 3)}
        for path, start, end in reversed(self._spans):
            if start <= wall <= end:
                return {"file": str(path), "offset_s": round(wall - start, 3)}
        return None

    def parts(self, start: float, end: float | None) -> list[dict[str, Any]]:
        """The segments that hold wall-clock times ``start`` to ``end`` (None: still going),
        oldest first: each its ``file`` (final name), where to play ``from_s`` and ``until_s``
        (None: to its end) and whether it is ``ready`` (closed; the open one is not yet)."""
        spans = [(p, a, b, True) for p, a, b in self._spans]
        seg = self._open
        if seg is not None:
            spans.append((seg.target.final, seg.wall, self._last_wall, False))
        out: list[dict[str, Any]] = []
        for path, first, last, ready in spans:
            if last < start or (end is not None and first > end):
                continue
            out.append({
                "file": str(path),
                "from_s": round(max(0.0, start - first), 3),
                "until_s": None if end is None or end >= last else round(end - first, 3),
                "ready": ready,
            })  # fmt: skip
        return out

    @property
    def is_open(self) -> bool:
        return self._open is not None

    def close(self) -> Path | None:
        """Finish the open segment (if any) and rename it into place; its final path."""
        seg, self._open = self._open, None
        if seg is None:
            return None
        try:
            seg.writer.close(flush=True)
        except BaseException:
            seg.target.discard()
            raise
        if seg.frames == 0:
            seg.target.discard()
            return None
        path = seg.target.commit()
        self.written += 1
        self.last = (*self.last, path)[-LAST_SEGMENTS:]
        self._spans = (*self._spans, (path, seg.wall, self._last_wall))[-_SPANS_KEPT:]
        log.info("camera %s: segment %s (%d frames)", self.camera, path.name, seg.frames)
        return path

    def discard(self) -> None:
        """Drop the open segment unfinished (the pipeline failed)."""
        seg, self._open = self._open, None
        if seg is not None:
            try:
                seg.writer.close(flush=False)
            finally:
                seg.target.discard()
