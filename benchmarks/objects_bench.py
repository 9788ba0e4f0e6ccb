"""Objects: a YOLO-form detector on textured 720p video, the worker beside the loop a tutorial
writes for it, and what post-processing and regions cost per frame.

    python benchmarks/objects_bench.py [--seconds 6] [--rounds 2] [--model yolo.onnx] [--json]

The model: ``--model`` (an Ultralytics export of your own: ``yolov8n.onnx``), else a graph
built here with ``onnx.helper`` of a YOLOv8n head's shapes at 640x640 ([1, 84, 8400]) and a
comparable cost (strided 3x3 convolutions down to the stride-8/16/32 grids; random weights),
whose class 0 fires where the picture is red (the clip's walkers): a few hundred candidate
anchors per frame pass 0.25 around each walker, as a trained head's do, so NMS has work.
The video: the walkers clip (textured pavement, moving figures, sensor noise), 1280x720,
H.264 (``worker.testing.walkers``).

Printed, each a median over ``--rounds`` alternating fresh processes:

- fps of the tutorial loop (cv2.VideoCapture -> letterbox -> float RGB -> onnxruntime with its
  defaults -> numpy post-processing (transpose, threshold, cv2.dnn.NMSBoxes per class) -> cv2
  rectangles and text -> cv2.VideoWriter mp4v) and of ``worker run`` (the same model, H.264
  out, results JSON), and their ratio; ``worker run`` again with ``fuse = false`` (the model
  alone in ONNX Runtime, NMS and pre-processing in numpy on the host);
- the worker's post-processing alone, ms per frame (``worker.ops.detect.detections`` on the
  model's real outputs), and with tracking;
- regions on a 720p frame's mask: components, and components with measurements;
- NMS both ways on the same outputs: the host's NMS (numpy, ``fuse = false``) beside ONNX
  Runtime's ``NonMaxSuppression`` in a graph (the steps the fused graph runs: per-anchor best
  class, Ultralytics' class offset, ``center_point_box``), ms per frame and whether they keep
  the same boxes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from bench_support import run_child, run_worker
from child_support import print_peak_rss
from onnx import TensorProto, helper, numpy_helper
from tutorial import tutorial_loop

from worker.ops.detect import detections
from worker.ops.postprocess import MaskMap
from worker.ops.regions import class_masks, find_regions
from worker.ops.tracking import Tracker
from worker.testing import make_video, walkers

Array = np.ndarray[Any, Any]
SIZE = 640
CLASSES = 80


def build_detector(path: Path, seed: int = 0) -> float:
    """A YOLOv8n-shaped head at 640 on a stack of strided convolutions; returns its GFLOPs a
    frame (the convolutions': 2.6)."""
    rng = np.random.default_rng(seed)
    inits, nodes = [], []
    flops = [0.0]
    sides = {"images": SIZE}

    def conv(name: str, src: str, cin: int, cout: int, k: int, stride: int) -> str:
        sides[name] = sides[src] // stride
        flops[0] += 2 * cout * cin * k * k * sides[name] ** 2
        w = rng.normal(0, (2 / (cin * k * k)) ** 0.5, (cout, cin, k, k)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"{name}_w"))
        inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), f"{name}_b"))
        nodes.append(helper.make_node(
            "Conv", [src, f"{name}_w", f"{name}_b"], [f"{name}_c"], kernel_shape=[k, k],
            strides=[stride, stride], pads=[k // 2] * 4,
        ))  # fmt: skip
        nodes.append(helper.make_node("Relu", [f"{name}_c"], [name]))
        return name

    x = conv("s2", "images", 3, 16, 3, 2)
    x = conv("s4", x, 16, 32, 3, 2)
    x = conv("s4b", x, 32, 32, 3, 1)
    p8 = conv("s8", x, 32, 64, 3, 2)
    p8 = conv("s8b", p8, 64, 64, 3, 1)
    p16 = conv("s16", p8, 64, 128, 3, 2)
    p16 = conv("s16b", p16, 128, 128, 3, 1)
    p32 = conv("s32", p16, 128, 256, 3, 2)
    heads = []
    for name, feat, cin in (("h8", p8, 64), ("h16", p16, 128), ("h32", p32, 256)):
        box = rng.normal(0, 0.01, (4, cin, 1, 1)).astype(np.float32)
        cls = rng.normal(0, 0.02, (CLASSES, cin, 1, 1)).astype(np.float32)
        stride = {"h8": 8, "h16": 16, "h32": 32}[name]
        n = SIZE // stride
        # Boxes: each cell's centre and a walker's size (plus a little from the features).
        ys, xs = np.mgrid[0:n, 0:n]
        centres = [(xs + 0.5) * stride, (ys + 0.5) * stride]
        sizes = [np.full_like(xs, 48), np.full_like(xs, 96)]  # a walker's size at 640
        base = np.stack([*centres, *sizes]).astype(np.float32)
        red = np.array([12.0, -6.0, -6.0], np.float32).reshape(1, 3, 1, 1)  # R - (G + B) / 2
        inits += [
            numpy_helper.from_array(box, f"{name}_bw"),
            numpy_helper.from_array(cls, f"{name}_cw"),
            numpy_helper.from_array(base.reshape(1, 4, n * n), f"{name}_base"),
            # Biases: class 0 left to the redness term, the others far below 0.25.
            numpy_helper.from_array(
                np.r_[np.float32(0.0), np.full(CLASSES - 1, -6.0, np.float32)], f"{name}_cb"
            ),
            numpy_helper.from_array(red, f"{name}_rw"),
            numpy_helper.from_array(np.array([-4.0], np.float32), f"{name}_rb"),
            numpy_helper.from_array(np.zeros((1, CLASSES - 1, n * n), np.float32), f"{name}_z"),
            numpy_helper.from_array(np.array([1, 1, n * n], np.int64), f"{name}_s1"),
            numpy_helper.from_array(np.array([1, 4, n * n], np.int64), f"{name}_s4"),
            numpy_helper.from_array(np.array([1, CLASSES, n * n], np.int64), f"{name}_sc"),
        ]
        nodes += [
            helper.make_node("Conv", [feat, f"{name}_bw"], [f"{name}_b4"], kernel_shape=[1, 1]),
            helper.make_node("Reshape", [f"{name}_b4", f"{name}_s4"], [f"{name}_b4f"]),
            helper.make_node("Add", [f"{name}_b4f", f"{name}_base"], [f"{name}_box"]),
            helper.make_node(
                "Conv", [feat, f"{name}_cw", f"{name}_cb"], [f"{name}_cl"], kernel_shape=[1, 1]
            ),
            helper.make_node("Reshape", [f"{name}_cl", f"{name}_sc"], [f"{name}_clf"]),
            # Class 0: how red each cell is on average.
            helper.make_node(
                "AveragePool",
                ["images"],
                [f"{name}_px"],
                kernel_shape=[stride, stride],
                strides=[stride, stride],
            ),
            helper.make_node(
                "Conv",
                [f"{name}_px", f"{name}_rw", f"{name}_rb"],
                [f"{name}_r"],
                kernel_shape=[1, 1],
            ),
            helper.make_node("Reshape", [f"{name}_r", f"{name}_s1"], [f"{name}_rf"]),
            helper.make_node("Concat", [f"{name}_rf", f"{name}_z"], [f"{name}_red"], axis=1),
            helper.make_node("Add", [f"{name}_clf", f"{name}_red"], [f"{name}_all"]),
            helper.make_node("Sigmoid", [f"{name}_all"], [f"{name}_p"]),
            helper.make_node("Concat", [f"{name}_box", f"{name}_p"], [f"{name}_out"], axis=1),
        ]
        heads.append(f"{name}_out")
        flops[0] += 2 * (4 + CLASSES) * cin * n * n
    nodes.append(helper.make_node("Concat", heads, ["output0"], axis=2))
    anchors = sum((SIZE // s) ** 2 for s in (8, 16, 32))
    graph = helper.make_graph(
        nodes, "yolo-shaped",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + CLASSES, anchors])],
        initializer=inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    names = "{" + ", ".join(f"{i}: 'class{i}'" for i in range(CLASSES)) + "}"
    for k, v in {"author": "Ultralytics", "task": "detect", "stride": "32",
                 "imgsz": f"[{SIZE}, {SIZE}]", "names": names}.items():  # fmt: skip
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return flops[0] / 1e9


# ------------------------------------------------------------------------- the tutorial loop


def tutorial(model: Path, video: Path, out: Path) -> dict[str, Any]:
    """As a tutorial writes it: one thread, numpy post-processing, mp4v (``tutorial.py``'s
    detector loop)."""
    result = tutorial_loop("yolo8-det", model, video, out)
    fps = result["frames"] / result["loop_s"]
    return {"frames": result["frames"], "fps": round(fps, 2), "boxes": result["boxes"]}


# --------------------------------------------------------------------------- post-processing


def head_outputs(model: Path, video: Path, frames: int = 40) -> list[Array]:
    """The model's raw head output ([1, 4 + C, A]) on the clip's first ``frames`` frames."""
    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    cap = cv2.VideoCapture(str(video))
    outs = []
    for _ in range(frames):
        ok, frame = cap.read()
        if not ok:
            break
        img = cv2.resize(frame, (SIZE, SIZE))[:, :, ::-1]
        x = img.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
        outs.append(sess.run(None, {sess.get_inputs()[0].name: x})[0])
    return outs


def post_ms(outs: list[Array]) -> dict[str, float]:
    """ms per frame of the worker's host post-processing (and tracking) on real outputs."""
    t0 = time.perf_counter()
    rows = [detections(o[0], "v8") for o in outs]
    t1 = time.perf_counter()
    tracker = Tracker()
    for i, r in enumerate(rows):
        tracker.update(r, i / 25)
    t2 = time.perf_counter()
    n = max(1, len(outs))
    return {
        "nms_ms": round((t1 - t0) * 1000 / n, 2),
        "track_ms": round((t2 - t1) * 1000 / n, 2),
        "boxes_per_frame": round(sum(len(r) for r in rows) / n, 1),
    }


def nms_graph(path: Path, anchors: int, classes: int, conf: float = 0.25, iou: float = 0.7,
              max_det: int = 300) -> Path:  # fmt: skip
    """[1, 4 + C, A] head output -> [K, 6] rows (x1, y1, x2, y2, score, class), as
    ``detections(out, "v8")`` keeps them, with ONNX ``NonMaxSuppression``."""
    n = helper.make_node
    inits = [
        numpy_helper.from_array(np.array(v, np.int64), k)
        for k, v in {
            "b0": [0], "b4": [4], "c0": [4], "c1": [4 + classes], "ax1": [1], "ax2": [2],
            "col2": [2], "one": [1], "sel_len": [-1],
        }.items()
    ] + [
        numpy_helper.from_array(np.array(v, np.float32), k)
        for k, v in {"offset": 7680.0, "half": 0.5}.items()
    ] + [
        numpy_helper.from_array(np.array([max_det], np.int64), "max_det"),
        numpy_helper.from_array(np.array([iou], np.float32), "iou"),
        numpy_helper.from_array(np.array([conf], np.float32), "conf"),
    ]  # fmt: skip
    nodes = [
        n("Slice", ["out", "b0", "b4", "ax1"], ["cxcywh_t"]),  # [1, 4, A]
        n("Slice", ["out", "c0", "c1", "ax1"], ["cls"]),  # [1, C, A]
        n("ReduceMax", ["cls", "one"], ["best"], keepdims=1),  # [1, 1, A]
        n("ArgMax", ["cls"], ["which"], axis=1, keepdims=1),  # [1, 1, A] int64
        n("Cast", ["which"], ["which_f"], to=TensorProto.FLOAT),
        n("Mul", ["which_f", "offset"], ["shift"]),  # classes never overlap
        n("Transpose", ["cxcywh_t"], ["cxcywh"], perm=[0, 2, 1]),  # [1, A, 4]
        n("Transpose", ["shift"], ["shift_t"], perm=[0, 2, 1]),  # [1, A, 1]
        n("Slice", ["cxcywh", "b0", "col2", "ax2"], ["cxcy"]),
        n("Slice", ["cxcywh", "col2", "b4", "ax2"], ["wh"]),
        n("Add", ["cxcy", "shift_t"], ["cxcy_s"]),
        n("Concat", ["cxcy_s", "wh"], ["boxes_s"], axis=2),
        n(
            "NonMaxSuppression",
            ["boxes_s", "best", "max_det", "iou", "conf"],
            ["sel"],
            center_point_box=1,
        ),  # [K, 3]: batch, class, box
        n("Gather", ["sel", "col2"], ["idx2"], axis=1),  # [K, 1]
        n("Reshape", ["idx2", "sel_len"], ["idx"]),  # [K]
        n("Gather", ["cxcywh", "idx"], ["k_box"], axis=1),  # [1, K, 4]
        n("Transpose", ["best"], ["best_t"], perm=[0, 2, 1]),
        n("Gather", ["best_t", "idx"], ["k_score"], axis=1),  # [1, K, 1]
        n("Transpose", ["which_f"], ["which_t"], perm=[0, 2, 1]),
        n("Gather", ["which_t", "idx"], ["k_cls"], axis=1),
        n("Slice", ["k_box", "b0", "col2", "ax2"], ["k_cxcy"]),
        n("Slice", ["k_box", "col2", "b4", "ax2"], ["k_wh"]),
        n("Mul", ["k_wh", "half"], ["k_half"]),
        n("Sub", ["k_cxcy", "k_half"], ["k_xy1"]),
        n("Add", ["k_cxcy", "k_half"], ["k_xy2"]),
        n("Concat", ["k_xy1", "k_xy2", "k_score", "k_cls"], ["rows3"], axis=2),
        n("Squeeze", ["rows3", "b0"], ["rows"]),
    ]
    graph = helper.make_graph(
        nodes, "nms",
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4 + classes, anchors])],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["k", 6])],
        inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, path)
    return path


