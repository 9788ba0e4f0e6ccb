"""Model forms the worker does not read yet, told apart before they are misread.

The worker reads classifiers ([N, C]) and semantic segmenters (a map per class or a class map).
Object models (YOLO detectors and instance segmenters, end-to-end detectors with boxes,
labels and scores) have outputs of other meanings that a segmentation reading would turn into
confident nonsense: a YOLOv8n-seg export's [1, 116, 8400] read as a 116 x 8400 binary map
gives every frame the same coverage. ``object_form`` recognises them from what the file says
(Ultralytics' ``metadata_props``, output names) or from their shapes, so loading refuses them
by name instead of drawing a guess.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["object_form", "yolo_anchors"]

Shape = tuple[int | None, ...]

#: Ultralytics tasks whose outputs are objects, not a class map or class scores.
_OBJECT_TASKS = {
    "detect": "an Ultralytics YOLO detector",
    "segment": "an Ultralytics YOLO instance segmenter",
    "pose": "an Ultralytics YOLO pose model",
    "obb": "an Ultralytics YOLO oriented-box detector",
}


def yolo_anchors(height: int, width: int) -> int:
    """Anchor points of a YOLOv8/11 head on an input of this size: one per cell of its
    stride-8, -16 and -32 grids (8400 at 640 x 640)."""
    return sum((height // s) * (width // s) for s in (8, 16, 32))


def object_form(
    metadata: Mapping[str, str],
    outputs: Sequence[tuple[str, Shape | None]],
    input_hw: tuple[int | None, int | None],
) -> str | None:
    """What object model this is ("a YOLO (v8/11) detector", ...), or None if its outputs may
    be read as classification or segmentation. ``outputs``: (name, shape) of each."""
    task = metadata.get("task", "")
    ultralytics = "ultralytics" in metadata.get("author", "").lower() or (
        "names" in metadata and "stride" in metadata
    )
    if ultralytics and task in _OBJECT_TASKS:
        return _OBJECT_TASKS[task]
    names = {name.lower() for name, _ in outputs}
    if "boxes" in names and names & {"scores", "labels"}:
        return "a detector with boxes, labels and scores outputs (NMS inside)"
    shapes = [s for _, s in outputs if s is not None]
    heads = [s for s in shapes if len(s) == 3]
    if heads and any(len(s) == 4 and s[1] == 32 for s in shapes):
        return "a YOLO instance segmenter (mask coefficients and 32 prototypes)"
    h, w = input_hw
    if h is None or w is None:
        return None
    anchors = yolo_anchors(h, w)
    for _, d1, d2 in heads:
        if d2 == anchors and d1 is not None and d1 >= 5:
            return "a YOLO (v8/11) detector: [N, 4 + classes, anchors]"
        if d1 == 3 * anchors and d2 is not None and d2 >= 6:
            return "a YOLO (v5) detector: [N, anchors, 5 + classes]"
    return None
