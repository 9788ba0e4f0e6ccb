"""The run description: how a video is processed, in sections, each field declared once.

``Look`` (how the annotated video looks), ``Encode`` (how it is encoded), ``Analytics`` (zones,
watch rules, which frames run, extra outputs), ``Speed`` (how the machine is used) and ``Live``
(cameras: recording, latency, reconnects). ``Settings`` embeds every section, so a field's
name is also its setting's: ``--line-width``, ``WORKER_LINE_WIDTH``, ``line_width`` in a
pipeline file.

A queued job's options and a camera's overrides are *partial* descriptions: the same flat
names, for the per-input sections only (``PER_INPUT``: a job or a camera may change how its
own video looks, is encoded and analysed, not how the shared model runs). They are checked
with ``check_partial`` when written and laid over the worker's own description with
``RunDescription.overlay`` when used: field by field, each section validated again (as
Frigate lays a camera's settings over the globals: dump what is set, merge, validate).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from worker.errors import SettingsError
from worker.kinds import Anchor, Provider
from worker.messages import plain, tuple_length

__all__ = [
    "CAMERA_NAME",
    "PER_INPUT",
    "SECTIONS",
    "Analytics",
    "Encode",
    "EncoderName",
    "HwDecode",
    "LineSpec",
    "Live",
    "Look",
    "RunDescription",
    "Speed",
    "WatchSpec",
    "ZoneSpec",
    "check_partial",
    "section_of",
]

HwDecode = Literal["auto", "cuda", "off"]
EncoderName = Literal["auto", "libx264", "h264_nvenc"]
#: Camera and zone names become folder and file names (so no leading dot: not "..", not
#: hidden) and metric labels.
CAMERA_NAME = re.compile(r"^(?!\.)[A-Za-z0-9_.-]{1,64}$")
_NAME_RULE = "expected 1-64 letters, digits, '_', '-' or '.', not starting with '.'"


class _Frozen(BaseModel):
    # Validators are built when a section is first used, not when this module is imported: a
    # command that never makes a zone or a job's options does not pay for theirs.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


class _Placed(_Frozen):
    """What zones and lines share: a name, points in ``units``, and maybe one camera."""

    _what: ClassVar[str]  # "zone" or "line", for errors

    name: str
    points: list[tuple[float, float]]  # (bounds per kind, below)
    units: Literal["fraction", "px"] = "fraction"
    camera: str | None = Field(None, description="monitor: this camera only; else every one")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not CAMERA_NAME.match(v):
            raise ValueError(f"{cls._what} name '{v}': {_NAME_RULE}")
        return v


class ZoneSpec(_Placed):
    """A named polygon: points as fractions of the frame (0..1), or pixels with ``units``."""

    _what = "zone"
    points: list[tuple[float, float]] = Field(min_length=3, max_length=256)

    @field_validator("points")
    @classmethod
    def _numbers(cls, v: list[tuple[float, float]]) -> list[tuple[float, float]]:
        if any(not (math.isfinite(x) and math.isfinite(y)) for x, y in v):
            raise ValueError("points must be finite numbers")
        return v

    @model_validator(mode="after")
    def _fractions(self) -> ZoneSpec:
        if self.units == "fraction":
            for x, y in self.points:
                if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                    raise ValueError(
                        f"zone '{self.name}': point ({x:g}, {y:g}) is outside 0..1; give "
                        'fractions of the width and height, or units = "px"'
                    )
        # A zone with no area (its points on one line) has nothing inside: no coverage to
        # count, no crop to classify.
        pts, after = self.points, self.points[1:] + self.points[:1]
        area = sum(a[0] * b[1] - b[0] * a[1] for a, b in zip(pts, after, strict=True)) / 2
        if abs(area) < (1e-6 if self.units == "fraction" else 0.5):
            raise ValueError(
                f"zone '{self.name}': its points enclose no area (they lie on one line); "
                "expected a polygon"
            )
        return self


class LineSpec(_Placed):
    """A named line tracked objects are counted crossing, each way: its two points as
    fractions of the frame (0..1), or pixels with ``units``."""

    _what = "line"
    points: list[tuple[float, float]] = Field(min_length=2, max_length=2)

    @model_validator(mode="after")
    def _two_places(self) -> LineSpec:
        (x1, y1), (x2, y2) = self.points
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
            raise ValueError(f"line '{self.name}': points must be finite numbers")
        if self.units == "fraction" and not all(0.0 <= v <= 1.0 for v in (x1, y1, x2, y2)):
            raise ValueError(
                f"line '{self.name}': a point is outside 0..1; give fractions of the width "
                'and height, or units = "px"'
            )
        if (x1, y1) == (x2, y2):
            raise ValueError(f"line '{self.name}': its two points are the same; expected a line")
        return self


class WatchSpec(_Frozen):
    """A watch rule written as a table (a pipeline file's ``[[watch]]``)."""

    label: str = Field(min_length=1)
    # a fraction, or a detector's count; None: per object (needs zone and loiter_s)
    above: float | None = Field(None, ge=0.0, allow_inf_nan=False)
    zone: str | None = None
    frames: int = Field(1, ge=1)
    start_s: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    end_s: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    min_s: float = Field(0.0, ge=0.0, allow_inf_nan=False)
    loiter_s: float = Field(0.0, ge=0.0, allow_inf_nan=False)


# --------------------------------------------------------------------------------- sections


class Look(_Frozen):
    """How the annotated video looks."""

    alpha: float = Field(0.5, ge=0.0, le=1.0, description="mask opacity over the frame, 0..1")
    top_k: int = Field(5, ge=1, le=100, description="classify: labels reported per frame")
    draw_zones: bool = Field(True, description="draw zone outlines and names in the video")
    line_width: int = Field(
        0, ge=0, le=64, description="zone outlines, in pixels (0: from the frame height)"
    )


class Encode(_Frozen):
    """How the annotated video is encoded."""

    # ultrafast: x264 at ~2.5 ms of CPU per 720p frame instead of ~9 (veryfast), files ~3x
    # larger.
    preset: Literal[
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
        "veryslow", "placebo",
    ] = Field("ultrafast", description="libx264 preset")  # fmt: skip
    crf: int = Field(23, ge=0, le=51, description="libx264 quality, 0..51 (lower: better)")
    encoder: EncoderName = Field("auto", description="auto: NVENC where it opens, else libx264")


class Analytics(_Frozen):
    """Zones, watch rules, which frames the model runs on, and the extra outputs."""

    zones: list[ZoneSpec] = Field(default_factory=list, description="named polygons")
    watch: list[str | WatchSpec] = Field(
        default_factory=list,
        description="rules: [ZONE:]LABEL>THRESHOLD[@FRAMES] [start=S end=S min=S loiter=S]",
    )
    every: int = Field(1, ge=1, le=100_000, description="process every Nth frame")
    fps: float | None = Field(None, gt=0, description="process at most F frames per second")
    masks: str | None = Field(
        None, description="'png' (a folder beside the outputs), a folder path, or 'rle'"
    )
    snapshots: bool = Field(True, description="events: a JPEG of the peak frame")
    picture: bool = Field(True, description="files: a summary PNG of the run beside the results")
    lines: list[LineSpec] = Field(
        default_factory=list, description="named lines tracked objects are counted crossing"
    )
    track: bool = Field(
        False, description="ids that follow each object (box or region) from frame to frame"
    )
    anchor: Anchor = Field(
        "bottom_center", description="the point of a box that zones and lines count"
    )
    tracks: str | None = Field(
        None, description="files: the tracks as MOT Challenge text (frame,id,x,y,w,h,score)"
    )
    regions: bool = Field(
        False, description="segment: each class's separate regions as objects in the results"
    )
    min_area: int = Field(0, ge=0, description="regions: leave out those of fewer frame pixels")
    measure: bool = Field(
        False, description="regions: length along the skeleton and largest width (cracks...)"
    )
    px_per_unit: float | None = Field(
        None, gt=0, description="regions: frame pixels per unit of length, for real sizes"
    )
    unit: str = Field("mm", min_length=1, max_length=16, description="regions: that unit's name")


class Speed(_Frozen):
    """How the machine is used. CUDA and TensorRT fields act only where CUDA really loads."""

    provider: Provider = Field("auto", description="auto: CUDA when it really loads, else CPU")
    threads: int = Field(
        0, ge=0, le=256, description="ONNX Runtime intra-op threads a run; 0: cores / lanes"
    )
    # Frames in parallel, not one frame split over the cores: a split run waits at every
    # parallel loop for whichever thread the decoder or x264 preempted (benchmarks/README).
    lanes: int = Field(
        0, ge=0, le=64, description="model runs in flight; 0: files on the CPU one per core, else 1"
    )
    batch: int = Field(0, ge=0, le=256, description="frames per inference call; 0: per provider")
    # 2, not 4: 6-10 MiB less peak RSS at 720p and no speed lost (A/B alternated on two shapes).
    queue_size: int = Field(2, ge=1, le=1024, description="frames held between two stages")
    fuse: bool = Field(True, description="uint8-in/uint8-out graph around the model")
    resize_in_graph: bool = Field(False, description="stretch: resize on the device, not host")
    fuse_cache: bool = Field(True, description="keep fused graphs on disk: faster next start")
    cache_dir: Path | None = Field(
        None, description="where; default $XDG_CACHE_HOME/video-worker (~/.cache/video-worker)"
    )
    io_binding: bool = Field(True, description="ONNX Runtime IO binding (off: to measure it)")
    batch_wait_ms: float = Field(40.0, ge=0, le=10_000, description="live: max wait for a batch")
    decode_threads: int = Field(0, ge=0, le=64, description="decoder threads; 0: one per core")
    hw_decode: HwDecode = Field("auto", description="NVDEC decoding")
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = "HEURISTIC"
    gpu_mem_limit: int = Field(0, ge=0, description="CUDA arena limit in bytes; 0: none")
    cuda_graph: bool = Field(False, description="CUDA graphs (fixed shapes, one thread)")
    tensorrt: bool = Field(False, description="try the TensorRT provider before CUDA")
    trt_fp16: bool = Field(False, description="TensorRT: allow fp16 kernels")
    trt_cache: Path | None = Field(None, description="TensorRT engine/timing cache folder")

    def lanes_on(self, device: str, *, live: bool = False) -> int:
        """Model runs in flight at once on ``device``: as set, else one per core for files on
        the CPU (each run on one core's share of threads); one for cameras, where a frame's
        latency counts more than throughput (a run on one core takes longer), and on CUDA."""
        if self.lanes:
            return self.lanes
        return (os.cpu_count() or 1) if device == "cpu" and not live else 1

    @property
    def batch_wait_s(self) -> float:
        return self.batch_wait_ms / 1000.0


class Live(_Frozen):
    """Cameras (``worker monitor``): recording, latency, reconnects and the live view."""

    record: Path | None = Field(None, description="monitor: folder for segmented recordings")
    segment_seconds: float = Field(60.0, gt=0, le=86_400, description="length of a recording")
    max_latency_ms: float = Field(500.0, gt=0, description="older frames are dropped, not run")
    live_queue: int = Field(2, ge=1, le=256, description="frames per camera awaiting inference")
    writer_queue: int = Field(
        8, ge=1, le=1024, description="frames per camera awaiting drawing and recording"
    )
    open_timeout_s: float = Field(10.0, gt=0, description="camera: connect and first answer")
    read_timeout_s: float = Field(5.0, gt=0, description="camera: silence that counts as stall")
    reconnect_base_s: float = Field(0.5, gt=0, description="first reconnect delay; doubles")
    reconnect_max_s: float = Field(30.0, gt=0, description="longest reconnect delay")
    reconnect_attempts: int = Field(0, ge=0, description="failed connects in a row; 0: forever")
    ui_fps: float = Field(5.0, gt=0, le=60, description="live view: frames per second at most")
    jpeg_quality: int = Field(80, ge=10, le=100, description="live view: JPEG quality")


#: Section name -> its model, in the order a description lists them.
SECTIONS: dict[str, type[_Frozen]] = {
    "look": Look,
    "encode": Encode,
    "analytics": Analytics,
    "speed": Speed,
    "live": Live,
}
#: What a queued job or one camera may set for itself: how its own video looks, is encoded
#: and analysed. How the model runs and how cameras connect belong to the worker.
PER_INPUT = ("look", "encode", "analytics")
_SECTION_OF = {name: section for section, cls in SECTIONS.items() for name in cls.model_fields}


def section_of(field: str) -> str | None:
    """The section a field belongs to (None: not a field of the description)."""
    return _SECTION_OF.get(field)


class RunDescription(_Frozen):
    look: Look = Field(default_factory=Look)
    encode: Encode = Field(default_factory=Encode)
    analytics: Analytics = Field(default_factory=Analytics)
    speed: Speed = Field(default_factory=Speed)
    live: Live = Field(default_factory=Live)

    @classmethod
    def of(cls, values: Any) -> RunDescription:
        """From flat fields: a mapping, or an object with them as attributes (``Settings``)."""
        get = values.get if isinstance(values, Mapping) else lambda k: getattr(values, k)
        sections = {
            name: {f: get(f) for f in model.model_fields if _has(values, f)}
            for name, model in SECTIONS.items()
        }
        return cls.model_validate(sections)

    def overlay(self, partial: Mapping[str, Any]) -> RunDescription:
        """This description with ``partial``'s flat fields laid over it, field by field; every
        section it touches validated again (``SettingsError`` naming the field)."""
        updates: dict[str, dict[str, Any]] = {}
        for key, value in partial.items():
            section = section_of(key)
            if section is None:
                raise SettingsError(f"unknown option '{key}'")
            updates.setdefault(section, {})[key] = value
        if not updates:
            return self
        merged = {
            name: getattr(self, name).model_dump() | updates.get(name, {}) for name in SECTIONS
        }
        try:
            return type(self).model_validate(merged)
        except ValidationError as e:
            where, what = _plain(e)
            raise SettingsError(f"{where}: {what}") from e

    def flat(self) -> dict[str, Any]:
        """Every field by its flat name."""
        out: dict[str, Any] = {}
        for name in SECTIONS:
            out.update(getattr(self, name).model_dump())
        return out


def _has(values: Any, field: str) -> bool:
    return field in values if isinstance(values, Mapping) else hasattr(values, field)


def _plain(e: ValidationError) -> tuple[str, str]:
    err = e.errors()[0]
    loc = tuple(err.get("loc") or ())
    if loc and loc[0] in SECTIONS:  # "look.alpha" is "alpha" to whoever wrote it
        err = {**err, "loc": loc[1:]}
    known = list(_SECTION_OF)
    lengths = {
        name: n
        for cls in SECTIONS.values()
        for name, f in cls.model_fields.items()
        if (n := tuple_length(f.annotation)) is not None
    }
    where, what = plain(err, known=known, lengths=lengths)
    return where or "options", what


def check_partial(
    values: Mapping[str, Any], where: str, sections: Iterable[str] = PER_INPUT
) -> dict[str, Any]:
    """``values`` as a partial description of ``sections``, checked: each key a field of one of
    them, each value valid. Returns the values as JSON-ready data (what a job carries).
    ``SettingsError`` names ``where`` and the key."""
    allowed = set(sections)
    by_section: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        section = section_of(key)
        if section not in allowed:
            fields = sorted(f for s in allowed for f in SECTIONS[s].model_fields)
            what = "cannot be set here" if section is not None else "is not an option"
            raise SettingsError(f"{where}: '{key}' {what}; expected one of: {', '.join(fields)}")
        by_section.setdefault(section, {})[key] = value
    out: dict[str, Any] = {}
    for section, given in by_section.items():
        try:
            checked = SECTIONS[section].model_validate(given)
        except ValidationError as e:
            field, what = _plain(e)
            raise SettingsError(f"{where}: {field}: {what}") from e
        out.update(checked.model_dump(mode="json", include=set(given)))
    return out
