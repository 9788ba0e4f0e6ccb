"""Drawing answers onto frames as a list of painters, each painting one thing.

A painter (``paint(scene, frame, answer) -> scene``) paints one kind of thing: the mask, the
top labels, the zones; boxes and tracks will be painters too. ``Painters`` runs them in
order over a frame. Painters that make a new picture (``makes_new``: the mask blend, the label
box) read the frame and never write it; the others paint in place, so ``Painters`` hands them
a copy of the decoded frame when nothing has made one yet: the decoded frame itself is never
painted on (the same frame may be drawn again, with the next answer, when frames are skipped).

The maths is in ``worker.ops`` (blending, text, polygons), on plain numpy arrays; what is
recorded of an answer is ``records``' business, not the painters'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from worker.description import Analytics, Look
from worker.models import Model
from worker.ops.overlay import Blender, blend_mask, draw_boxes, draw_lines, draw_top
from worker.ops.postprocess import NO_CLASS
from worker.ops.zones import draw_zones
from worker.stages.frames import Answer, Frame
from worker.stages.records import MaskMaps, Recorder

__all__ = [
    "BoxPainter",
    "LabelPainter",
    "LinePainter",
    "MaskPainter",
    "Painter",
    "Painters",
    "RegionPainter",
    "ZonePainter",
    "painters_for",
]

Array = np.ndarray[Any, Any]


class Painter(Protocol):
    #: True: returns a new picture and leaves ``scene`` as it was; False: paints in place.
    makes_new: bool

    def paint(self, scene: Array, frame: Frame, answer: Answer) -> Array: ...


class MaskPainter:
    """A segmenter's mask, blended over the frame in the card's colours (the background and
    pixels the model did not see are left as they are)."""

    makes_new = True

    def __init__(self, model: Model, alpha: float, maps: MaskMaps) -> None:
        painted = np.zeros(256, dtype=bool)
        painted[: len(model.labels)] = True
        if model.background is not None:
            painted[model.background] = False
        painted[NO_CLASS] = False
        self.blend = Blender.build(model.colors, alpha, painted)
        self.maps = maps

    def paint(self, scene: Array, frame: Frame, answer: Answer) -> Array:
        if answer.class_map is None:
            return scene
        small = answer.class_map
        where = self.maps(scene.shape[:2], small.shape[:2])
        return self.blend.over(scene, small, where.restore)


class LabelPainter:
    """A classifier's top labels with their scores, in the top-left corner."""

    makes_new = True

    def __init__(self, model: Model) -> None:
        self.model = model

    def paint(self, scene: Array, frame: Frame, answer: Answer) -> Array:
        m = self.model
        return draw_top(scene, [f"{m.label(i)} {s:.2f}" for i, s in answer.top])


class BoxPainter:
    """A detector's boxes, each in its class's colour, captioned with label, track id (when
    tracked) and score; an instance segmenter's masks blended under them (``alpha``)."""

    makes_new = False

    def __init__(self, model: Model, recorder: Recorder, alpha: float = 0.5) -> None:
        self.model = model
        self.recorder = recorder
        self.alpha = alpha

    def paint(self, scene: Array, frame: Frame, answer: Answer) -> Array:
        # The boxes of the newest frame recorded: this one, or (a skipped frame) the last.
        rows = self.recorder.last_boxes.tolist()
        masks = self.recorder.last_masks
        if self.alpha > 0 and masks:
            for ((x1, y1, x2, y2), inside), row in zip(masks, rows, strict=True):
                if inside.size:
                    red, green, blue = self.model.color(int(row[5]))
                    blend_mask(scene[y1:y2, x1:x2], inside, (blue, green, red), self.alpha)
        boxes = []
        ids = self.recorder.last_ids if len(self.recorder.last_ids) == len(rows) else []
        for k, (x1, y1, x2, y2, score, cls) in enumerate(rows):
            red, green, blue = self.model.color(int(cls))
            tag = f" #{ids[k]}" if ids and ids[k] else ""
            caption = f"{self.model.label(int(cls))}{tag} {score:.2f}"
            box = (round(x1), round(y1), round(x2), round(y2))
            boxes.append((box, caption, (blue, green, red)))
        return draw_boxes(scene, boxes)