def nms_both_ways(outs: list[Array], tmp: Path) -> dict[str, Any]:
    """ms per frame of host NMS (numpy) and of ONNX Runtime's NonMaxSuppression in a graph,
    on the model's real outputs; and whether they keep the same boxes."""
    _, ch, anchors = outs[0].shape
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # as the model's own threads would be busy with the model
    g = ort.InferenceSession(
        str(nms_graph(tmp / "nms.onnx", anchors, ch - 4)), opts, providers=["CPUExecutionProvider"]
    )
    n = max(1, len(outs))
    t0 = time.perf_counter()
    host = [detections(o[0], "v8") for o in outs]
    t1 = time.perf_counter()
    graph = [g.run(None, {"out": o})[0] for o in outs]
    t2 = time.perf_counter()
    same = all(
        len(h) == len(f) and np.allclose(h, f[np.argsort(-f[:, 4], kind="stable")], atol=1e-3)
        for h, f in zip(host, graph, strict=True)
    )
    return {
        "host_ms": round((t1 - t0) * 1000 / n, 2),
        "graph_ms": round((t2 - t1) * 1000 / n, 2),
        "same_boxes": same,
        "boxes_per_frame": round(sum(len(h) for h in host) / n, 1),
    }


def regions_ms(rounds: int = 10) -> dict[str, float]:
    """ms for regions of a 720p frame's mask (a 320x180 mask of 20 cracks and blobs)."""
    rng = np.random.default_rng(1)
    small = np.zeros((180, 320), np.uint8)
    for _ in range(12):  # cracks: wandering lines
        pts = np.cumsum(rng.normal(0, 6, (30, 2)), 0) + rng.uniform([20, 20], [300, 160])
        cv2.polylines(small, [pts.astype(np.int32)], False, 1, 2)
    for _ in range(8):  # blobs
        cv2.circle(small, tuple(int(v) for v in rng.uniform([20, 20], [300, 160])), 8, 2, -1)
    where = MaskMap(
        np.arange(720) * 180 // 720, np.arange(1280) * 320 // 1280, (180, 320), (720, 1280)
    )
    out = {}
    for measured in (False, True):
        t0 = time.perf_counter()
        for _ in range(rounds):
            found = find_regions(class_masks(small, [1, 2]), where, measured=measured)
        out["measure_ms" if measured else "components_ms"] = round(
            (time.perf_counter() - t0) * 1000 / rounds, 2
        )
    out["regions"] = len(found)
    return out


