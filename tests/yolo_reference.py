"""Ultralytics' documented pre- and post-processing, written plainly here as the reference the
worker's detections are held to: ``letterbox`` as ``ultralytics.data.augment.LetterBox`` makes
an input (scaled, centred, grey 114 borders, integer padding), ``reference`` as
``ultralytics.utils.ops.non_max_suppression`` reads a head (a loop per anchor and per kept
box), ``scale_boxes`` back to the frame."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

Array = np.ndarray[Any, Any]


def letterbox(image: Array, size: int) -> tuple[Array, float, tuple[int, int]]:
    """(the input image, its scale, (left, top) padding)."""
    h, w = image.shape[:2]
    r = min(size / h, size / w)
    new_w, new_h = round(w * r), round(h * r)
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    if (new_w, new_h) != (w, h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    out = cv2.copyMakeBorder(
        image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114)
    )
    return out, r, (left, top)


def scale_boxes(
    rows: list[list[float]], r: float, pad: tuple[int, int], hw: tuple[int, int]
) -> list[list[float]]:
    h, w = hw
    out = []
    for x1, y1, x2, y2, score, cls in rows:
        box = [(x1 - pad[0]) / r, (y1 - pad[1]) / r, (x2 - pad[0]) / r, (y2 - pad[1]) / r]
        box = [min(max(box[0], 0), w), min(max(box[1], 0), h), min(max(box[2], 0), w),
               min(max(box[3], 0), h)]  # fmt: skip
        out.append([*box, score, cls])
    return out


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def reference(out: Array, form: str, conf: float, iou: float, max_det: int) -> list[list[float]]:
    """Per anchor: its box and best class; keep those above conf; per class, the best box
    first, dropping any that overlaps a kept one of its class by more than iou."""
    candidates = []
    anchors = out.shape[1] if form == "v8" else out.shape[0]
    for a in range(anchors):
        if form == "v8":
            cx, cy, w, h = (float(v) for v in out[:4, a])
            scores = [float(s) for s in out[4:, a]]
        else:
            cx, cy, w, h, obj = (float(v) for v in out[a, :5])
            scores = [float(s) * obj for s in out[a, 5:]]
        c = max(range(len(scores)), key=lambda k: scores[k])
        if scores[c] > conf:
            box = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
            candidates.append([*box, scores[c], float(c)])
    candidates.sort(key=lambda r: -r[4])
    kept: list[list[float]] = []
    for r in candidates:
        if all(k[5] != r[5] or _iou(k, r) <= iou for k in kept):
            kept.append(r)
    return kept[:max_det]


def reference_masks(
    rows: list[list[float]],
    coefs: Array,
    protos: Array,
    size: int,
    r: float,
    pad: tuple[int, int],
    frame_hw: tuple[int, int],
) -> list[Array]:
    """Each instance's mask on the frame (bool, frame size), as ``process_mask`` and then
    ``scale_image`` make it: sigmoid(coefficients @ prototypes), zero outside the box at the
    prototypes' scale, bilinear up to the input size, above 0.5, the padding cut off, resized
    to the frame. ``rows``: boxes in input pixels (before ``scale_boxes``)."""
    nm, ph, pw = protos.shape
    fh, fw = frame_hw
    new_w, new_h = round(fw * r), round(fh * r)
    out = []
    for row, coef in zip(rows, coefs, strict=True):
        soft = 1 / (1 + np.exp(-(coef @ protos.reshape(nm, -1)))).reshape(ph, pw)
        x1, y1, x2, y2 = (v * pw / size for v in row[:4])
        cols, lines = np.arange(pw)[None, :], np.arange(ph)[:, None]
        soft = soft * ((cols >= x1) & (cols < x2) & (lines >= y1) & (lines < y2))
        up = cv2.resize(soft.astype(np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
        on = (up > 0.5).astype(np.float32)
        cut = on[pad[1] : pad[1] + new_h, pad[0] : pad[0] + new_w]
        out.append(cv2.resize(cut, (fw, fh), interpolation=cv2.INTER_LINEAR) > 0.5)
    return out
