"""Object models: the YOLO detectors the worker reads, and the forms it does not read yet,
told apart before they are misread.

Detectors (``detect_form``): a YOLOv8/11 head [N, 4 + C, A], a YOLOv5 head [N, A, 5 + C] (A
anchors, fixed by the input size), or an end-to-end output [N, K, 6] with NMS inside, which
only the model's own metadata (Ultralytics' ``task``) can tell from a [N, H, W] map.

Not yet (``object_form``): YOLO instance segmenters, pose and oriented-box models, and
detectors with ``boxes``/``labels``/``scores`` outputs. Read as a segmentation map, a
YOLOv8n-seg export's [1, 116, 8400] gave every frame the same coverage: such a model is
refused by name instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from worker.ops.detect import Form

__all__ = ["detect_form", "object_form", "yolo_anchors"]

Shape = tuple[int | None, ...]

#: Ultralytics tasks whose outputs the worker does not read yet.
_OBJECT_TASKS = {
    "pose": "an Ultralytics YOLO pose model",
    "obb": "an Ultralytics YOLO oriented-box detector",
}


def yolo_anchors(height: int, width: int) -> int:
    """Anchor points of a YOLOv8/11 head on an input of this size: one per cell of its
    stride-8, -16 and -32 grids (8400 at 640 x 640)."""
    return sum((height // s) * (width // s) for s in (8, 16, 32))


def object_form(
    metadata: Mapping[str, str], outputs: Sequence[tuple[str, Shape | None]]
) -> str | None:
    """What object model the worker cannot read yet this is ("a YOLO instance segmenter",
    ...), or None. ``outputs``: (name, shape) of each."""
    task = metadata.get("task", "")
    ultralytics = "ultralytics" in metadata.get("author", "").lower() or (
        "names" in metadata and "stride" in metadata
    )
    if ultralytics and task in _OBJECT_TASKS:
        return _OBJECT_TASKS[task]
    names = {name.lower() for name, _ in outputs}
    if "boxes" in names and names & {"scores", "labels"}:
        return "a detector with boxes, labels and scores outputs (NMS inside)"
    # An instance segmenter's head and prototypes are read (``detect_form``), as long as they
    # are the two outputs; with others beside them, which is which is a guess.
    shapes = [s for _, s in outputs if s is not None]
    protos = [s for s in shapes if _protos(s)]
    if protos and len(outputs) != 2:
        return "a YOLO instance segmenter with outputs besides its head and prototypes"
    return None


def _protos(shape: Sequence[int | None]) -> bool:
    return len(shape) == 4 and shape[1] == 32


def detect_form(
    shape: Sequence[int],
    input_hw: tuple[int, int],
    metadata: Mapping[str, str],
    second: Sequence[int] | None = None,
) -> Form | None:
    """Which detector head the output (its real shape, from a run) is, or None: v8 when the
    anchors are the input size's, v5 when they are three times as many, e2e for [N, K, 6]
    when the model says it detects; v8seg when a second output (``second``) holds 32 mask
    prototypes and the head has 32 coefficients besides its boxes and classes."""
    if len(shape) != 3:
        return None
    _, d1, d2 = shape
    anchors = yolo_anchors(*input_hw)
    if second is not None and _protos(second):
        return "v8seg" if d2 == anchors and d1 >= 4 + 1 + 32 else None
    if d2 == anchors and d1 >= 5:
        return "v8"
    if d1 == 3 * anchors and d2 >= 6:
        return "v5"
    if d2 == 6 and metadata.get("task") == "detect":
        return "e2e"
    return None
