"""Source stage: decode a video file with PyAV into upright BGR frames.

Opening happens in the caller's thread so that a missing or non-video input fails before any
thread starts; ``frames()`` then runs in the source thread. Corrupt packets are counted and
skipped rather than ending the run: a truncated camera dump still yields every good frame.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.codec.hwaccel
import av.error
import numpy as np

from worker.errors import InputError, InputNotFoundError
from worker.stages.frames import Frame, VideoInfo
from worker.stages.speed import HwDecode

__all__ = ["VideoSource", "decode_threads"]

log = logging.getLogger(__name__)

#: Read errors in a row, with no packet between them, after which the input counts as ended.
_MAX_READ_FAILURES = 5


#: Why CUDA decoding failed in this process (None: not tried yet, or it worked). FFmpeg lists
#: "cuda" wherever it was compiled in; creating the device is the only real test, and a
#: machine that failed once will fail again, so later files do not retry.
_cuda_failed: str | None = None
_cuda_lock = threading.Lock()


def _remember_cuda_failure(why: str) -> None:
    global _cuda_failed
    with _cuda_lock:
        _cuda_failed = why
    log.debug("CUDA decoding unavailable (%s); decoding in software", why)


def decode_threads(requested: int = 0) -> int:
    """Decoder threads: as asked, else one per core (FFmpeg's frame threads each decode a
    whole frame, so more than the cores only adds latency and memory)."""
    return requested or min(os.cpu_count() or 1, 16)


def _rate(stream: Any) -> Fraction:
    for r in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if r:
            return Fraction(r)
    return Fraction(25)


class VideoSource:
    """Decoded frames of one video file.

    ``hw_decode``: "auto" decodes on the GPU (NVDEC through PyAV's CUDA hwaccel) where a CUDA
    device opens and falls back to software silently; "cuda" requires it; "off" never tries.
    ``decoder`` says which one runs ("cuda" or "software"). A file is never live: batches may
    wait for it (see ``worker.stages.batching``).
    """

    live = False

    def __init__(
        self,
        path: Path,
        *,
        max_frames: int | None = None,
        threads: int = 0,
        hw_decode: HwDecode = "off",
    ) -> None:
        self.path = path
        self.max_frames = max_frames
        self.bad_packets = 0
        self.frames_read = 0
        self.decoder = "software"
        self.hw_unavailable: str | None = None  # why hardware decoding was not used
        self._hw_error: str | None = None
        if not path.exists():
            raise InputNotFoundError(f"input '{path}': file not found")
        if not path.is_file():
            raise InputError(f"input '{path}': not a file")
        self.container: Any = self._open_hw() if hw_decode != "off" else None
        if self.container is None:
            try:
                self.container = av.open(str(path), mode="r")
            except PermissionError as e:
                raise InputNotFoundError(f"input '{path}': cannot read ({e.strerror})") from e
            except (av.error.FFmpegError, OSError, ValueError) as e:
                raise InputError(f"input '{path}': not a readable video ({_why(e)})") from e
            if self._hw_error is not None:
                # The file opens in software: the device was the problem, here for good.
                _remember_cuda_failure(self._hw_error)
            if hw_decode == "cuda":
                self.container.close()
                raise InputError(
                    f"input '{path}': hardware decoding (cuda) is not available here "
                    f"({self.hw_unavailable})"
                )
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
            if getattr(cc, "is_hwaccel", False):
                self.decoder = "cuda"
            else:
                # Frame and slice threads: decode releases the GIL, so this overlaps with
                # inference. (NVDEC does its own scheduling: no CPU threads there.)
                self.stream.thread_type = "AUTO"
                cc.thread_count = decode_threads(threads)
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

    def _open_hw(self) -> Any:
        """The container with CUDA decoding, or None (``hw_unavailable`` says why)."""
        with _cuda_lock:
            failed = _cuda_failed
        if failed is None and "cuda" not in av.codec.hwaccel.hwdevices_available():
            failed = "FFmpeg has no CUDA support"
        if failed is None:
            try:
                # allow_software_fallback: codecs NVDEC lacks (ffv1, ...) decode on the CPU.
                hw = av.codec.hwaccel.HWAccel(device_type="cuda", allow_software_fallback=True)
                return av.open(str(self.path), mode="r", hwaccel=hw)
            except (av.error.FFmpegError, OSError, ValueError) as e:
                # Creating the CUDA device failed, or the file is unreadable: the software
                # open that follows tells which (and reports the latter in its own words).
                failed = _why(e)
                self._hw_error = failed
        self.hw_unavailable = failed
        return None

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
