"""Detections: a YOLO-style head's output turned into boxes, as Ultralytics documents it.

Three output forms, each one frame's output here (the batch axis taken off):

- ``v8`` ([4 + C, A], YOLOv8 and YOLO11): per anchor the box (cx, cy, w, h in input pixels)
  and C class scores, already sigmoid, no objectness;
- ``v5`` ([A, 5 + C], YOLOv5): the box, an objectness score, and C class scores, multiplied
  by the objectness;
- ``e2e`` ([K, 6], NMS inside the model: YOLOv10, ``nms=True`` exports): x1, y1, x2, y2,
  score, class;
- ``v8seg`` ([4 + C + 32, A] and prototypes [32, h, w], YOLOv8/11 instance segmenters): the
  v8 head and 32 mask coefficients per anchor; an instance's mask is the sigmoid of its
  coefficients times the prototypes (``instance_masks``).

``detections`` keeps each anchor's best class above ``conf``, then class-aware non-maximum
suppression at ``iou`` and the ``max_det`` best: rows (x1, y1, x2, y2, score, class) in input
pixels, best first. ``to_frame`` maps them onto the frame through the letterbox (or stretch)
the input was made with. Plain numpy.
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np

from worker.ops.preprocess import Geometry

__all__ = ["MASK_COEFFICIENTS", "Form", "detections", "instance_masks", "nms", "to_frame"]

Array = np.ndarray[Any, Any]
Form = Literal["v8", "v5", "e2e", "v8seg"]
#: Mask coefficients per anchor of a YOLO instance segmenter, and its prototypes.
MASK_COEFFICIENTS = 32

#: Ultralytics' class offset for class-aware NMS: boxes of different classes never overlap.
_MAX_WH = 7680.0


def _xyxy(cxcywh: Array) -> Array:
    cx, cy, w, h = cxcywh.T
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def nms(boxes: Array, scores: Array, iou: float, limit: int | None = None) -> Array:
    """Indices of the boxes greedy non-maximum suppression keeps, best score first: a box
    goes if it overlaps a better kept one by more than ``iou`` (intersection over union).
    ``limit``: stop once that many are kept (the rest would be cut anyway: a crowded frame
    of thousands of candidates costs ``limit`` passes, not thousands)."""
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    area = np.maximum(0.0, x2 - x1) * np.maximum(0.0, y2 - y1)
    keep: list[int] = []
    while order.size and (limit is None or len(keep) < limit):
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
    """(k, 6) float32 rows x1, y1, x2, y2, score, class in input pixels, best first; for
    ``v8seg`` (k, 6 + 32), each row followed by its mask coefficients."""
    out = np.asarray(out, dtype=np.float32)
    if form == "e2e":
        rows = out[out[:, 4] > conf]
        rows = rows[np.argsort(-rows[:, 4], kind="stable")][:max_det]
        return rows.astype(np.float32)
    coefs = None
    if form == "v8":
        boxes, scores = out[:4].T, out[4:].T  # (A, 4), (A, C)
    elif form == "v8seg":
        boxes, scores = out[:4].T, out[4:-MASK_COEFFICIENTS].T
        coefs = out[-MASK_COEFFICIENTS:].T
    else:
        boxes, scores = out[:, :4], out[:, 5:] * out[:, 4:5]
    cls = scores.argmax(axis=1)
    best = scores[np.arange(len(cls)), cls]
    on = best > conf
    width = 6 if coefs is None else 6 + MASK_COEFFICIENTS
    if not on.any():
        return np.zeros((0, width), np.float32)
    xyxy = _xyxy(boxes[on])
    best, cls = best[on], cls[on]
    keep = nms(xyxy + cls[:, None] * _MAX_WH, best, iou, limit=max_det)
    parts = [xyxy[keep], best[keep, None], cls[keep, None].astype(np.float32)]
    if coefs is not None:
        parts.append(coefs[on][keep])
    return np.concatenate(parts, axis=1).astype(np.float32)


def instance_masks(
    rows: Array,
    protos: Array,
    input_hw: tuple[int, int],
    g: Geometry,
    frame_boxes: Array,
    frame_hw: tuple[int, int],
) -> list[tuple[tuple[int, int, int, int], Array]]:
    """Each instance's mask on the frame, within its box: (x1, y1, x2, y2) in whole frame
    pixels (right and bottom edges), and a bool array of that box's size.

    ``rows``: from ``detections`` (v8seg), boxes in input pixels, coefficients after;
    ``protos``: (32, h, w); ``frame_boxes``: the same boxes on the frame (``to_frame``).
    As Ultralytics' ``process_mask``: sigmoid(coefficients @ prototypes), upsampled
    bilinearly, cut to the box, above 0.5; but only the prototypes under the box are
    multiplied, and only the box's frame pixels sampled (never a full-frame mask per
    instance).
    """
    nm, ph, pw = protos.shape
    ih, iw = input_hw
    fh, fw = frame_hw
    px, py = pw / iw, ph / ih  # prototype pixels per input pixel
    out = []
    for row, fbox in zip(rows, frame_boxes, strict=True):
        x1, y1 = int(np.floor(fbox[0])), int(np.floor(fbox[1]))
        x2, y2 = min(fw, int(np.ceil(fbox[2]))), min(fh, int(np.ceil(fbox[3])))
        if x2 <= x1 or y2 <= y1:
            out.append(((x1, y1, x1, y1), np.zeros((0, 0), bool)))
            continue
        # The prototype cells under the box (one more each side for the bilinear taps).
        bx1, by1, bx2, by2 = row[:4]
        c0 = max(0, int(np.floor(bx1 * px - 1)))
        c1 = min(pw, int(np.ceil(bx2 * px + 1)))
        r0 = max(0, int(np.floor(by1 * py - 1)))
        r1 = min(ph, int(np.ceil(by2 * py + 1)))
        coef = row[6 : 6 + nm]
        logit = np.tensordot(coef, protos[:, r0:r1, c0:c1], axes=1).astype(np.float32)
        soft = 1.0 / (1.0 + np.exp(-logit))
        # Frame pixel (x, y) of the box -> prototype (x', y') of the crop, at pixel centres.
        ax = g.sx * px
        ay = g.sy * py
        m = np.array([
            [ax, 0.0, ((x1 + 0.5) * g.sx + g.tx) * px - 0.5 - c0],
            [0.0, ay, ((y1 + 0.5) * g.sy + g.ty) * py - 0.5 - r0],
        ])  # fmt: skip
        sampled = cv2.warpAffine(
            soft, m, (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )  # fmt: skip
        inside = sampled > 0.5
        # Cut to the box itself (its edges fall within pixels of the whole-pixel box).
        xs = np.arange(x1, x2) + 0.5
        ys = np.arange(y1, y2) + 0.5
        inside &= ((xs >= fbox[0]) & (xs <= fbox[2]))[None, :]
        inside &= ((ys >= fbox[1]) & (ys <= fbox[3]))[:, None]
        out.append(((x1, y1, x2, y2), inside))
    return out


def to_frame(rows: Array, g: Geometry, frame_hw: tuple[int, int]) -> Array:
    """Rows from ``detections`` with their boxes in frame pixels (``g``: frame -> input, as
    the input was made), clipped to the frame."""
    out = rows[:, :6].copy()
    h, w = frame_hw
    out[:, [0, 2]] = np.clip((rows[:, [0, 2]] - g.tx) / g.sx, 0, w)
    out[:, [1, 3]] = np.clip((rows[:, [1, 3]] - g.ty) / g.sy, 0, h)
    return out
