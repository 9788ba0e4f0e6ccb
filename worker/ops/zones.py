"""Zones: named polygons on the frame, and what the model saw inside each.

A zone's points are fractions of the frame's width and height (0..1), so a zone drawn once
survives a change of resolution; ``units="px"`` takes pixel coordinates instead, checked
against the frame size.

- **Segmenters**: a zone's coverage of a label is the fraction of the zone's frame pixels the
  label covers, counted on the model-resolution mask. The zone is rasterised once per frame
  size into a weight per mask pixel (how many of the zone's frame pixels that mask pixel
  becomes, the ``MaskMap`` way), so each frame costs one weighted bincount per zone, never a
  full-size mask.
- **Classifiers**: a zone is a region to classify: its bounding rectangle is cropped from the
  frame and classified on its own.

Plain numpy and OpenCV; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import cv2
import numpy as np

from worker.ops.postprocess import NO_CLASS, MaskMap

__all__ = ["FrameZones", "Zone", "ZoneSet", "draw_zones", "zones_at"]

Array = np.ndarray[Any, Any]
Units = Literal["fraction", "px"]


@dataclass(frozen=True)
class Zone:
    name: str
    points: tuple[tuple[float, float], ...]  # (x, y), at least 3
    units: Units = "fraction"

    def pixels(self, frame_hw: tuple[int, int]) -> Array:
        """The polygon in frame pixels, int32 (k, 2); ``ValueError`` naming the zone if a
        pixel point lies outside the frame."""
        h, w = frame_hw
        pts = np.array(self.points, dtype=np.float64)
        if self.units == "px":
            outside = (pts[:, 0] < 0) | (pts[:, 0] > w) | (pts[:, 1] < 0) | (pts[:, 1] > h)
            if outside.any():
                x, y = pts[int(np.argmax(outside))]
                raise ValueError(
                    f"zone '{self.name}': point ({x:g}, {y:g}) px is outside the {w}x{h} frame"
                )
        else:
            pts = pts * (w, h)
        return np.clip(np.round(pts), 0, (w, h)).astype(np.int32)


def _rasterise(polygon: Array, frame_hw: tuple[int, int]) -> Array:
    mask = np.zeros(frame_hw, dtype=np.uint8)
    cv2.fillPoly(mask, [polygon.reshape(-1, 1, 2)], 1)
    return mask.astype(bool)


@dataclass
class FrameZones:
    """The zones of one frame size: polygons, crop boxes, and (once a mask map is known) the
    per-mask-pixel weights their coverage is counted with."""

    zones: tuple[Zone, ...]
    frame_hw: tuple[int, int]
    polygons: list[Array] = field(init=False)
    boxes: list[tuple[int, int, int, int]] = field(init=False)  # x0, y0, x1, y1 (exclusive)
    _weights: dict[tuple[int, int], list[tuple[Array, int]]] = field(
        init=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        h, w = self.frame_hw
        self.polygons = [z.pixels(self.frame_hw) for z in self.zones]
        self.boxes = []
        for p in self.polygons:
            x0, y0 = p.min(axis=0)
            x1, y1 = p.max(axis=0)
            # At least one pixel: a degenerate zone still crops something to classify.
            x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
            self.boxes.append((int(x0), int(y0), int(min(x1, w)), int(min(y1, h))))

    def crops(self, image: Array) -> list[Array]:
        """Each zone's bounding rectangle cut from the frame (views, not copies)."""
        return [image[y0:y1, x0:x1] for x0, y0, x1, y1 in self.boxes]

    def weights(self, where: MaskMap) -> list[tuple[Array, int]]:
        """Per zone: (weights (h, w) float64 over the mask, the zone's frame pixel count)."""
        key = where.small_hw
        cached = self._weights.get(key)
        if cached is not None:
            return cached
        sh, sw = where.small_hw
        rows, cols = where.rows, where.cols
        out = []
        for polygon in self.polygons:
            inside = _rasterise(polygon, self.frame_hw)
            total = int(inside.sum())
            seen = inside & (rows[:, None] >= 0) & (cols[None, :] >= 0)
            r, c = np.nonzero(seen)
            idx = rows[r].astype(np.int64) * sw + cols[c]
            weights = np.bincount(idx, minlength=sh * sw).astype(np.float64).reshape(sh, sw)
            out.append((weights, total))
        self._weights[key] = out
        return out

    def coverage(
        self,
        where: MaskMap,
        labels: Sequence[str],
        class_map: Array,
        bits: Array | None = None,
    ) -> dict[str, dict[str, float]]:
        """Per zone, label -> fraction of the zone's frame pixels (labels present only).
        Pixels the model did not see (outside a centre crop) count as uncovered."""
        out: dict[str, dict[str, float]] = {}
        for zone, (weights, total) in zip(self.zones, self.weights(where), strict=True):
            cover: dict[str, float] = {}
            if total:
                if bits is None:
                    counts = np.bincount(class_map.ravel(), weights=weights.ravel(), minlength=256)
                    for i in range(min(len(labels), NO_CLASS)):
                        if counts[i]:
                            cover[labels[i]] = float(counts[i]) / total
                else:
                    for k, label in enumerate(labels):
                        n = float(weights[(bits >> k) & 1 != 0].sum())
                        if n:
                            cover[label] = n / total
            out[zone.name] = cover
        return out


