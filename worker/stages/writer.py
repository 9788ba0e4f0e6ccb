"""Writer stage: draw each answer on its frame, encode H.264, write one JSON line per frame.

The encoder opens on the first frame (its size is only known after rotation) and keeps the
input's timestamps, so variable frame rate survives. Both outputs are ``AtomicFile``s: the
runner commits them only after every stage finished cleanly.
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

from worker.errors import InputError, OutputError
from worker.models import Model
from worker.ops.overlay import Blender, draw_top, pad_even
from worker.ops.postprocess import NO_CLASS, MaskMap
from worker.ops.preprocess import geometry
from worker.ops.zones import FrameZones, ZoneSet, draw_zones
from worker.stages.atomic import AtomicFile
from worker.stages.frames import Answer, Frame, VideoInfo
from worker.stages.speed import Encoder

__all__ = ["Annotator", "ResultsWriter", "VideoWriter", "nvenc_unavailable"]

log = logging.getLogger(__name__)
Array = np.ndarray[Any, Any]


class Annotator:
    """Turns (frame, answer) into a JSON record and an annotated image, for one model.

    ``record`` and ``draw`` are separate so that a run that encodes no video draws only the
    frames something asks to see (an event's snapshot); ``__call__`` does both. With zones,
    records gain per-zone results and the image their outlines and names (``draw_zones``).
    """

    def __init__(
        self,
        model: Model,
        alpha: float,
        zones: ZoneSet | None = None,
        *,
        draw_zones: bool = True,
    ) -> None:
        self.model = model
        painted = np.zeros(256, dtype=bool)
        painted[: len(model.labels)] = True
        if model.background is not None:
            painted[model.background] = False
        painted[NO_CLASS] = False
        self.blend = Blender.build(model.colors, alpha, painted)
        self.zones = zones if zones else None
        self.draw_zones = draw_zones
        self.totals: dict[str, float] = {}
        self._maps: dict[tuple[tuple[int, int], tuple[int, int]], MaskMap] = {}

    def __call__(self, frame: Frame, answer: Answer) -> tuple[Array, dict[str, Any]]:
        return self.draw(frame, answer), self.record(frame, answer)

    def frame_zones(self, frame_hw: tuple[int, int]) -> FrameZones | None:
        """The zones at this frame size (``InputError`` if a pixel zone does not fit it)."""
        if self.zones is None:
            return None
        try:
            return self.zones.at(frame_hw)
        except ValueError as e:
            raise InputError(f"{e}; check the zone against the video's size") from e

    def frame_zones_or_none(self, frame: Frame) -> FrameZones | None:
        """A classifier's zones for ``frame`` (what ``infer_frames`` crops); None otherwise."""
        if self.model.task != "classify":
            return None
        return self.frame_zones(frame.image.shape[:2])

    def _top(self, answer: Answer) -> list[dict[str, Any]]:
        m = self.model
        return [{"label": m.label(i), "index": i, "score": round(s, 6)} for i, s in answer.top]

    def record(self, frame: Frame, answer: Answer) -> dict[str, Any]:
        """The frame's JSON line (and its share of the run's totals)."""
        record: dict[str, Any] = {"frame": frame.index, "time": round(frame.time, 6)}
        m = self.model
        if m.task == "classify":
            record["top"] = self._top(answer)
            if answer.top:
                best = m.label(answer.top[0][0])
                self.totals[best] = self.totals.get(best, 0) + 1
            if answer.zones is not None:
                record["zones"] = {name: {"top": self._top(a)} for name, a in answer.zones.items()}
            return record
        assert answer.class_map is not None
        small = answer.class_map
        where = self.mask_map(frame.image.shape[:2], small.shape[:2])
        if answer.bits is not None:
            cov = where.coverage_bits(answer.bits, m.labels)
        else:
            cov = where.coverage(small, m.labels)
        record["coverage"] = {k: round(v, 6) for k, v in cov.items()}
        for k, v in cov.items():
            self.totals[k] = self.totals.get(k, 0.0) + v
        fz = self.frame_zones(frame.image.shape[:2])
        if fz is not None:
            record["zones"] = {
                zone: {k: round(v, 6) for k, v in c.items()}
                for zone, c in fz.coverage(where, m.labels, small, answer.bits).items()
            }
        return record

    def draw(self, frame: Frame, answer: Answer) -> Array:
        """The annotated picture: the mask blended over the frame (or the top labels), and
        the zones."""
        m = self.model
        fz = self.frame_zones(frame.image.shape[:2]) if self.draw_zones else None
        if m.task == "classify":
            lines = [f"{m.label(i)} {s:.2f}" for i, s in answer.top]
            image = draw_top(frame.image, lines)
            if fz is not None:
                draw_zones(image, fz, labels=_zone_tops(m, answer))
            return image
        assert answer.class_map is not None
        small = answer.class_map
        where = self.mask_map(frame.image.shape[:2], small.shape[:2])
        image = self.blend.over(frame.image, small, where.restore)
        if fz is not None:
            draw_zones(image, fz)
        return image

    def mask_map(self, frame_hw: tuple[int, int], small_hw: tuple[int, int]) -> MaskMap:
        """Where mask pixels land on the frame: built once per frame size, not per frame."""
        key = (frame_hw, small_hw)
        where = self._maps.get(key)
        if where is None:
            m = self.model
            sh, sw = small_hw
            g = geometry(frame_hw, m.input_hw, m.resize, m.crop_from).then_scale(
                sw / m.input_hw[1], sh / m.input_hw[0]
            )
            if len(self._maps) >= 8:  # sizes changing mid-stream: keep the memory bounded
                self._maps.clear()
            where = self._maps[key] = MaskMap.build(g, small_hw, frame_hw)
        return where


def _zone_tops(model: Model, answer: Answer) -> dict[str, str]:
    """Each zone's best label, as a classifier's zones are drawn."""
    out = {}
    for name, a in (answer.zones or {}).items():
        if a.top:
            i, score = a.top[0]
            out[name] = f"{model.label(i)} {score:.2f}"
    return out


@functools.cache
def nvenc_unavailable() -> str | None:
    """Why NVENC cannot encode here (None: it can). Asked once per process: FFmpeg lists
    h264_nvenc wherever it was compiled in, but only a GPU with NVENC (not A100/H100/H200)
    and its driver can open it."""
    try:
        cc: Any = av.CodecContext.create("h264_nvenc", "w")
        cc.width, cc.height, cc.pix_fmt = 256, 256, "yuv420p"
        cc.time_base = Fraction(1, 25)
        cc.open()
    except (av.error.FFmpegError, OSError, ValueError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def _codec(encoder: Encoder) -> str:
    if encoder == "libx264":
        return "libx264"
    why = nvenc_unavailable()
    if why is None:
        return "h264_nvenc"
    if encoder == "h264_nvenc":
        raise OutputError(f"encoder 'h264_nvenc' cannot be opened on this machine ({why})")
    log.debug("NVENC not usable (%s); encoding with libx264", why)
    return "libx264"


class VideoWriter:
    """H.264 (libx264 or NVENC, yuv420p) in MP4 with faststart, timestamps copied from the
    input. ``encoder="auto"`` takes NVENC where it opens and libx264 elsewhere."""

    def __init__(
        self,
        target: AtomicFile,
        info: VideoInfo,
        *,
        preset: str,
        crf: int,
        encoder: Encoder = "libx264",
    ) -> None:
        self.target = target
        self.info = info
        self.preset = preset
        self.crf = crf
        self.codec = _codec(encoder)
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
        vf = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
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


class ResultsWriter:
    """One JSON object per line, per frame (to standard output for ``-``, a line at a time)."""

    def __init__(self, target: AtomicFile) -> None:
        self.target = target
        if target.stdout:
            self.file: IO[str] = sys.stdout
        else:
            self.file = open(target.temp, "w", encoding="utf-8")  # noqa: SIM115

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
