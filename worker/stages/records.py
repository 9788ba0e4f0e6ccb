"""What is recorded of each answer: the frame's JSON record and the run's totals.

Separate from drawing (``painters``): a run that encodes no video draws only the frames
something asks to see, and records every one. Both map model-resolution masks onto frames
through the same ``MaskMaps``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from worker.description import Analytics, LineSpec
from worker.errors import InputError
from worker.models import Model
from worker.ops.detect import instance_masks, to_frame
from worker.ops.masks import rle
from worker.ops.postprocess import MaskMap
from worker.ops.preprocess import geometry
from worker.ops.zones import FrameZones, ZoneSet, zones_at
from worker.stages.analytics import follows_objects
from worker.stages.frames import Answer, Frame

if TYPE_CHECKING:
    from worker.ops.dwell import Dwell
    from worker.ops.lines import LineCounter
    from worker.ops.regions import Region
    from worker.ops.tracking import Tracker

# Regions, tracks, dwell and lines are imported where a run asks for them: together their
# modules are 4 ms of every start.

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
        lines: Sequence[LineSpec] = (),
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
        # detect: the newest frame's boxes in frame pixels, rows x1, y1, x2, y2, score, class,
        # and an instance segmenter's masks, each (box in whole pixels, bool mask in it)
        self.last_boxes: Array = np.zeros((0, 6), np.float32)
        self.last_masks: list[tuple[tuple[int, int, int, int], Array]] = []
        self.masks_rle = a is not None and a.masks == "rle"
        self.most_regions: dict[str, int] = {}  # per label, the most in one frame
        self.last_counts: dict[str, int] = {}  # per label, in the newest frame recorded
        self.last_ids: list[int] = []  # the newest frame's objects' track ids (0: none yet)
        # Tracks (``track``, or lines to count): ids for boxes and regions, frame to frame.
        tracked = a is not None and (follows_objects(a) or bool(lines))
        tracked = tracked and self.counts_objects
        self.tracker: Tracker | None = None
        self.anchor = a.anchor if a is not None else "bottom_center"
        # Seconds each tracked object has been in each zone (``dwell`` in its record).
        self.dwell: Dwell | None = None
        if tracked:
            from worker.ops.dwell import Dwell
            from worker.ops.tracking import Tracker

            self.tracker = Tracker()
            self.dwell = Dwell() if self.zones is not None else None
        self.line_specs = list(lines) if tracked else []
        self.lines: list[LineCounter] = []
        self._lines_hw: tuple[int, int] | None = None

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
            self._objects(record, frame, answer, where, fz)
        return record

    def _detections(self, record: dict[str, Any], frame: Frame, answer: Answer) -> None:
        """A detector's boxes as ``objects`` (label, score, box in frame pixels, and the zones
        holding its anchor, the box's bottom centre, as supervision's PolygonZone counts);
        ``counts`` per label, and per zone."""
        m = self.model
        hw = frame.image.shape[:2]
        boxes = answer.boxes if answer.boxes is not None else np.zeros((0, 6), np.float32)
        g = geometry(hw, m.input_hw, m.resize, m.crop_from)
        rows = to_frame(boxes, g, hw)
        self.last_boxes = rows
        masks = []
        if answer.protos is not None:
            masks = instance_masks(boxes, answer.protos, m.input_hw, g, rows, hw)
        self.last_masks = masks
        fz = self.frame_zones(hw)
        if fz is not None:
            from worker.ops.dwell import anchor_of
        in_zone: dict[str, dict[str, int]] = {z.name: {} for z in fz.zones} if fz else {}
        objects = []
        counts: dict[str, int] = {}
        ids = self._track(record, rows, frame, hw)
        for k, (x1, y1, x2, y2, score, cls) in enumerate(rows.tolist()):
            label = m.label(int(cls))
            counts[label] = counts.get(label, 0) + 1
            o: dict[str, Any] = {
                "label": label,
                "score": round(score, 4),
                "box": [round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)],
                "area": round((x2 - x1) * (y2 - y1)),
            }
            if ids is not None:
                o["id"] = ids[k] or None
            if masks:
                (mx1, my1, mx2, my2), inside = masks[k]
                o["area"] = int(inside.sum())  # the instance's own pixels, not its box's
                if self.masks_rle:
                    full = np.zeros(hw, bool)
                    full[my1:my2, mx1:mx2] = inside
                    o["mask"] = rle(full)
            if fz is not None:
                o["zones"] = zones_at(fz, anchor_of((x1, y1, x2, y2), self.anchor))
                for zone in o["zones"]:
                    in_zone[zone][label] = in_zone[zone].get(label, 0) + 1
            objects.append(o)
        self._dwell(objects, frame.time)
        record["objects"] = objects
        record["counts"] = self.last_counts = counts
        if fz is not None:
            record["zones"] = {zone: {"counts": c} for zone, c in in_zone.items()}
        for label, n in counts.items():
            self.totals[label] = self.totals.get(label, 0.0) + n
            self.most_regions[label] = max(n, self.most_regions.get(label, 0))

    def _track(
        self, record: dict[str, Any], rows: Array, frame: Frame, hw: tuple[int, int]
    ) -> list[int] | None:
        """Track ids of ``rows`` (boxes in frame pixels, score, class), and the line
        crossings they made (``crossings`` this frame, ``lines``: the totals so far)."""
        if self.tracker is None:
            return None
        ids = self.last_ids = self.tracker.update(rows, frame.time)
        if self.line_specs:
            from worker.ops.dwell import anchor_of

            if self._lines_hw != hw:  # the lines in this frame size's pixels
                self._lines_hw = hw
                self.lines = [_counter(spec, hw) for spec in self.line_specs]
            anchors = [
                (i, self.model.label(int(r[5])), anchor_of(r, self.anchor))
                for i, r in zip(ids, rows.tolist(), strict=True)
            ]
            live = {t.id for t in self.tracker.tracks if t.id}
            crossed = []
            for counter in self.lines:
                crossed += counter.update(anchors)
                counter.forget(live)
            record["crossings"] = [
                {"line": c.line, "id": c.id, "label": c.label, "direction": c.direction}
                for c in crossed
            ]
            record["lines"] = {c.name: _copy(c.counts) for c in self.lines}
        return ids

    def _dwell(self, objects: list[dict[str, Any]], t: float) -> None:
        """Each tracked object's seconds in each zone it is in (``dwell``)."""
        if self.dwell is None or self.tracker is None:
            return
        from worker.ops.dwell import seen_in

        self.dwell.update(seen_in(objects), t, [tr.id for tr in self.tracker.tracks if tr.id])
        for o in objects:
            if o.get("id"):
                o["dwell"] = self.dwell.of(o["id"])

    def line_totals(self) -> dict[str, Any]:
        """Crossings per line so far: {line: {"in": {label: n}, "out": {...}}}."""
        return {c.name: _copy(c.counts) for c in self.lines}

    def _objects(
        self,
        record: dict[str, Any],
        frame: Frame,
        answer: Answer,
        where: MaskMap,
        fz: FrameZones | None,
    ) -> None:
        """The frame's regions as ``objects`` (and ``counts`` per label)."""
        from worker.ops.regions import bit_masks, class_masks, find_regions

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
        rows = np.array([[*r.box, 1.0, r.cls] for r in found], np.float32).reshape(-1, 6)
        ids = self._track(record, rows, frame, (fh, fw))
        for k, r in enumerate(found):
            label = self.model.label(r.cls)
            counts[label] = counts.get(label, 0) + 1
            o: dict[str, Any] = {
                "label": label,
                "area": r.area,
                "area_fraction": round(r.area / (fh * fw), 6),
                "box": list(r.box),
                "centroid": list(r.centroid),
            }
            if ids is not None:
                o["id"] = ids[k] or None
            if fz is not None:
                o["zones"] = zones_at(fz, r.centroid)  # a region's own middle, not its box's
            if r.length is not None and r.width is not None:
                o["length"], o["width"] = r.length, r.width
            if a.px_per_unit is not None:
                ppu = a.px_per_unit
                o["real"] = {"unit": a.unit, "area": round(r.area / ppu**2, 4)}
                if r.length is not None and r.width is not None:
                    o["real"] |= {
                        "length": round(r.length / ppu, 3),
                        "width": round(r.width / ppu, 3),
                    }
            objects.append(o)
        self._dwell(objects, frame.time)
        record["objects"] = objects
        record["counts"] = self.last_counts = counts
        for label, n in counts.items():
            self.most_regions[label] = max(n, self.most_regions.get(label, 0))

    def summary(self) -> dict[str, float]:
        """The run's totals: mean coverage per label (segment), frames per top label
        (classify), mean boxes per frame per label (detect)."""
        if self.model.task == "classify":
            return dict(self.totals)
        n = max(self.processed, 1)
        return {k: round(v / n, 6) for k, v in self.totals.items()}


def _counter(spec: LineSpec, frame_hw: tuple[int, int]) -> LineCounter:
    from worker.ops.lines import LineCounter

    (x1, y1), (x2, y2) = spec.points
    sx, sy = (frame_hw[1], frame_hw[0]) if spec.units == "fraction" else (1, 1)
    return LineCounter(spec.name, (x1 * sx, y1 * sy), (x2 * sx, y2 * sy))


def _copy(counts: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {way: dict(by_label) for way, by_label in counts.items()}
