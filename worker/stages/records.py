"""What is recorded of each answer: the frame's JSON record and the run's totals.

Separate from drawing (``painters``): a run that encodes no video draws only the frames
something asks to see, and records every one. Both map model-resolution masks onto frames
through the same ``MaskMaps``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from worker.description import Analytics
from worker.errors import InputError
from worker.models import Model
from worker.ops.detect import to_frame
from worker.ops.postprocess import MaskMap
from worker.ops.preprocess import geometry
from worker.ops.regions import Region, bit_masks, class_masks, find_regions
from worker.ops.zones import FrameZones, ZoneSet, zones_at
from worker.stages.frames import Answer, Frame

__all__ = ["MaskMaps", "Recorder"]

Array = np.ndarray[Any, Any]


class MaskMaps:
    """Where a model-resolution mask lands on a frame, built once per (frame size, mask size),
    not per frame."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self._maps: dict[tuple[tuple[int, int], tuple[int, int]], MaskMap] = {}

    def __call__(self, frame_hw: tuple[int, int], small_hw: tuple[int, int]) -> MaskMap:
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


class Recorder:
    """Turns (frame, answer) into the frame's JSON record, and adds it to the totals. With
    zones, records gain per-zone results."""

    def __init__(
        self,
        model: Model,
        zones: ZoneSet | None,
        maps: MaskMaps | None = None,
        analytics: Analytics | None = None,
    ) -> None:
        self.model = model
        self.zones = zones if zones else None
        self.maps = maps or MaskMaps(model)
        self.totals: dict[str, float] = {}
        self.processed = 0
        # Regions (``analytics.regions``): a segmenter's classes split into objects.
        a = analytics
        self.regions = a if a is not None and a.regions and model.task == "segment" else None
        self.classes = [i for i in range(len(model.labels)) if i != model.background]
        self.last_regions: list[Region] = []  # of the newest frame recorded: for the painter
        # detect: the newest frame's boxes in frame pixels, rows x1, y1, x2, y2, score, class
        self.last_boxes: Array = np.zeros((0, 6), np.float32)
        self.most_regions: dict[str, int] = {}  # per label, the most in one frame

    @property
    def counts_objects(self) -> bool:
        """Whether records hold ``objects`` (regions, or a detector's boxes)."""
        return self.regions is not None or self.model.task == "detect"

    def frame_zones(self, frame_hw: tuple[int, int]) -> FrameZones | None:
        """The zones at this frame size (``InputError`` if a pixel zone does not fit it)."""
        if self.zones is None:
            return None
        try:
            return self.zones.at(frame_hw)
        except ValueError as e:
            raise InputError(f"{e}; check the zone against the video's size") from e

    def zones_to_classify(self, frame: Frame) -> FrameZones | None:
        """A classifier's zones for ``frame`` (each is cropped and classified); else None."""
        if self.model.task != "classify":
            return None
        return self.frame_zones(frame.image.shape[:2])

    def _top(self, answer: Answer) -> list[dict[str, Any]]:
        m = self.model
        return [{"label": m.label(i), "index": i, "score": round(s, 6)} for i, s in answer.top]

    def record(self, frame: Frame, answer: Answer) -> dict[str, Any]:
        """The frame's JSON line (and its share of the run's totals)."""
        record: dict[str, Any] = {"frame": frame.index, "time": round(frame.time, 6)}
        self.processed += 1
        m = self.model
        if m.task == "detect":
            self._detections(record, frame, answer)
            return record
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
        where = self.maps(frame.image.shape[:2], small.shape[:2])
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
        if self.regions is not None:
            self._objects(record, answer, where, fz)
        return record

    def _detections(self, record: dict[str, Any], frame: Frame, answer: Answer) -> None:
        """A detector's boxes as ``objects`` (label, score, box in frame pixels, and the zones
        holding its anchor, the box's bottom centre, as supervision's PolygonZone counts);
        ``counts`` per label, and per zone."""
        m = self.model
        hw = frame.image.shape[:2]
        boxes = answer.boxes if answer.boxes is not None else np.zeros((0, 6), np.float32)
        rows = to_frame(boxes, geometry(hw, m.input_hw, m.resize, m.crop_from), hw)
        self.last_boxes = rows
        fz = self.frame_zones(hw)
        in_zone: dict[str, dict[str, int]] = {z.name: {} for z in fz.zones} if fz else {}
        objects = []
        counts: dict[str, int] = {}
        for x1, y1, x2, y2, score, cls in rows.tolist():
            label = m.label(int(cls))
            counts[label] = counts.get(label, 0) + 1
            o: dict[str, Any] = {
                "label": label,
                "score": round(score, 4),
                "box": [round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)],
                "area": round((x2 - x1) * (y2 - y1)),
            }
            if fz is not None:
                o["zones"] = zones_at(fz, ((x1 + x2) / 2, y2))
                for zone in o["zones"]:
                    in_zone[zone][label] = in_zone[zone].get(label, 0) + 1
            objects.append(o)
        record["objects"] = objects
        record["counts"] = counts
        if fz is not None:
            record["zones"] = {zone: {"counts": c} for zone, c in in_zone.items()}
        for label, n in counts.items():
            self.totals[label] = self.totals.get(label, 0.0) + n
            self.most_regions[label] = max(n, self.most_regions.get(label, 0))

    def _objects(
        self, record: dict[str, Any], answer: Answer, where: MaskMap, fz: FrameZones | None
    ) -> None:
        """The frame's regions as ``objects`` (and ``counts`` per label)."""
        a = self.regions
        assert a is not None and answer.class_map is not None
        masks = (
            bit_masks(answer.bits, self.classes)
            if answer.bits is not None
            else class_masks(answer.class_map, self.classes)
        )
        found = find_regions(masks, where, min_area=a.min_area, measured=a.measure)
        self.last_regions = found
        fh, fw = where.frame_hw
        objects = []
        counts: dict[str, int] = {}
        for r in found:
            label = self.model.label(r.cls)
            counts[label] = counts.get(label, 0) + 1
            o: dict[str, Any] = {
                "label": label,
                "area": r.area,
                "area_fraction": round(r.area / (fh * fw), 6),
                "box": list(r.box),
                "centroid": list(r.centroid),
            }
            if fz is not None:
                o["zones"] = zones_at(fz, r.centroid)
            if r.length is not None and r.width is not None:
                o["length"], o["width"] = r.length, r.width
            if a.px_per_unit is not None:
                k = a.px_per_unit
                o["real"] = {"unit": a.unit, "area": round(r.area / k**2, 4)}
                if r.length is not None and r.width is not None:
                    o["real"] |= {"length": round(r.length / k, 3), "width": round(r.width / k, 3)}
            objects.append(o)
        record["objects"] = objects
        record["counts"] = counts
        for label, n in counts.items():
            self.most_regions[label] = max(n, self.most_regions.get(label, 0))

    def summary(self) -> dict[str, float]:
        """The run's totals: mean coverage per label (segment), frames per top label
        (classify), mean boxes per frame per label (detect)."""
        if self.model.task == "classify":
            return dict(self.totals)
        n = max(self.processed, 1)
        return {k: round(v / n, 6) for k, v in self.totals.items()}
