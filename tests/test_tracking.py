"""``worker.ops.tracking`` and ``worker.ops.lines`` on synthetic tracks whose truth is known
(crossings, occlusions, weak detections, sampled frames), and line crossings end to end on a
generated video of objects crossing a line both ways (``factory.make_moments_detector``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from factory import make_moments_detector
from worker.ops.lines import LineCounter
from worker.ops.tracking import Tracker, iou_matrix
from worker.testing import clean_env, decode, make_video, worker_cli

Array = np.ndarray[Any, Any]


def scene(
    frames: int, seed: int, *, objects: int = 6, hide: float = 0.1, weak: float = 0.1
) -> list[tuple[Array, list[int]]]:
    """Per frame: detections (x1, y1, x2, y2, score, class) and the true object of each.
    Objects of one class move at constant speeds and cross each other's paths; each
    detection is missing with probability ``hide`` (an occlusion), weak (score 0.2-0.45)
    with probability ``weak``, and jittered by a pixel."""
    rng = np.random.default_rng(seed)
    start = rng.uniform([50, 50], [550, 400], (objects, 2))
    speed = rng.uniform(-6, 6, (objects, 2))
    size = rng.uniform(30, 60, (objects, 2))
    # Two pairs head straight at each other and pass through each other (the hard case: for a
    # few frames each box overlaps both tracks) around frame 50.
    for a, b, y in ((0, 1, 150.0), (2, 3, 300.0)):
        start[a], speed[a] = (100.0, y), (4.0, rng.uniform(-0.5, 0.5))
        start[b], speed[b] = (500.0, y + rng.uniform(-10, 10)), (-4.0, rng.uniform(-0.5, 0.5))
        size[b] = size[a] * rng.uniform(0.9, 1.1, 2)
    out = []
    for f in range(frames):
        rows, truth = [], []
        for k in range(objects):
            if rng.random() < hide:
                continue
            cx, cy = start[k] + speed[k] * f + rng.normal(0, 1, 2)
            w, h = size[k]
            score = rng.uniform(0.2, 0.45) if rng.random() < weak else rng.uniform(0.6, 0.95)
            rows.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score, 0])
            truth.append(k)
        out.append((np.array(rows, np.float32).reshape(-1, 6), truth))
    return out


def id_switches(frames: list[tuple[Array, list[int]]], step: int = 1) -> tuple[int, int]:
    """(id switches, ids given): an object's id changing from one id to another, as MOT
    counts IDSW (a frame with no id is not a switch)."""
    tracker = Tracker()
    last: dict[int, int] = {}
    switches = 0
    for f in range(0, len(frames), step):
        rows, truth = frames[f]
        for obj, oid in zip(truth, tracker.update(rows, f / 25), strict=True):
            if oid == 0:
                continue
            if obj in last and last[obj] != oid:
                switches += 1
            last[obj] = oid
    return switches, tracker.next_id - 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_ids_survive_crossings_occlusions_and_weak_detections(seed: int) -> None:
    frames = scene(200, seed)
    switches, ids = id_switches(frames)
    print(f"seed {seed}: {switches} id switches, {ids} ids for 6 objects over 200 frames")
    assert switches <= 3 and ids <= 12


def test_ids_survive_every_third_frame() -> None:
    # --every 3 (or a camera dropping frames): three times the motion between two updates.
    switches, ids = id_switches(scene(300, 4), step=3)
    assert switches <= 3 and ids <= 12


def test_a_box_seen_once_is_not_yet_an_object() -> None:
    t = Tracker()
    box = np.array([[10, 10, 50, 50, 0.9, 0]], np.float32)
    assert t.update(box, 0.0) == [0]
    step = np.array([2, 0, 2, 0, 0, 0], np.float32)
    assert t.update(box + step, 0.04) == [1]
    assert t.update(np.zeros((0, 6), np.float32), 0.08) == []
    # Lost for less than keep_s (1 s): the same id when it is seen again.
    assert t.update(box + 4 * step, 0.5) == [1]
    # Lost for longer: a new object.
    t.update(np.zeros((0, 6), np.float32), 0.6)
    assert t.update(box, 2.0) == [0] and t.update(box, 2.04) == [2]


def test_boxes_of_another_class_never_take_an_id() -> None:
    t = Tracker()
    a = np.array([[10, 10, 50, 50, 0.9, 0]], np.float32)
    b = np.array([[10, 10, 50, 50, 0.9, 1]], np.float32)
    t.update(a, 0.0)
    assert t.update(a, 0.04) == [1]
    assert t.update(b, 0.08) == [0]  # the same place, another class: not object 1


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10], [5, 5, 15, 15]], float)
    b = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    assert iou_matrix(a, b) == pytest.approx(np.array([[1, 0], [25 / 175, 0]]))


def test_a_line_counts_each_way_and_not_beyond_its_ends() -> None:
    line = LineCounter("gate", (0, 100), (200, 100))  # left to right: "in" is downwards
    path = [(1, "car", (50, 80)), (2, "car", (150, 130)), (3, "car", (300, 80))]
    assert line.update(path) == []
    down = line.update([(1, "car", (52, 120)), (2, "car", (150, 90)), (3, "car", (300, 120))])
    assert [(c.id, c.direction) for c in down] == [(1, "in"), (2, "out")]  # 3: past the end
    assert line.update([(1, "car", (54, 100))]) == []  # on the line: not yet back
    back = line.update([(1, "car", (56, 90))])
    assert [(c.id, c.direction) for c in back] == [(1, "out")]
    assert line.counts == {"in": {"car": 1}, "out": {"car": 2}}
    assert line.update([(0, "car", (50, 80)), (0, "car", (50, 120))]) == []  # untracked


# ------------------------------------------------------------------------ through a whole run


def crossers(index: int, width: int, height: int) -> Array:
    """A red square going down and a blue one going up, both across the middle line (y 60):
    red's bottom is at 26 + 4f, blue's at 118 - 4f, never on the line itself."""
    img = np.zeros((height, width, 3), np.uint8)
    y = 4 * index
    img[y + 2 : y + 26, 20:44] = (0, 0, 255)
    img[94 - y : 118 - y, 110:134] = (255, 0, 0)
    return img


@pytest.mark.parametrize("every", [1, 3])
def test_line_crossings_equal_the_truth_both_ways(tmp_path: Path, every: int) -> None:
    make_moments_detector(tmp_path / "det.onnx", size=96)
    make_video(tmp_path / "cross.mp4", frames=25, width=160, height=120, image=crossers, crf=4)
    proc = worker_cli(
        tmp_path, "run", "--input", "cross.mp4", "--model", "det.onnx", "--output", "none",
        "--results", "r.jsonl", "--line", "middle=0,0.5 1,0.5", "--every", str(every),
        "--tracks", "tracks.txt", env=clean_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    # Red's bottom passes y = 60 going down: in; blue's going up: out.
    assert summary["objects"]["lines"] == {"middle": {"in": {"red": 1}, "out": {"blue": 1}}}
    assert summary["objects"]["tracks"] == 2
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    crossed = {
        c["label"]: (rec["frame"], c["direction"]) for rec in lines for c in rec["crossings"]
    }
    # The first processed frame with the anchor past the line.
    red_frame = next(f for f in range(0, 25, every) if 26 + 4 * f > 60)
    blue_frame = next(f for f in range(0, 25, every) if 118 - 4 * f < 60)
    assert crossed == {"red": (red_frame, "in"), "blue": (blue_frame, "out")}
    ids: dict[str, set[int]] = {}
    for rec in lines:
        for o in rec["objects"]:
            if o["id"] is not None:
                ids.setdefault(o["label"], set()).add(o["id"])
    assert sorted(ids.values(), key=min) == [{1}, {2}]  # one id each, the whole way
    # The tracks as MOT Challenge text: a line per tracked object per frame, frames from 1.
    mot = [line.split(",") for line in (tmp_path / "tracks.txt").read_text().splitlines()]
    with_ids = [(rec["frame"], o) for rec in lines for o in rec["objects"] if o["id"]]
    assert len(mot) == len(with_ids) and all(len(row) == 10 for row in mot)
    for row, (frame, o) in zip(mot, with_ids, strict=True):
        x1, y1, x2, y2 = o["box"]
        assert (int(row[0]), int(row[1])) == (frame + 1, o["id"])
        assert [float(v) for v in row[2:6]] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=0.01)
    assert summary["files"]["tracks"] == "tracks.txt"


def parcels(index: int, width: int, height: int) -> Array:
    """Two parcels on a textured belt: a red one going down across the middle, a blue one
    coming up (BGR); the README's picture."""
    tex = np.random.default_rng(3).integers(-14, 15, (height, width, 1))
    img = np.clip(np.full((height, width, 3), 110) + tex, 0, 255).astype(np.uint8)
    img[height * 5 // 6 :] = np.clip(np.array([70, 150, 80]) + tex[height * 5 // 6 :], 0, 255)
    s = width / 1280
    y = round((60 + 12 * index) * s)
    img[y : y + round(140 * s), round(240 * s) : round(420 * s)] = (40, 40, 220)
    y = round((600 - 10 * index) * s)
    img[y : y + round(120 * s), round(800 * s) : round(940 * s)] = (220, 60, 40)
    return img


def test_instance_masks_tracks_and_a_line_drawn_on_the_video(tmp_path: Path) -> None:
    # What the README shows (tests/screens/objects.jpg, written there with SCREENSHOTS_DIR set).
    make_moments_detector(tmp_path / "seg.onnx", size=160, instances=True)
    (tmp_path / "card.json").write_text('{"colors": [[235, 70, 70], [70, 130, 255]]}')
    make_video(tmp_path / "parcels.mp4", frames=40, width=1280, height=720, image=parcels)
    proc = worker_cli(
        tmp_path, "run", "--input", "parcels.mp4", "--model", "seg.onnx", "--card", "card.json",
        "--line", "belt=0.05,0.5 0.95,0.5", "--track", "--output", "out.mp4", "--results",
        "r.jsonl", env=clean_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    objects = json.loads(proc.stdout)["objects"]
    assert objects["lines"] == {"belt": {"in": {"red": 1}, "out": {"blue": 1}}}
    frame = decode(tmp_path / "out.mp4")[26][1]
    # The line (magenta) across the frame, the masks blended in the card's colours.
    assert frame[360, 600].tolist() == pytest.approx([255, 0, 255], abs=60)
    if os.environ.get("SCREENSHOTS_DIR"):
        small = cv2.resize(frame, (960, 540), interpolation=cv2.INTER_AREA)
        where = str(Path(os.environ["SCREENSHOTS_DIR"]) / "objects.jpg")
        cv2.imwrite(where, small, [cv2.IMWRITE_JPEG_QUALITY, 85])
