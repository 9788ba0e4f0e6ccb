"""Detections: a YOLO-style head's output turned into boxes, as Ultralytics documents it.

Three output forms, each one frame's output here (the batch axis taken off):

- ``v8`` ([4 + C, A], YOLOv8 and YOLO11): per anchor the box (cx, cy, w, h in input pixels)
  and C class scores, already sigmoid, no objectness;
- ``v5`` ([A, 5 + C], YOLOv5): the box, an objectness score, and C class scores, multiplied
  by the objectness;
- ``e2e`` ([K, 6], NMS inside the model: YOLOv10, ``nms=True`` exports): x1, y1, x2, y2,
  score, class.

``detections`` keeps each anchor's best class above ``conf``, then class-aware non-maximum
suppression at ``iou`` and the ``max_det`` best: rows (x1, y1, x2, y2, score, class) in input
pixels, best first. ``to_frame`` maps them onto the frame through the letterbox (or stretch)
the input was made with. Plain numpy.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from worker.ops.preprocess import Geometry

__all__ = ["Form", "detections", "nms", "to_frame"]

Array = np.ndarray[Any, Any]
Form = Literal["v8", "v5", "e2e"]

#: Ultralytics' class offset for class-aware NMS: boxes of different classes never overlap.
_MAX_WH = 7680.0


def _xyxy(cxcywh: Array) -> Array:
    cx, cy, w, h = cxcywh.T
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def nms(boxes: Array, scores: Array, iou: float) -> Array:
    """Indices of the boxes greedy non-maximum suppression keeps, best score first: a box
    goes if it overlaps a better kept one by more than ``iou`` (intersection over union)."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    area = np.maximum(0.0, x2 - x1) * np.maximum(0.0, y2 - y1)
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        union = area[i] + area[rest] - inter
        overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[overlap <= iou]
    return np.array(keep, dtype=np.int64)


def detections(
    out: Array, form: Form, *, conf: float = 0.25, iou: float = 0.7, max_det: int = 300
) -> Array:
    """(k, 6) float32 rows x1, y1, x2, y2, score, class in input pixels, best first."""
    out = np.asarray(out, dtype=np.float32)
    if form == "e2e":
        rows = out[out[:, 4] > conf]
        rows = rows[np.argsort(-rows[:, 4], kind="stable")][:max_det]
        return rows.astype(np.float32)
    if form == "v8":
        boxes, scores = out[:4].T, out[4:].T  # (A, 4), (A, C)
    else:
        boxes, scores = out[:, :4], out[:, 5:] * out[:, 4:5]
    cls = scores.argmax(axis=1)
    best = scores[np.arange(len(cls)), cls]
    on = best > conf
    if not on.any():
        return np.zeros((0, 6), np.float32)
    xyxy = _xyxy(boxes[on])
    best, cls = best[on], cls[on]
    keep = nms(xyxy + cls[:, None] * _MAX_WH, best, iou)[:max_det]
    return np.concatenate(
        [xyxy[keep], best[keep, None], cls[keep, None].astype(np.float32)], axis=1
    ).astype(np.float32)


def to_frame(rows: Array, g: Geometry, frame_hw: tuple[int, int]) -> Array:
    """Rows from ``detections`` with their boxes in frame pixels (``g``: frame -> input, as
    the input was made), clipped to the frame."""
    out = rows.copy()
    h, w = frame_hw
    out[:, [0, 2]] = np.clip((rows[:, [0, 2]] - g.tx) / g.sx, 0, w)
    out[:, [1, 3]] = np.clip((rows[:, [1, 3]] - g.ty) / g.sy, 0, h)
    return out
