"""``worker.ops.detect`` against a plain reference of Ultralytics' documented post-processing
(``ultralytics.utils.ops.non_max_suppression`` and ``scale_boxes``), written here with loops:
the same boxes, the same count."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from worker.ops.detect import detections, nms, to_frame
from worker.ops.preprocess import geometry
from yolo_reference import reference

Array = np.ndarray[Any, Any]


def planted(form: str, classes: int, anchors: int, seed: int) -> Array:
    """A head's output with objects planted among low-score noise: clusters of overlapping
    boxes (what a real head gives around each object), some of two classes at one place."""
    rng = np.random.default_rng(seed)
    boxes = np.stack([rng.uniform(20, 620, anchors), rng.uniform(20, 620, anchors),
                      rng.uniform(8, 120, anchors), rng.uniform(8, 120, anchors)], 1)  # fmt: skip
    scores = rng.uniform(0, 0.2, (anchors, classes))
    for k in range(12):
        centre = rng.uniform(60, 580, 2)
        size = rng.uniform(20, 150, 2)
        c = int(rng.integers(classes))
        for j in range(k * 20, k * 20 + 15):  # a cluster around the object
            boxes[j] = [*centre + rng.normal(0, 4, 2), *size * rng.uniform(0.85, 1.15, 2)]
            scores[j, c] = rng.uniform(0.3, 0.95)
            if k % 4 == 0:  # another class at the same place: class-aware NMS keeps both
                scores[j, (c + 1) % classes] = rng.uniform(0.3, 0.9)
    if form == "v8":
        return np.concatenate([boxes, scores], axis=1).T.astype(np.float32)
    obj = rng.uniform(0.8, 1.0, (anchors, 1))
    return np.concatenate([boxes, obj, scores / obj], axis=1).astype(np.float32)


@pytest.mark.parametrize("form", ["v8", "v5"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boxes_equal_the_documented_post_processing(form: str, seed: int) -> None:
    out = planted(form, classes=5, anchors=2100, seed=seed)
    got = detections(out, form, conf=0.25, iou=0.5, max_det=300)  # type: ignore[arg-type]
    want = np.array(reference(out, form, 0.25, 0.5, 300), dtype=np.float32).reshape(-1, 6)
    assert len(got) == len(want) > 12  # every object, some with two classes
    assert np.abs(got - want).max() < 1e-3


def test_max_det_keeps_the_best() -> None:
    out = planted("v8", classes=3, anchors=2100, seed=4)
    all_of_them = detections(out, "v8", conf=0.25, iou=0.5)
    best = detections(out, "v8", conf=0.25, iou=0.5, max_det=5)
    assert np.array_equal(best, all_of_them[:5])
    assert detections(out, "v8", conf=0.99).shape == (0, 6)


def test_an_end_to_end_output_is_only_thresholded() -> None:
    rows = np.array([[10, 10, 50, 50, 0.9, 2], [12, 12, 52, 52, 0.8, 2], [0, 0, 5, 5, 0.1, 0]],
                    np.float32)  # fmt: skip
    got = detections(rows, "e2e", conf=0.25)
    assert got.tolist() == rows[:2].tolist()  # NMS was the model's: overlaps stay


def test_nms_drops_overlaps_above_the_threshold_only() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 0, 10, 5], [20, 20, 30, 30]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # [1] overlaps [0] by 9/11 = 0.82; [2] by 0.5 exactly: kept at iou 0.5 (not above).
    assert nms(boxes, scores, 0.5).tolist() == [0, 2, 3]
    assert nms(boxes, scores, 0.85).tolist() == [0, 1, 2, 3]


def test_boxes_come_back_through_the_letterbox() -> None:
    # A 1280x720 frame letterboxed into 640x640: scale 0.5, 140 px of padding above.
    g = geometry((720, 1280), (640, 640), "letterbox")
    rows = np.array([[100, 190, 300, 290, 0.9, 0], [600, 100, 660, 600, 0.8, 1]], np.float32)
    frame = to_frame(rows, g, (720, 1280))
    assert frame[0, :4].tolist() == [200, 100, 600, 300]
    assert frame[1, :4].tolist() == [1200, 0, 1280, 720]  # clipped to the frame
    assert frame[:, 4:].tolist() == rows[:, 4:].tolist()
