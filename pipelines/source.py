"""Source stage: decode a video file with PyAV into upright BGR frames.

Opening happens in the caller's thread so that a missing or non-video input fails before any
thread starts; ``frames()`` then runs in the source thread. Corrupt packets are counted and
skipped rather than ending the run: a truncated camera dump still yields every good frame.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from pipelines.frames import Frame, VideoInfo
from worker.errors import InputError, InputNotFoundError

__all__ = ["VideoSource"]

log = logging.getLogger(__name__)

#: Read errors in a row, with no packet between them, after which the input counts as ended.
_MAX_READ_FAILURES = 5


def _rate(stream: Any) -> Fraction:
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if r:
            return Fraction(r)
    return Fraction(25)


class VideoSource:
    def __init__(self, path: Path, *, max_frames: int | None = None) -> None:
        self.path = path
        self.max_frames = max_frames
        self.bad_packets = 0
        self.frames_read = 0
        if not path.exists():
            raise InputNotFoundError(f"input '{path}': file not found")
        if not path.is_file():
            raise InputError(f"input '{path}': not a file")
        try:
            self.container: Any = av.open(str(path), mode="r")
        except PermissionError as e:
            raise InputNotFoundError(f"input '{path}': cannot read ({e.strerror})") from e
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise InputError(f"input '{path}': not a readable video ({_why(e)})") from e
        try:
            if not self.container.streams.video:
                kinds = sorted({str(s.type) for s in self.container.streams}) or ["none"]
                raise InputError(
                    f"input '{path}': no video stream (found streams: {', '.join(kinds)})"
                )
            self.stream = self.container.streams.video[0]
            cc = self.stream.codec_context
            if cc is None:  # FFmpeg found no decoder: an unknown codec tag or a damaged header
                raise InputError(
                    f"input '{path}': its video stream has no decoder (unknown or damaged codec)"
                )
            # Frame and slice threads: decode releases the GIL, so this overlaps with inference.
            self.stream.thread_type = "AUTO"
            if not cc.width or not cc.height:
                raise InputError(f"input '{path}': video stream has no frame size")
            self.info = VideoInfo(
                path=str(path),
                codec=self.stream.codec_context.name,
                pix_fmt=cc.pix_fmt,
                width=cc.width,
                height=cc.height,
                time_base=Fraction(self.stream.time_base or Fraction(1, 90000)),
                rate=_rate(self.stream),
                frames=(self.stream.frames or None),
            )
        except BaseException:
            self.container.close()
            raise

    def close(self) -> None:
        self.container.close()

    def frames(self) -> Iterator[Frame]:
        """Decoded frames in presentation order; stops at ``max_frames``."""
        for packet in self._packets():
            if packet is not None and packet.is_corrupt:
                # The demuxer could not read it whole (a truncated file ends this way).
                self._bad("a truncated or corrupt packet")
                continue
            try:
                decoded = packet.decode() if packet is not None else self.stream.decode(None)
            except av.error.InvalidDataError as e:
                # One bad packet must not end a long run: count it, say so once, go on.
                self._bad(_why(e))
                continue
            for f in decoded:
                yield self._frame(f)
                if self.max_frames is not None and self.frames_read >= self.max_frames:
                    return

    def _packets(self) -> Iterator[Any]:
        """The video packets; a read error is bad data too: count it and read on, and after
        several in a row end there, yielding ``None`` to flush the frames the decoder holds."""
        failures = 0
        while True:
            try:
                for packet in self.container.demux(self.stream):
                    failures = 0
                    yield packet
                return
            except av.error.FFmpegError as e:
                self._bad(f"read error: {_why(e)}")
                failures += 1
                if failures >= _MAX_READ_FAILURES:
                    log.warning(
                        "input '%s': %d read errors in a row; treating it as ending here",
                        self.path,
                        failures,
                    )
                    yield None
                    return

    def _bad(self, why: str) -> None:
        self.bad_packets += 1
        if self.bad_packets == 1:
            log.warning("input '%s': skipping undecodable data (%s)", self.path, why)

    def _frame(self, f: Any) -> Frame:
        try:
            image = f.to_ndarray(format="bgr24")
        except (av.error.FFmpegError, ValueError) as e:
            raise InputError(
                f"input '{self.path}': cannot convert {f.format.name} frames to BGR ({_why(e)})"
            ) from e
        rotation = int(getattr(f, "rotation", 0) or 0)
        if rotation % 90:
            raise InputError(
                f"input '{self.path}': rotation of {rotation} degrees; only multiples of 90 "
                "are supported"
            )
        if rotation:
            # The display matrix rotates counter-clockwise, like np.rot90.
            image = np.ascontiguousarray(np.rot90(image, k=(rotation // 90) % 4))
        index = self.frames_read
        self.frames_read += 1
        if f.pts is not None and f.time_base is not None:
            time = float(f.pts * f.time_base)
        else:
            time = index / float(self.info.rate)
        return Frame(index=index, pts=f.pts, time=time, image=image)


def _why(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