class LinePainter:
    """Counting lines (``--line``): each drawn with its name and its in/out totals so far."""

    makes_new = False

    def __init__(self, recorder: Recorder, line_width: int = 0) -> None:
        self.recorder = recorder
        self.line_width = line_width

    def paint(self, scene: Array, frame: Frame, answer: Answer) -> Array:
        lines = []
        for c in self.recorder.lines:
            ins, outs = sum(c.counts["in"].values()), sum(c.counts["out"].values())
            lines.append((c.a, c.b, f"{c.name} in {ins} out {outs}"))
        return draw_lines(scene, lines, line_width=self.line_width)


class RegionPainter:
    """Regions (``--regions``): a box around each, in its class's colour, captioned with its
    label and, measured, its length (in the real unit where one is given)."""

    makes_new = False

    def __init__(self, model: Model, recorder: Recorder, analytics: Analytics) -> None:
        self.model = model
        self.recorder = recorder
        self.analytics = analytics

    def _caption(self, label: str, length: float | None) -> str:
        a = self.analytics
        if length is None:
            return label
        if a.px_per_unit is not None:
            return f"{label} {length / a.px_per_unit:.1f} {a.unit}"
        return f"{label} {length:.0f} px"

    def paint(self, scene: Array, frame: Frame, answer: Answer) -> Array:
        # The regions of the newest frame recorded: this one, or (a skipped frame) the last.
        boxes = []
        for r in self.recorder.last_regions:
            red, green, blue = self.model.color(r.cls)
            caption = self._caption(self.model.label(r.cls), r.length)
            boxes.append((r.box, caption, (blue, green, red)))
        return draw_boxes(scene, boxes)


class ZonePainter:
    """Zone outlines and names; for a classifier, each zone's best label after its name."""

    makes_new = False

    def __init__(self, model: Model, recorder: Recorder, line_width: int = 0) -> None:
        self.model = model
        self.recorder = recorder
        self.line_width = line_width

    def paint(self, scene: Array, frame: Frame, answer: Answer) -> Array:
        fz = self.recorder.frame_zones(scene.shape[:2])
        if fz is None:
            return scene
        labels = None
        if self.model.task == "classify":
            labels = {}
            for name, a in (answer.zones or {}).items():
                if a.top:
                    i, score = a.top[0]
                    labels[name] = f"{self.model.label(i)} {score:.2f}"
        return draw_zones(scene, fz, labels=labels, line_width=self.line_width)


class Painters:
    """Painters run in order over a frame: ``draw(frame, answer)`` is the annotated picture."""

    def __init__(self, painters: Sequence[Painter]) -> None:
        self.painters = list(painters)

    def draw(self, frame: Frame, answer: Answer) -> Array:
        scene = frame.image
        for p in self.painters:
            if not p.makes_new and scene is frame.image:
                scene = scene.copy()  # never paint on the decoded frame itself
            scene = p.paint(scene, frame, answer)
        return scene


def painters_for(model: Model, look: Look, recorder: Recorder) -> Painters:
    """What a run draws: the mask, the boxes or the top labels, then the regions (if asked)
    and the zones (unless switched off)."""
    painters: list[Painter] = []
    if model.task == "segment":
        painters.append(MaskPainter(model, look.alpha, recorder.maps))
    elif model.task == "detect":
        painters.append(BoxPainter(model, recorder, look.alpha))
    else:
        painters.append(LabelPainter(model))
    if recorder.regions is not None:
        painters.append(RegionPainter(model, recorder, recorder.regions))
    if recorder.line_specs and look.draw_zones:
        painters.append(LinePainter(recorder, look.line_width))
    if recorder.zones is not None and look.draw_zones:
        painters.append(ZonePainter(model, recorder, look.line_width))
    return Painters(painters)