class ZoneSet:
    """The zones of one input or camera, resolved per frame size (kept for a few sizes)."""

    def __init__(self, zones: Sequence[Zone]) -> None:
        self.zones = tuple(zones)
        self._by_size: dict[tuple[int, int], FrameZones] = {}

    def __bool__(self) -> bool:
        return bool(self.zones)

    def __len__(self) -> int:
        return len(self.zones)

    def at(self, frame_hw: tuple[int, int]) -> FrameZones:
        found = self._by_size.get(frame_hw)
        if found is None:
            if len(self._by_size) >= 4:  # resolution changes mid-stream: memory stays bounded
                self._by_size.clear()
            found = self._by_size[frame_hw] = FrameZones(self.zones, frame_hw)
        return found


def zones_at(frame: FrameZones, point: tuple[float, float]) -> list[str]:
    """The names of the zones that hold ``point`` (x, y in frame pixels; an edge is in)."""
    return [
        z.name
        for z, polygon in zip(frame.zones, frame.polygons, strict=True)
        if cv2.pointPolygonTest(
            polygon.reshape(-1, 1, 2).astype(np.float32), (float(point[0]), float(point[1])), False
        )
        >= 0
    ]


def draw_zones(
    image: Array,
    frame: FrameZones,
    color: tuple[int, int, int] = (0, 255, 255),
    labels: dict[str, str] | None = None,
    line_width: int = 0,
) -> Array:
    """Outlines and names of the zones on ``image`` (BGR, drawn in place, returned); a zone
    in ``labels`` shows that text after its name (a classifier's answer for it).
    ``line_width``: of the outlines, in pixels (0: from the frame height, 2 px at 720p)."""
    h = image.shape[0]
    thickness = max(1, round(h / 360))  # of the names
    outline = line_width or thickness
    scale = max(0.4, h / 900)
    for zone, polygon in zip(frame.zones, frame.polygons, strict=True):
        cv2.polylines(image, [polygon.reshape(-1, 1, 2)], True, color, outline, cv2.LINE_AA)
        x, y = (int(v) for v in polygon.min(axis=0))
        org = (x + 3, max(y + int(18 * scale), int(14 * scale)))
        text = f"{zone.name}: {labels[zone.name]}" if labels and zone.name in labels else zone.name
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0),
                    thickness + 2, cv2.LINE_AA)  # fmt: skip
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color,
                    thickness, cv2.LINE_AA)  # fmt: skip
    return image
