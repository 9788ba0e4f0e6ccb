"""``worker.ops.regions``: a semantic mask split into regions, measured on masks of known
shapes (numpy and OpenCV only)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from factory import make_bright_model
from worker.ops.postprocess import MaskMap
from worker.ops.regions import bit_masks, class_masks, find_regions, measure, thin
from worker.testing import clean_env, decode, make_video, worker_cli

Array = np.ndarray[Any, Any]


def same_size(h: int, w: int) -> MaskMap:
    return MaskMap(np.arange(h), np.arange(w), (h, w), (h, w))


def stretched(small_hw: tuple[int, int], frame_hw: tuple[int, int]) -> MaskMap:
    (sh, sw), (fh, fw) = small_hw, frame_hw
    return MaskMap(np.arange(fh) * sh // fh, np.arange(fw) * sw // fw, small_hw, frame_hw)


def test_each_class_splits_into_its_connected_regions() -> None:
    small = np.zeros((60, 80), np.uint8)
    small[5:15, 5:25] = 1  # 200 px
    small[30:50, 40:50] = 1  # 200 px, apart from the first
    small[52:54, 70:72] = 1  # a 4 px speck
    small[20:40, 60:75] = 2  # another class
    small[15:17, 25:27] = 1  # touches the first only at a corner: 8-connected, the same one
    found = find_regions(class_masks(small, [1, 2]), same_size(60, 80))
    assert [(r.cls, r.area) for r in found] == [(1, 204), (1, 200), (1, 4), (2, 300)]
    first = found[0]
    assert first.box == (5, 5, 27, 17)  # x1, y1, x2, y2: the right and bottom edges
    second = found[1]
    assert second.box == (40, 30, 50, 50) and second.centroid == (45.0, 40.0)
    big = find_regions(class_masks(small, [1]), same_size(60, 80), min_area=10)
    assert [r.area for r in big] == [204, 200]
    assert find_regions(class_masks(small, [3]), same_size(60, 80)) == []


def test_regions_are_measured_on_the_frame_the_mask_is_drawn_on() -> None:
    # A 32x24 mask stretched onto a 100x75 frame: each region's area, box and centroid are
    # those of its pixels on the drawn mask, counted here by drawing it.
    rng = np.random.default_rng(3)
    small = (rng.random((24, 32)) < 0.25).astype(np.uint8)
    where = stretched((24, 32), (75, 100))
    drawn = where.restore(small)
    found = find_regions(class_masks(small, [1]), where)
    n, _, stats, centroids = cv2.connectedComponentsWithStats(
        (drawn == 1).astype(np.uint8), connectivity=8
    )
    assert sum(r.area for r in found) == int((drawn == 1).sum())
    # Regions that touch only at a corner in the mask can touch along an edge on the frame:
    # compare the regions one to one where the counts agree.
    assert len(found) == n - 1
    want = sorted(
        (int(stats[k, 4]), (int(stats[k, 0]), int(stats[k, 1]),
         int(stats[k, 0] + stats[k, 2]), int(stats[k, 1] + stats[k, 3])),
         tuple(np.round(centroids[k] + 0.5, 2)))
        for k in range(1, n)
    )  # fmt: skip
    assert sorted((r.area, r.box, r.centroid) for r in found) == want


def test_a_region_the_frame_does_not_show_is_left_out() -> None:
    # A centre crop: the mask's first and last columns are not on the frame.
    small = np.zeros((10, 10), np.uint8)
    small[2:5, 0] = 1  # only in the cropped-away column
    small[6:9, 4:6] = 1
    cols = np.concatenate([np.full(3, -1), np.arange(1, 9), np.full(3, -1)])
    where = MaskMap(np.arange(10), cols, (10, 10), (10, 14))
    assert [r.area for r in find_regions(class_masks(small, [1]), where)] == [6]


@pytest.mark.parametrize(("length", "width"), [(200, 20), (200, 21), (120, 6), (300, 3)])
def test_a_bar_measures_its_length_and_width(length: int, width: int) -> None:
    img = np.zeros((width + 40, length + 40), bool)
    img[20 : 20 + width, 20 : 20 + length] = True
    got_length, got_width = measure(img)
    assert abs(got_width - width) <= 1.0, got_width
    assert abs(got_length - length) <= 2.0, got_length
    assert measure(img.T) == (got_length, got_width)  # upright the same


def _curve_length(points: Array) -> float:
    return float(np.sum(np.hypot(*np.diff(points, axis=0).T)))


def _points(shape: str) -> Array:
    if shape == "arc":
        t = np.linspace(0, math.pi, 2000)
        return np.stack([210 + 150 * np.cos(t), 250 - 150 * np.sin(t)], axis=1)
    if shape == "spiral":  # not among the shapes the turn constant was chosen on
        t = np.linspace(0, 3 * math.pi, 3000)
        return np.stack([210 + (40 + 15 * t) * np.cos(t), 210 + (40 + 15 * t) * np.sin(t)], 1)
    if shape == "wave":
        x = np.linspace(20, 400, 2000)
        return np.stack([x, 210 + 60 * np.sin((x - 20) / 40)], axis=1)
    ends = {
        "steep": [[60, 20], [300, 400]],
        "shallow": [[20, 100], [400, 200]],
        "at 20 degrees": [[20, 100], [400, 238]],
        "at 45 degrees": [[20, 20], [380, 380]],
    }
    return np.array(ends[shape], dtype=np.float64)


@pytest.mark.parametrize("thickness", [3, 7])
@pytest.mark.parametrize(
    "shape", ["arc", "spiral", "wave", "steep", "shallow", "at 20 degrees", "at 45 degrees"]
)
def test_a_drawn_curve_measures_its_length(shape: str, thickness: int) -> None:
    img = np.zeros((420, 420), np.uint8)
    points = _points(shape)
    cv2.polylines(img, [np.round(points).astype(np.int32)], False, 1, thickness)
    # OpenCV draws a line of thickness t about t + 2 pixels wide, with round caps: the true
    # length is the path's plus half that width at each end.
    drawn_width = thickness + 2
    truth = _curve_length(points) + drawn_width
    length, width = measure(img.astype(bool))
    assert length == pytest.approx(truth, rel=0.02), (length, truth)
    assert abs(width - drawn_width) <= 1.5  # (a diagonal stroke is a little narrower across)


def test_a_disk_measures_its_diameter_both_ways() -> None:
    img = np.zeros((200, 200), np.uint8)
    cv2.circle(img, (100, 100), 40, 1, -1)
    length, width = measure(img.astype(bool))
    assert length == pytest.approx(81, abs=1.5) and width == pytest.approx(81, abs=1.5)


def test_thinning_leaves_a_line_one_pixel_wide_in_the_middle() -> None:
    img = np.zeros((30, 60), bool)
    img[10:17, 5:55] = True
    skel = thin(img)
    rows = np.nonzero(skel[:, 20:40])[0]
    assert set(rows.tolist()) == {13}  # the middle row, one pixel wide


def test_measured_regions_carry_length_and_width() -> None:
    small = np.zeros((120, 200), np.uint8)
    small[57:64, 17:184] = 1  # a crack 167 px long, 7 px wide
    (crack,) = find_regions(class_masks(small, [1]), same_size(120, 200), measured=True)
    assert crack.width is not None and abs(crack.width - 7) <= 1
    assert crack.length is not None and abs(crack.length - 167) <= 2
    # At twice the mask's resolution on the frame, twice as long and wide.
    on_frame = stretched((120, 200), (240, 400))
    (big,) = find_regions(class_masks(small, [1]), on_frame, measured=True)
    assert big.length is not None and abs(big.length - 334) <= 2
    assert big.width is not None and abs(big.width - 14) <= 1


def test_multi_label_regions_overlap_as_their_classes_do() -> None:
    bits = np.zeros((40, 40), np.uint32)
    bits[5:25, 5:25] |= 1 << 1  # class 1
    bits[15:35, 15:35] |= 1 << 3  # class 3, overlapping it
    found = find_regions(bit_masks(bits, [1, 3]), same_size(40, 40))
    assert [(r.cls, r.area, r.box) for r in found] == [
        (1, 400, (5, 5, 25, 25)), (3, 400, (15, 15, 35, 35))]  # fmt: skip


# ----------------------------------------------------------------------- through a whole run

#: White parts on black, fixed (x1, y1, x2, y2) on a 128x96 frame: two squares, a bar (a
#: "crack" 80 px long, 4 px wide) and a speck that --min-area leaves out.
PARTS = {"square a": (8, 8, 28, 28), "square b": (96, 60, 120, 84), "bar": (30, 40, 110, 44),
         "speck": (60, 80, 62, 82)}  # fmt: skip


def _parts(index: int, width: int, height: int) -> Array:
    img = np.zeros((height, width, 3), np.uint8)
    for x1, y1, x2, y2 in PARTS.values():
        img[y1:y2, x1:x2] = 255
    return img


def test_a_run_with_regions_lists_each_part_with_its_size_and_draws_it(tmp_path: Path) -> None:
    make_bright_model(tmp_path / "bright.onnx")  # 64x64 input: the mask is half the frame's
    make_video(tmp_path / "parts.mp4", frames=3, width=128, height=96, image=_parts)
    proc = worker_cli(
        tmp_path, "run", "--input", "parts.mp4", "--model", "bright.onnx", "--regions",
        "--min-area", "20", "--measure", "--px-per-unit", "4", "--unit", "mm",
        "--output", "out.mp4", "--results", "r.jsonl", "--alpha", "0",
        "--zone", "left=0,0 0.4,0 0.4,1 0,1", "--no-zones", env=clean_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    summary = json.loads(proc.stdout)
    assert summary["objects"] == {"most_in_a_frame": {"bright": 3}}
    for record in lines:
        assert record["counts"] == {"bright": 3}
        objects = record["objects"]
        boxes = sorted(tuple(o["box"]) for o in objects)
        want = sorted(v for k, v in PARTS.items() if k != "speck")
        # The mask is at 64x48 stretched to 128x96: edges land on even pixels, one off at most
        # where H.264 blurs a white edge.
        assert all(np.abs(np.subtract(b, w)).max() <= 2 for b, w in zip(boxes, want, strict=True))
        # The zones holding each region's centroid: square a (left), square b and the bar not.
        assert sorted(o["zones"] for o in objects) == [[], [], ["left"]]
        bar = next(o for o in objects if o["box"][2] - o["box"][0] > 60)
        assert abs(bar["length"] - 80) <= 4 and abs(bar["width"] - 4) <= 2
        assert bar["real"]["unit"] == "mm" and abs(bar["real"]["length"] - 20) <= 1
        # The regions' areas add up to the class's coverage, less the speck left out.
        left_out = record["coverage"]["bright"] * 128 * 96 - sum(o["area"] for o in objects)
        assert 0 < left_out <= 8
    # Each region boxed in the output, in the class's colour, over the unchanged frame.
    (_, frame), *_ = decode(tmp_path / "out.mp4")
    x1, y1, x2, _ = PARTS["square b"]
    ring = frame[y1 - 6 : y1 - 1, x1:x2]  # its caption sits above the box
    assert ring.max() > 100
    assert frame[2:6, 60:70].max() < 40  # where nothing is, nothing drawn
