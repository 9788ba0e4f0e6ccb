"""The loop a tutorial writes, for every output form of ``shapes.SHAPES``: the anchor every
speed figure is compared with, kept as tutorials write it (it is not to be made faster).

cv2.VideoCapture -> resize, RGB, float, normalise in numpy -> onnxruntime.InferenceSession
with its defaults -> the post-processing a tutorial writes for that output, at frame size
(softmax, float maps resized to the frame, argmax or thresholds, a palette, addWeighted; or
the top class written on the frame; for a YOLOv8-form detector, a letterbox in and
``cv2.dnn.NMSBoxes``, rectangles and labels out) -> cv2.VideoWriter('mp4v'); single-threaded.
Each step is timed per frame when asked (``stages``, and ``sub`` for the post-processing's
parts).

Run as a script it does one run in a fresh process and prints its result as JSON, with the
process's peak RSS on stderr (``child_support``)::

    python benchmarks/tutorial.py SHAPE MODEL VIDEO OUTPUT [MAX_FRAMES]
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
from child_support import Stages, print_peak_rss
from shapes import MEAN, SHAPES, STD

from worker.models import voc_palette

__all__ = ["draw_detections", "letterbox", "tutorial_loop"]

Array = np.ndarray[Any, Any]


def _postprocess(out: Array, form: str, frame: Array, palette: Array, sub: Stages) -> Array:
    """The tutorial's post-processing of one output, at frame size; the picture to write."""
    h, w = frame.shape[:2]
    t0 = time.perf_counter()
    if form == "softmax-scores":
        best = int(out.argmax())
        frame = frame.copy()
        cv2.putText(frame, f"class {best} {out[best]:.2f}", (20, 40),
                    cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)  # fmt: skip
        sub.add("label", time.perf_counter() - t0)
        return frame
    if form == "softmax-logits":
        e = np.exp(out - out.max(axis=0, keepdims=True))
        probs = e / e.sum(axis=0, keepdims=True)
        t1 = time.perf_counter()
        full = cv2.resize(probs.transpose(1, 2, 0), (w, h))  # (H, W, C) float32
        t2 = time.perf_counter()
        mask = full.argmax(axis=2)
        sub.add("softmax", t1 - t0)
        sub.add("resize probs", t2 - t1)
        sub.add("argmax", time.perf_counter() - t2)
    else:  # per-class sigmoid (or a probability map already): resize, threshold
        probs = 1 / (1 + np.exp(-out)) if form == "sigmoid-logits" else out
        mask = np.zeros((h, w), np.int64)
        for c in range(probs.shape[0]):
            up = cv2.resize(probs[c], (w, h))
            mask[up > (0.3 if form == "prob-map" else 0.5)] = c + 1
        sub.add("resize and threshold", time.perf_counter() - t0)
    t3 = time.perf_counter()
    colour = palette[mask]
    t4 = time.perf_counter()
    blended: Array = cv2.addWeighted(frame, 0.5, colour, 0.5, 0)
    sub.add("palette", t4 - t3)
    sub.add("addWeighted", time.perf_counter() - t4)
    return blended


def letterbox(frame: Array, size: int) -> tuple[Array, float, int, int]:
    """A YOLO tutorial's letterbox: the frame scaled into ``size`` x ``size``, grey borders;
    also the scale and the left and top offsets, to map boxes back."""
    h, w = frame.shape[:2]
    r = min(size / h, size / w)
    nw, nh = round(w * r), round(h * r)
    top, left = (size - nh) // 2, (size - nw) // 2
    img = cv2.resize(frame, (nw, nh))
    img = cv2.copyMakeBorder(img, top, size - nh - top, left, size - nw - left,
                             cv2.BORDER_CONSTANT, value=(114, 114, 114))  # fmt: skip
    return img, r, left, top


