"""A file run's two main outputs: the annotated video (H.264) and one JSON line per frame.

Both are outputs of the frame loop (``worker.stages.loop``) and write to ``AtomicFile``s: the
runner commits them only after every stage finished cleanly. The encoder opens on the first
frame (its size is only known after rotation) and keeps the input's timestamps, so variable
frame rate survives.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from fractions import Fraction
from typing import IO, Any

import av
import av.error
import cv2
import numpy as np

from worker.description import Encode, EncoderName
from worker.devices import no_nvidia_device
from worker.errors import OutputError
from worker.ops.overlay import pad_even
from worker.stages.atomic import AtomicFile
from worker.stages.frames import Answer, Frame, Item, VideoInfo
from worker.stages.loop import Output, Picture, Record

__all__ = ["ResultsWriter", "VideoWriter", "nvenc_unavailable"]

log = logging.getLogger(__name__)
Array = np.ndarray[Any, Any]


@functools.cache
def nvenc_unavailable() -> str | None:
    """Why NVENC cannot encode here (None: it can). Asked once per process: FFmpeg lists
    h264_nvenc wherever it was compiled in, but only a GPU with NVENC (not A100/H100/H200)
    and its driver can open it."""
    absent = no_nvidia_device()
    if absent is not None:
        return absent
    try:
        cc: Any = av.CodecContext.create("h264_nvenc", "w")
        cc.width, cc.height, cc.pix_fmt = 256, 256, "yuv420p"
        cc.time_base = Fraction(1, 25)
        cc.open()
    except (av.error.FFmpegError, OSError, ValueError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def _codec(encoder: EncoderName) -> str:
    if encoder == "libx264":
        return "libx264"
    why = nvenc_unavailable()
    if why is None:
        return "h264_nvenc"
    if encoder == "h264_nvenc":
        raise OutputError(f"encoder 'h264_nvenc' cannot be opened on this machine ({why})")
    log.debug("NVENC not usable (%s); encoding with libx264", why)
    return "libx264"


class VideoWriter(Output):
    """H.264 (libx264 or NVENC, yuv420p) in MP4 with faststart, timestamps copied from the
    input. ``encoder="auto"`` takes NVENC where it opens and libx264 elsewhere."""

    def __init__(self, target: AtomicFile, info: VideoInfo, encode: Encode) -> None:
        self.target = target
        self.info = info
        self.preset = encode.preset
        self.crf = encode.crf
        self.codec = _codec(encode.encoder)
        self.container: Any = None
        self.stream: Any = None
        self.size: tuple[int, int] | None = None  # (w, h) of the encoded stream
        self.last_pts = -1
        self.frames = 0

    def _open(self, w: int, h: int) -> None:
        # A FIFO or a device cannot seek back to write the index at the end: a fragmented MP4
        # streams (each fragment indexed as it goes), and players read it all the same.
        movflags = (
            "frag_keyframe+empty_moov+default_base_moof" if self.target.direct else "+faststart"
        )
        self.container = av.open(
            str(self.target.temp), mode="w", format="mp4", options={"movflags": movflags}
        )
        s = self.container.add_stream(self.codec, rate=self.info.rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.time_base = self.info.time_base
        if self.codec == "libx264":
            s.options = {"preset": self.preset, "crf": str(self.crf)}
        else:
            # NVENC has its own presets (p1 fastest .. p7 best) and constant quality "cq".
            # Written for GPUs with NVENC; not run in this project's CI (no such GPU).
            s.options = {"preset": "p2", "tune": "hq", "rc": "vbr", "cq": str(self.crf)}
        self.stream, self.size = s, (w, h)

    def processed(self, item: Item, answer: Answer, record: Record, picture: Picture) -> None:
        self.write(item.frame, picture())

    def skipped(self, item: Item, picture: Picture) -> None:
        self.write(item.frame, picture())

    def write(self, frame: Frame, image: Array) -> None:
        image = pad_even(image)
        h, w = image.shape[:2]
        if self.container is None:
            self._open(w, h)
        elif (w, h) != self.size:
            # A resolution change mid-stream: keep one valid stream at the first size.
            assert self.size is not None
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_LINEAR)
        # OpenCV's BGR -> I420 (BT.601, limited range, as swscale's default) costs a quarter
        # of the conversion the encoder would otherwise run on a bgr24 frame.
        yuv: Any = cv2.cvtColor(np.asarray(image, dtype=np.uint8), cv2.COLOR_BGR2YUV_I420)
        # The frame wraps the array (a reference counted buffer, which the encoder refs
        # rather than copies): x264 copies the picture in once, in avcodec_send_frame, where
        # PyAV lets go of the GIL. from_ndarray copied it once more first, holding the GIL.
        vf = av.VideoFrame.from_numpy_buffer(yuv, format="yuv420p")
        pts = frame.pts
        if pts is None:
            pts = round(frame.index / self.info.rate / self.info.time_base)
        # x264 refuses non-increasing timestamps; a broken input must not end the run here.
        pts = max(pts, self.last_pts + 1)
        vf.pts, vf.time_base, self.last_pts = pts, self.info.time_base, pts
        for packet in self.stream.encode(vf):
            self.container.mux(packet)
        self.frames += 1

    def close(self, *, flush: bool = True) -> None:
        """Close the file; flush the encoder's delayed frames only when the run succeeded."""
        if self.container is None:
            return
        try:
            if flush and self.stream is not None:
                for packet in self.stream.encode(None):
                    self.container.mux(packet)
        finally:
            self.container.close()
            self.container = None


class ResultsWriter(Output):
    """One JSON object per line, per frame (to standard output for ``-``, a line at a time)."""

    def __init__(self, target: AtomicFile) -> None:
        self.target = target
        if target.stdout:
            self.file: IO[str] = sys.stdout
        else:
            self.file = open(target.temp, "w", encoding="utf-8")  # noqa: SIM115

    def processed(self, item: Item, answer: Answer, record: Record, picture: Picture) -> None:
        self.write(record)

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        if not self.target.stdout:
            self.file.write(line)
            return
        try:
            self.file.write(line)
            self.file.flush()  # a reader (| head, | jq) sees each frame as it is done
        except BrokenPipeError as e:
            raise OutputError("results '-': stdout was closed by its reader") from e

    def close(self) -> None:
        if not self.target.stdout:
            self.file.close()