# ------------------------------------------------------------------------------------ main


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--model", type=Path, help="an Ultralytics YOLOv8/11 detector export")
    p.add_argument("--json", action="store_true")
    p.add_argument("--tutorial-child", nargs=3, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.tutorial_child:
        result = tutorial(*(Path(v) for v in a.tutorial_child))
        print(json.dumps(result))
        print_peak_rss()
        return 0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = a.model.resolve() if a.model else tmp / "yolo.onnx"
        if not a.model:
            build_detector(model)
        frames = int(a.seconds * 25)
        video = make_video(tmp / "walkers.mp4", frames=frames, width=1280, height=720,
                           image=walkers(), crf=23)  # fmt: skip
        tut, wrk, host = [], [], []
        (tmp / "host.toml").write_text("fuse = false\n")
        for _ in range(a.rounds):
            t = run_child(
                [__file__, "--tutorial-child", str(model), str(video), str(tmp / "t.mp4")]
            )
            assert t.returncode == 0, t.stderr
            tut.append(json.loads(t.stdout)["fps"])
            w = run_worker([
                "run", "--input", str(video), "--model", str(model), "--output",
                str(tmp / "w.mp4"), "--results", str(tmp / "w.jsonl"), "--quiet",
            ])  # fmt: skip
            assert w.returncode == 0, w.stderr
            wrk.append(json.loads(w.stdout)["fps"])
            h = run_worker([
                "run", "--input", str(video), "--model", str(model), "--output",
                str(tmp / "h.mp4"), "--results", str(tmp / "h.jsonl"), "--quiet",
                "--pipeline", str(tmp / "host.toml"),
            ])  # fmt: skip
            assert h.returncode == 0, h.stderr
            host.append(json.loads(h.stdout)["fps"])
        outs = head_outputs(model, video)  # once, for both post-processing measurements
        result = {
            "model": str(a.model) if a.model else "YOLOv8n-shaped head at 640, built here",
            "video": f"walkers 1280x720, {frames} frames",
            "tutorial_fps": round(statistics.median(tut), 2),
            "worker_fps": round(statistics.median(wrk), 2),
            "ratio": round(statistics.median(wrk) / statistics.median(tut), 2),
            "worker_host_nms_fps": round(statistics.median(host), 2),
            "post": post_ms(outs),
            "regions_720p": regions_ms(),
            "nms_both_ways": nms_both_ways(outs, tmp),
        }
    if a.json:
        print(json.dumps(result))
    else:
        print(f"{result['model']} on {result['video']}, median of {a.rounds}")
        print(f"tutorial loop {result['tutorial_fps']} fps, worker {result['worker_fps']} fps: "
              f"x{result['ratio']}; worker with NMS on the host (fuse = false) "
              f"{result['worker_host_nms_fps']} fps")  # fmt: skip
        post = result["post"]
        print(f"worker post-processing: NMS {post['nms_ms']} ms/frame, tracking "
              f"{post['track_ms']} ms/frame ({post['boxes_per_frame']} boxes/frame)")  # fmt: skip
        reg = result["regions_720p"]
        print(f"regions on a 720p frame ({reg['regions']} regions): components "
              f"{reg['components_ms']} ms, with measurements {reg['measure_ms']} ms")  # fmt: skip
        both = result["nms_both_ways"]
        print(f"NMS both ways ({both['boxes_per_frame']} boxes/frame kept): host numpy "
              f"{both['host_ms']} ms/frame, ONNX NonMaxSuppression {both['graph_ms']} ms/frame; "
              f"same boxes: {both['same_boxes']}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
