"""YOLO detectors end to end: graphs built with ``onnx.helper`` that really detect (red and
blue squares, ``factory.make_yolo_detector``), run by ``worker run`` on real video with no
card, their boxes held to a plain reference of Ultralytics' documented pre- and
post-processing (``yolo_reference``) run on the same decoded frames with ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from factory import make_model, make_moments_detector, make_yolo_detector
from readers import rle_decode
from worker.description import Speed
from worker.models import load_model
from worker.stages.infer import Inferencer
from worker.testing import clean_env, decode, make_video, one_error, worker_cli
from yolo_reference import letterbox, reference, reference_masks, scale_boxes

Array = np.ndarray[Any, Any]

CONF = 0.25


def squares(index: int, width: int, height: int) -> Array:
    """A red square moving right across a blue one that stays put (BGR)."""
    img = np.zeros((height, width, 3), np.uint8)
    img[20:50, 100:140] = (255, 0, 0)  # blue
    x = 10 + 6 * index
    img[40:80, x : x + 40] = (0, 0, 255)  # red
    return img


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else float(a[:4] == b[:4])


def run(tmp: Path, model: str, *args: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    proc = worker_cli(
        tmp, "run", "--input", "squares.mp4", "--model", model, "--output", "out.mp4",
        "--results", "r.jsonl", *args, env=clean_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in (tmp / "r.jsonl").read_text().splitlines()]
    return json.loads(proc.stdout), lines


@pytest.mark.parametrize(
    ("form", "metadata"), [("v8", True), ("v5", False)], ids=["v8 with metadata", "v5 bare"]
)
def test_a_detector_s_boxes_equal_the_documented_post_processing(
    tmp_path: Path, form: str, metadata: bool
) -> None:
    path = make_yolo_detector(tmp_path / "det.onnx", form=form, metadata=metadata)  # type: ignore[arg-type]
    make_video(tmp_path / "squares.mp4", frames=12, width=160, height=120, image=squares, crf=4)
    summary, lines = run(tmp_path, "det.onnx")
    # NMS runs in the fused graph, the reference on the host: the same boxes.
    assert summary["task"] == "detect" and summary["pipeline"]["fused"] is True
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels = ["red", "blue"] if metadata else ["class_0", "class_1"]
    compared = 0
    for (_, frame), record in zip(decode(tmp_path / "squares.mp4"), lines, strict=True):
        image, r, pad = letterbox(frame, 64)
        x = image[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255  # RGB, 0..1
        (out,) = session.run(None, {"images": x})
        want = scale_boxes(reference(out[0], form, CONF, 0.7, 300), r, pad, frame.shape[:2])
        got = [[*o["box"], o["score"], float(labels.index(o["label"]))] for o in record["objects"]]
        # Each box of one is a box of the other, within a pixel; a box only one of them has
        # is one whose score sits on the threshold (bilinear resizes differ by a grey level).
        for a, b in ((got, want), (want, got)):
            for box in a:
                match = [o for o in b if o[5] == box[5] and _iou(o, box) > 0.9]
                if match:
                    assert np.abs(np.subtract(match[0][:4], box[:4])).max() <= 1.0
                    compared += 1
                else:
                    assert abs(box[4] - CONF) < 0.05, (box, b)
        assert record["counts"] == {
            label: sum(o["label"] == label for o in record["objects"]) for label in labels
        } | {k: v for k, v in record["counts"].items() if v}
    assert compared > 12 * 2 * 2  # boxes on every frame, both squares


def test_counts_per_zone_and_watch_rules_on_counts(tmp_path: Path) -> None:
    make_yolo_detector(tmp_path / "det.onnx")
    make_video(tmp_path / "squares.mp4", frames=20, width=160, height=120, image=squares, crf=4)
    summary, lines = run(
        tmp_path, "det.onnx", "--zone", "right=0.5,0 1,0 1,1 0.5,1",
        "--watch", "right:red>0@1 end=0.1s", "--events", "ev.jsonl",
    )  # fmt: skip
    # The red square enters the right half (by its boxes' bottom centres) about halfway.
    inside = [rec["zones"]["right"]["counts"].get("red", 0) for rec in lines]
    assert inside[0] == 0 and inside[-1] > 0
    assert all(rec["zones"]["right"]["counts"].get("blue") for rec in lines)
    for rec in lines:
        for o in rec["objects"]:
            bottom_centre_x = (o["box"][0] + o["box"][2]) / 2
            assert ("right" in o["zones"]) == (bottom_centre_x >= 80)
    events = [json.loads(x) for x in (tmp_path / "ev.jsonl").read_text().splitlines()]
    start = next(e for e in events if e["type"] == "watch" and e["event"] == "start")
    first = next(rec for rec in lines if rec["zones"]["right"]["counts"].get("red"))
    assert (start["zone"], start["label"], start["start"]) == ("right", "red", first["time"])
    assert summary["objects"]["most_in_a_frame"]["blue"] >= 2


def test_a_detector_exported_with_dynamic_size_runs_at_its_stated_size(tmp_path: Path) -> None:
    # Before: refused for lack of an input size, which its own metadata (imgsz) states.
    make_yolo_detector(tmp_path / "det.onnx", dynamic=True)
    make_video(tmp_path / "squares.mp4", frames=3, width=160, height=120, image=squares)
    summary, lines = run(tmp_path, "det.onnx")
    assert summary["task"] == "detect" and lines[0]["counts"]["blue"] >= 2
    frame = decode(tmp_path / "out.mp4")[0][1]
    assert frame[18:20, 100:140].max() > 100  # the boxes are drawn (above the blue square)


def test_what_a_detector_cannot_be_asked_is_one_line(tmp_path: Path) -> None:
    make_model(tmp_path / "seg.onnx", classes=3)
    make_yolo_detector(tmp_path / "det.onnx")
    make_video(tmp_path / "squares.mp4", frames=2, width=160, height=120, image=squares)
    base = ["run", "--input", "squares.mp4", "--output", "none", "--results", "-"]
    proc = worker_cli(tmp_path, *base, "--model", "seg.onnx", "--task", "detect", env=clean_env())
    one_error(proc, "'seg.onnx'", "not a detector head", "YOLOv8/11 [N, 4 + classes,")
    proc = worker_cli(tmp_path, *base, "--model", "det.onnx", "--masks", "rle", env=clean_env())
    one_error(proc, "--masks", "a detector")
    proc = worker_cli(tmp_path, *base, "--task", "detect", env=clean_env())
    one_error(proc, "--task detect", "no built-in detect model", "--model")


def test_an_instance_segmenter_s_masks_equal_the_documented_processing(tmp_path: Path) -> None:
    # A YOLOv8-seg graph (head [1, 38, A] and prototypes [1, 32, 24, 24]) with Ultralytics'
    # metadata, no card: boxes, instance masks (COCO RLE) and tracks.
    path = make_moments_detector(tmp_path / "seg.onnx", size=96, instances=True)
    make_video(tmp_path / "squares.mp4", frames=8, width=160, height=120, image=squares, crf=4)
    summary, lines = run(tmp_path, "seg.onnx", "--masks", "rle", "--track")
    assert summary["task"] == "detect" and summary["objects"]["tracks"] == 2
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for (_, frame), record in zip(decode(tmp_path / "squares.mp4"), lines, strict=True):
        image, r, pad = letterbox(frame, 96)
        x = image[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255
        head, protos = session.run(None, {"images": x})
        kept = reference(head[0][:6], "v8", CONF, 0.7, 300)
        coefs = np.stack([head[0][6:, int(row[5])] for row in kept])  # anchor c is class c
        want = reference_masks(kept, coefs, protos[0], 96, r, pad, frame.shape[:2])
        assert len(record["objects"]) == len(want) == 2
        for o in record["objects"]:
            got = rle_decode(o["mask"]).astype(bool)
            ref = want[["red", "blue"].index(o["label"])]
            iou = (got & ref).sum() / (got | ref).sum()
            # Ultralytics cuts the mask to the box at the prototypes' scale (whole prototype
            # pixels: here 6.7 frame pixels) and resizes a thresholded mask again; the worker
            # cuts at the box's frame pixels and samples the prototypes once per frame pixel.
            # The same masks but for a prototype pixel at some box edges.
            assert iou > 0.8, (o["label"], iou)
            assert o["area"] == int(got.sum())
            # The square itself, as drawn: the worker's mask is as close to it as the
            # reference's (40 x 40 red, 40 x 30 blue, where squares() put them).
            square = np.zeros_like(got)
            if o["label"] == "red":
                x = 10 + 6 * record["frame"]
                square[40:80, x : x + 40] = True
            else:
                square[20:50, 100:140] = True
            ours = (got & square).sum() / (got | square).sum()
            theirs = (ref & square).sum() / (ref | square).sum()
            assert ours >= theirs - 0.01 and ours > 0.9, (o["label"], ours, theirs)
    frame = decode(tmp_path / "out.mp4")[3][1]
    assert frame[60, 130].max() < 30  # outside the squares: no mask drawn


@pytest.mark.parametrize("form", ["v8", "v5", "v8seg"])
def test_nms_in_the_fused_graph_keeps_what_the_host_keeps(tmp_path: Path, form: str) -> None:
    # The fused graph runs NMS where the model runs (ONNX NonMaxSuppression): the same boxes,
    # scores and classes as the host's numpy NMS on the same frames, in the same order, and
    # only the kept boxes leave the device. Frames of a batch split right, empty ones too.
    path = tmp_path / "det.onnx"
    if form == "v8seg":
        make_moments_detector(path, size=96, instances=True)
    else:
        make_yolo_detector(path, size=96, form=form)  # type: ignore[arg-type]
    model = load_model(path, provider="cpu")
    frames = [squares(i, 160, 120) for i in (0, 4, 8)]
    frames.insert(1, np.zeros((120, 160, 3), np.uint8))  # nothing in it
    fused = Inferencer(model, speed=Speed(fuse=True), batch=3)
    plain = Inferencer(model, speed=Speed(fuse=False), batch=3)
    assert fused.fused is not None, fused.why_unfused
    got, want = fused(frames), plain(frames)  # a full batch of 3, then 1
    kept = 0
    for g, w in zip(got, want, strict=True):
        assert g.boxes is not None and w.boxes is not None
        assert g.boxes.shape == w.boxes.shape
        np.testing.assert_allclose(g.boxes, w.boxes, atol=1e-3)
        kept += len(g.boxes)
        if form == "v8seg":
            assert g.protos is not None and w.protos is not None
            np.testing.assert_allclose(g.protos, w.protos, atol=1e-5)
    assert len(got[1].boxes) == 0 and kept >= 6  # type: ignore[arg-type]
    out = fused.describe()["device_bytes_per_frame"]["out"]
    raw = plain.describe()["device_bytes_per_frame"]["out"]
    if form != "v8seg":  # (an instance segmenter's prototypes still cross whole)
        assert out * 10 < raw, (out, raw)
    assert fused.describe()["device_bytes_per_frame"]["in"] == 96 * 96 * 3  # uint8 frames
