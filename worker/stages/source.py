"""Source stage: decode a video file with PyAV into upright BGR frames.

Opening happens in the caller's thread so that a missing or non-video input fails before any
thread starts (``probe`` does only that, to check an input before a large model loads);
``frames()`` then runs in the source thread. Damage is counted and skipped rather than ending
the run: a truncated camera dump still yields every good frame, and says that it ended early.
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

from worker.description import HwDecode
from worker.devices import no_nvidia_device
from worker.errors import InputError, InputNotFoundError
from worker.stages.frames import Frame, VideoInfo
from worker.stages.packed import rate_divisor
from worker.stages.timing import FrameClock

__all__ = ["VideoSource", "decode_threads", "probe"]

log = logging.getLogger(__name__)

#: Read errors in a row, with no packet between them, after which the input counts as ended.
_MAX_READ_FAILURES = 5

#: Demuxers that turn what is not video into pictures: text (FFmpeg picks tty for any longer
#: .txt, .nfo or .asc file) and text-mode art. Each "plays" as a video of rendered characters.
_NOT_VIDEO_FORMATS = {
    "tty": "text",
    "bin": "text art",
    "xbin": "text art",
    "adf": "text art",
    "idf": "text art",
}
#: Their decoders, should another demuxer hand one of them over.
_TEXT_CODECS = frozenset({"ansi", "bintext", "xbin", "idf"})

#: Containers whose header states the length in time: Matroska's Segment duration, written
#: when the file is finished. Other formats without a frame count get a duration FFmpeg
#: estimates from the file as it is (its last timestamps, or its bit rate), which cannot show
#: that the end was cut off and, from the bit rate, can be far off in healthy files.
_STATED_DURATION = frozenset({"matroska,webm"})

#: How many frame intervals short of its stated length a file may end and still count as
#: whole: muxers round a length or count a last frame differently, by a frame or so.
_SLACK_FRAMES = 2


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


def _check_path(path: Path) -> None:
    if not path.exists():
        raise InputNotFoundError(f"input '{path}': file not found")
    if not path.is_file():
        raise InputError(f"input '{path}': not a file")


def _open(path: Path) -> Any:
    """The container, opened for software decoding."""
    try:
        return av.open(str(path), mode="r")
    except PermissionError as e:
        raise InputNotFoundError(f"input '{path}': cannot read ({e.strerror})") from e
    except (av.error.FFmpegError, OSError, ValueError) as e:
        raise InputError(f"input '{path}': not a readable video ({_why(e)})") from e


def _stated_length(
    container: Any, stream: Any, rate: Fraction
) -> tuple[int | None, Fraction | None]:
    """(frames, seconds) the header announces, or (None, None) where it announces neither.

    A frame count (MP4's sample table, AVI's header) gives both, the length at the average
    rate (which MP4 derives from that count and its duration); Matroska states a duration,
    and the frames are that at the average rate: exact at a constant rate, an estimate else.
    """
    if stream.frames and stream.frames > 0:
        return int(stream.frames), stream.frames / rate
    if container.format.name in _STATED_DURATION and container.duration:
        seconds = Fraction(container.duration, av.time_base)
        return round(seconds * rate), seconds
    return None, None


def _inspect(container: Any, path: Path) -> tuple[Any, VideoInfo]:
    """The video stream to decode and what is known of it; InputError if there is none."""
    fmt = container.format.name
    if fmt in _NOT_VIDEO_FORMATS:
        raise InputError(
            f"input '{path}': FFmpeg reads it as '{fmt}' ({_NOT_VIDEO_FORMATS[fmt]}), not a video"
        )
    if not container.streams.video:
        kinds = sorted({str(s.type) for s in container.streams}) or ["none"]
        raise InputError(f"input '{path}': no video stream (found streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    cc = stream.codec_context
    if cc is None:  # FFmpeg found no decoder: an unknown codec tag or a damaged header
        raise InputError(
            f"input '{path}': its video stream has no decoder (unknown or damaged codec)"
        )
    if cc.name in _TEXT_CODECS:
        raise InputError(f"input '{path}': FFmpeg reads it as '{fmt}' (text art), not a video")
    if not cc.width or not cc.height:
        raise InputError(f"input '{path}': video stream has no frame size")
    rate = _rate(stream)
    frames, seconds = _stated_length(container, stream, rate)
    # DivX-era AVI may state twice the real rate, and twice the frames (worker.stages.packed).
    divisor = rate_divisor(path, stream.index) if (fmt, cc.name) == ("avi", "mpeg4") else 1
    if divisor > 1:
        rate /= divisor
        frames = None if frames is None else round(frames / divisor)
    info = VideoInfo(
        path=str(path),
        codec=cc.name,
        pix_fmt=cc.pix_fmt,
        width=cc.width,
        height=cc.height,
        time_base=Fraction(stream.time_base or Fraction(1, 90000)),
        rate=rate,
        frames=frames,
        format=fmt,
        duration=None if seconds is None else float(seconds),
        by_count=divisor > 1,
    )
    return stream, info


def probe(path: Path) -> VideoInfo:
    """What ``VideoSource(path)`` finds, with the same InputError for a missing, unreadable or
    non-video input, but no decoder set up: no CUDA device, no decoder threads, no frame.

    FFmpeg still reads the start of the file to learn the stream's parameters, as any open
    does: tens of milliseconds (1080p H.264: about 20 ms in MP4, 85 ms in Matroska, where
    decoding its 60 frames takes 1.5 to 3 s). A caller that will decode the file anyway
    checks it by opening its source instead (``runner.open_source``, as ``worker run`` does
    before it loads the model), so that the file's start is read once.
    """
    _check_path(path)
    container = _open(path)
    try:
        return _inspect(container, path)[1]
    finally:
        container.close()


class VideoSource:
    """Decoded frames of one video file.

    ``hw_decode``: "auto" decodes on the GPU (NVDEC through PyAV's CUDA hwaccel) where a CUDA
    device opens and falls back to software silently; "cuda" requires it; "off" never tries.
    ``decoder`` says which one runs ("cuda" or "software"). A file is never live: batches may
    wait for it (see ``worker.stages.batching``).

    What ``frames()`` met, once it ended (each says so in one warning on this module's logger):

    - ``bad_packets``: data skipped as undecodable: packets the demuxer could not read whole,
      packets the decoder refused, read errors, and pictures the decoder flagged as damaged
      (a cut MPEG-TS ends in a half picture that FFmpeg patches up); ``damaged_frames`` counts
      the last kind alone. None of them is passed on as a frame.
    - ``frames_expected``: the frames the container header announces (``info.frames``,
      known on opening): its frame count (MP4, MOV, AVI), else its stated duration at the
      average rate (Matroska, WebM: exact at a constant rate, an estimate at a variable one);
      None where it announces neither (MPEG-TS, raw streams) and FFmpeg only estimates.
    - ``truncated``: the input ended early. Either it stopped more than ``_SLACK_FRAMES`` frame
      intervals short of the length its header states (frame count / average rate, or the
      duration), measured to the end of the last packet read, from the stream's start or from
      time 0 if that is earlier: so a file whose stated length rounds differently by a frame or
      two is whole, and frames lost to damage inside the file do not count as cut off. Or its
      last packet was damaged: cut short, undecodable, decoded as a damaged picture, or
      followed only by read errors. Not judged when ``max_frames`` stopped the reading.
    - ``timestamps_fixed``: frames given another time than their presentation timestamp,
      because those went backwards or repeated (see ``worker.stages.timing.FrameClock``).
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
        self.damaged_frames = 0
        self.frames_read = 0
        self.truncated = False
        self.timestamps_fixed = 0
        self.decoder = "software"
        self.hw_unavailable: str | None = None  # why hardware decoding was not used
        self._hw_error: str | None = None
        self._reached = Fraction(0)  # seconds: the end of the latest packet read
        self._last_pts: int | None = None  # of the last packet read
        self._tail_damaged = False  # the last packet read was damaged
        _check_path(path)
        self.container: Any = self._open_hw() if hw_decode != "off" else None
        if self.container is None:
            self.container = _open(path)
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
            self.stream, self.info = _inspect(self.container, path)
            cc = self.stream.codec_context
            if getattr(cc, "is_hwaccel", False):
                self.decoder = "cuda"
            else:
                # Frame and slice threads: decode releases the GIL, so this overlaps with
                # inference. (NVDEC does its own scheduling: no CPU threads there.)
                self.stream.thread_type = "AUTO"
                cc.thread_count = decode_threads(threads)
        except BaseException:
            self.container.close()
            raise
        self.frames_expected = self.info.frames
        # (At the stated rate: a doubled packed AVI states twice the frames at twice the rate.)
        self._stated = _stated_length(self.container, self.stream, _rate(self.stream))[1]
        if self.info.by_count:
            log.warning(
                "input '%s': packed AVI whose header states twice the frame rate; frames "
                "timed at %.3g fps, %s of them expected",
                path, float(self.info.rate), self.frames_expected,
            )  # fmt: skip
        start = self.stream.start_time
        self._start = Fraction(start) * self.info.time_base if start is not None else Fraction(0)

    def _open_hw(self) -> Any:
        """The container with CUDA decoding, or None (``hw_unavailable`` says why)."""
        with _cuda_lock:
            failed = _cuda_failed
        if failed is None and "cuda" not in av.codec.hwaccel.hwdevices_available():
            failed = "FFmpeg has no CUDA support"
        if failed is None:
            failed = no_nvidia_device()
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
        """Decoded frames in presentation order, their times increasing; stops at
        ``max_frames``. Each frame waits for the next one to be decoded: only then does it
        show whether its timestamp can be trusted (see ``worker.stages.timing.FrameClock``)."""
        clock = FrameClock(self.info.time_base, self.info.rate, by_count=self.info.by_count)
        held: Any = None
        for f in self._decoded():
            clock.count(f.pts, f.dts)
            if held is not None:
                yield self._frame(held, clock)
                if self.max_frames is not None and self.frames_read >= self.max_frames:
                    return
            held = f
        if held is not None:
            yield self._frame(held, clock)
        self._finish()

    def _decoded(self) -> Iterator[Any]:
        """The decoder's frames in presentation order, less the damage (counted)."""
        for packet in self._packets():
            if packet is not None and packet.size:
                self._read(packet)
            if packet is not None and packet.is_corrupt:
                # The demuxer could not read it whole (a truncated file ends this way).
                self._bad("a truncated or corrupt packet")
                self._tail_damaged = True
                continue
            try:
                decoded = packet.decode() if packet is not None else self.stream.decode(None)
            except av.error.InvalidDataError as e:
                # One bad packet must not end a long run: count it, say so once, go on.
                self._bad(_why(e))
                self._tail_damaged = True
                continue
            for f in decoded:
                if f.is_corrupt:
                    # Decoded with errors, the gaps patched from other pictures: not a frame
                    # to show a model. A cut MPEG-TS ends in one (its packet reads whole).
                    self.damaged_frames += 1
                    self._bad("a picture the decoder could only partly decode")
                    if f.pts is None or f.pts == self._last_pts:
                        self._tail_damaged = True
                    continue
                yield f

    def _read(self, packet: Any) -> None:
        """Note how far the file reached, for ``truncated``."""
        self._tail_damaged = False
        self._last_pts = packet.pts
        ts = packet.pts if packet.pts is not None else packet.dts
        if ts is not None:
            tb = Fraction(packet.time_base or self.info.time_base)
            end = ts * tb + (packet.duration * tb if packet.duration else 1 / self.info.rate)
            self._reached = max(self._reached, end)

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
                    self._tail_damaged = True
                    yield None
                    return

    def _bad(self, why: str) -> None:
        self.bad_packets += 1
        if self.bad_packets == 1:
            log.warning("input '%s': skipping undecodable data (%s)", self.path, why)

    def _finish(self) -> None:
        """Judge, once the input ended, whether it was cut off (see the class docstring)."""
        short = False
        if self._stated is not None:
            reached = self._reached - min(self._start, Fraction(0))
            short = reached < self._stated - _SLACK_FRAMES / self.info.rate
        self.truncated = short or self._tail_damaged
        if short and self.stream.frames:
            log.warning(
                "input '%s': ends early: %d of the %d frames its header counts were decoded; "
                "the file looks truncated",
                self.path,
                self.frames_read,
                self.frames_expected,
            )
        elif short:
            log.warning(
                "input '%s': ends early, at %.2f s of the %.2f s its header states (%d of about "
                "%d frames decoded); the file looks truncated",
                self.path,
                float(self._reached),
                self.info.duration,
                self.frames_read,
                self.frames_expected,
            )
        elif self.truncated:
            log.warning(
                "input '%s': its last frame is cut off or damaged (%d good frames before it); "
                "the file looks truncated",
                self.path,
                self.frames_read,
            )

    def _frame(self, f: Any, clock: FrameClock) -> Frame:
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
        pts = clock.time(f.pts, f.dts)
        if clock.fixed and not self.timestamps_fixed and not self.info.by_count:
            log.warning(
                "input '%s': frame timestamps go backwards or repeat (from frame %d on); "
                "timing frames by their decode timestamps or the frame rate instead",
                self.path,
                index,
            )
        self.timestamps_fixed = clock.fixed
        return Frame(index=index, pts=pts, time=float(pts * self.info.time_base), image=image)


def _why(e: BaseException) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__