def draw_detections(pred: Array, frame: Array, r: float, left: int, top: int) -> int:
    """A YOLOv8 head's output [4 + classes, anchors] as a tutorial reads it (threshold 0.25,
    ``cv2.dnn.NMSBoxes`` per class at 0.7), boxes and labels drawn on ``frame``; returns how
    many."""
    pred = pred.T  # (A, 4 + C)
    scores = pred[:, 4:]
    cls = scores.argmax(1)
    conf = scores.max(1)
    keep = conf > 0.25
    b, c, s = pred[keep, :4], cls[keep], conf[keep]
    xywh = np.stack([(b[:, 0] - b[:, 2] / 2 - left) / r, (b[:, 1] - b[:, 3] / 2 - top) / r,
                     b[:, 2] / r, b[:, 3] / r], 1)  # fmt: skip
    drawn = 0
    for k in np.unique(c):
        idx = np.nonzero(c == k)[0]
        chosen = cv2.dnn.NMSBoxes(xywh[idx].tolist(), s[idx].tolist(), 0.25, 0.7)
        for j in np.array(chosen).reshape(-1):
            x0, y0, bw, bh = xywh[idx[j]].astype(int)
            cv2.rectangle(frame, (x0, y0), (x0 + bw, y0 + bh), (0, 255, 0), 2)
            cv2.putText(frame, f"{k} {s[idx[j]]:.2f}", (x0, y0 - 4),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 255, 0), 1)  # fmt: skip
            drawn += 1
    return drawn


def tutorial_loop(
    shape_name: str,
    model: Path,
    video: Path,
    output: Path,
    max_frames: int | None = None,
    stages: Stages | None = None,
    sub: Stages | None = None,
) -> dict[str, Any]:
    """One run: ``frames``, ``session_s`` (creating the session), ``loop_s`` (the loop,
    open to release) and, for a detector, ``boxes`` (drawn, all frames)."""
    shape = SHAPES[shape_name]
    stages, sub = stages or Stages(), sub or Stages()
    t0 = time.perf_counter()
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    session_s = time.perf_counter() - t0
    input_name = session.get_inputs()[0].name
    mean, std = np.array(MEAN, np.float32), np.array(STD, np.float32)
    palette = voc_palette(256)[:, ::-1].copy()  # BGR, for OpenCV
    start = time.perf_counter()
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise SystemExit(f"cv2.VideoCapture cannot open {video} (OpenCV built without FFmpeg?)")
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25
    writer = cv2.VideoWriter(str(output), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise SystemExit(f"cv2.VideoWriter cannot write 'mp4v' to {output}")
    mh, mw = shape["hw"]
    detector = shape["out"] == "yolo-v8"
    frames, boxes = 0, 0
    while max_frames is None or frames < max_frames:
        t_read = time.perf_counter()
        ok, frame = cap.read()
        if not ok:
            break
        t_pre = time.perf_counter()
        if detector:  # as Ultralytics' examples: letterbox, RGB, / 255, no mean or std
            img, r, left, top = letterbox(frame, mh)
            x = img[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        else:
            rgb = cv2.cvtColor(cv2.resize(frame, (mw, mh)), cv2.COLOR_BGR2RGB)
            x = (rgb.astype(np.float32) / 255.0 - mean) / std
            x = x[None] if shape["layout"] == "NHWC" else x.transpose(2, 0, 1)[None]
        t_inf = time.perf_counter()
        out = session.run(None, {input_name: x})[0][0]
        t_post = time.perf_counter()
        if detector:
            boxes += draw_detections(out, frame, r, left, top)
            picture = frame
        else:
            picture = _postprocess(out, shape["out"], frame, palette, sub)
        t_write = time.perf_counter()
        writer.write(picture)
        t_end = time.perf_counter()
        for name, a, b in (
            ("read", t_read, t_pre),
            ("preprocess", t_pre, t_inf),
            ("inference", t_inf, t_post),
            ("postprocess", t_post, t_write),
            ("write", t_write, t_end),
        ):
            stages.add(name, b - a)
        frames += 1
    writer.release()
    cap.release()
    result = {"frames": frames, "session_s": session_s, "loop_s": time.perf_counter() - start}
    return {**result, "boxes": boxes} if detector else result


if __name__ == "__main__":
    name, model_path, video_path, out_path, *rest = sys.argv[1:]
    result = tutorial_loop(
        name, Path(model_path), Path(video_path), Path(out_path), int(rest[0]) if rest else None
    )
    print(json.dumps(result))
    print_peak_rss()
