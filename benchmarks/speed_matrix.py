"""The tutorial loop vs the worker vs the model alone, on four model shapes people ship.

    python benchmarks/speed_matrix.py [--seconds 6] [--rounds 2] [--json]

Shapes (``onnx.helper``, random weights from a fixed seed, ~1-3 GFLOPs a frame each):

- ``seg21``: 21-class softmax segmenter, NCHW 512x512, dynamic batch, logits at stride 4;
- ``multilabel3-b1``: 3-class multi-label sigmoid segmenter, fixed batch of 1, 512x512;
- ``map1-dyn``: one-channel probability map (sigmoid inside), dynamic height and width, run
  at 736x1280 (text and foreground detectors);
- ``nhwc-cls``: NHWC classifier, 224x224, softmax inside, 1000 classes.

Input: a textured, moving 1280x720 scene (walkers over noisy pavement, its bitrate printed).
Per shape, each in a fresh process and alternating ``--rounds`` times: the tutorial loop
(``cv2.VideoCapture`` -> numpy -> ``onnxruntime`` with its defaults -> the post-processing a
tutorial writes for that output, at frame size -> ``cv2.VideoWriter('mp4v')``) and ``worker
run`` (its defaults; H.264 out). Also each alone in this process: the model on ready-made
batches (the worker's session settings), decoding, and x264 encoding. Printed per shape: fps
of both (whole process) and their ratio, the worker's fps over the model alone, the worker's
CPU ms per frame split into model, decode, encode and the rest, the bound those costs imply on
this machine's cores (cores / (model + decode + encode + host) CPU s per frame, host: the
resize to the model input and the drawing no pipeline can skip) and the worker's share of
it, start-up to the first frame (``--max-frames 1``, whole process) and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

Array = Any
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# name -> (input hw, layout, batch, dynamic hw, output form, classes, card)
SHAPES: dict[str, dict[str, Any]] = {
    "seg21": {"hw": (512, 512), "layout": "NCHW", "batch": None, "dyn": False,
              "out": "softmax-logits", "classes": 21, "card": {}},
    "multilabel3-b1": {"hw": (512, 512), "layout": "NCHW", "batch": 1, "dyn": False,
                       "out": "sigmoid-logits", "classes": 3, "card": {"multi_label": True}},
    "map1-dyn": {"hw": (736, 1280), "layout": "NCHW", "batch": None, "dyn": True,
                 "out": "prob-map", "classes": 1,
                 "card": {"input_size": [736, 1280], "labels": ["text"], "multi_label": True,
                          "threshold": 0.3}},
    "nhwc-cls": {"hw": (224, 224), "layout": "NHWC", "batch": None, "dyn": False,
                 "out": "softmax-scores", "classes": 1000, "card": {}},
}  # fmt: skip


# ------------------------------------------------------------------------------ models


def build_model(shape: dict[str, Any], path: Path) -> float:
    """Writes the model (and its card beside it); returns its GFLOPs per frame."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(20261129)
    h, w = shape["hw"]
    n: int | str = shape["batch"] or "N"
    hd: int | str = "H" if shape["dyn"] else h
    wd: int | str = "W" if shape["dyn"] else w
    nodes, inits = [], []
    x = "image"
    if shape["layout"] == "NHWC":
        nodes.append(helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    cls = shape["classes"]
    # Stride-2 stem, stride-2 block, two stride-1 blocks: output stride 4.
    layers = [(3, 32, 3, 2), (32, 64, 3, 2), (64, 64, 3, 1), (64, 64, 3, 1)]
    flops, side_h, side_w = 0.0, h, w
    for i, (cin, cout, k, s) in enumerate(layers):
        side_h, side_w = (side_h + 2 - k) // s + 1, (side_w + 2 - k) // s + 1
        flops += 2 * cout * side_h * side_w * cin * k * k
        wt = rng.standard_normal((cout, cin, k, k)).astype(np.float32) * math.sqrt(
            2 / (cin * k * k)
        )
        inits += [numpy_helper.from_array(wt, f"w{i}"),
                  numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}")]  # fmt: skip
        nodes += [
            helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[k, k],
                             strides=[s, s], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        ]  # fmt: skip
        x = f"r{i}"
    form = shape["out"]
    if form == "softmax-scores":
        head = (rng.standard_normal((64, cls)) * 0.3).astype(np.float32)
        inits.append(numpy_helper.from_array(head, "head"))
        nodes += [
            helper.make_node("GlobalAveragePool", [x], ["gap"]),
            helper.make_node("Flatten", ["gap"], ["flat"]),
            helper.make_node("MatMul", ["flat", "head"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["out"], axis=1),
        ]
        out_shape: list[int | str] = [n, cls]
    else:
        hw_ = rng.standard_normal((cls, 64, 1, 1)).astype(np.float32) * 0.3
        inits += [numpy_helper.from_array(hw_, "hw"),
                  numpy_helper.from_array(np.zeros(cls, np.float32), "hb")]  # fmt: skip
        last = "out" if form != "prob-map" else "logits"
        nodes.append(helper.make_node("Conv", [x, "hw", "hb"], [last], kernel_shape=[1, 1]))
        if form == "prob-map":
            nodes.append(helper.make_node("Sigmoid", ["logits"], ["out"]))
        oh: int | str = "OH" if shape["dyn"] else side_h
        ow: int | str = "OW" if shape["dyn"] else side_w
        out_shape = [n, cls, oh, ow]
    in_shape = [n, 3, hd, wd] if shape["layout"] == "NCHW" else [n, hd, wd, 3]
    graph = helper.make_graph(
        nodes, "bench", [helper.make_tensor_value_info("image", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_shape)], initializer=inits,
    )  # fmt: skip
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    onnx.checker.check_model(m, full_check=True)
    path.write_bytes(m.SerializeToString())
    path.with_suffix(".json").write_text(json.dumps(shape["card"]))
    return flops / 1e9


# ------------------------------------------------------------------------------ tutorial


def tutorial(name: str, model: Path, video: Path, output: Path, max_frames: int) -> dict[str, Any]:
    """The loop a tutorial writes for this output form. Runs in its own process."""
    import cv2
    import numpy as np
    import onnxruntime as ort

    shape = SHAPES[name]
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    mean, std = np.array(MEAN, np.float32), np.array(STD, np.float32)
    rng = np.random.default_rng(0)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    palette[0] = 0
    cap = cv2.VideoCapture(str(video))
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    writer = cv2.VideoWriter(str(output), cv2.VideoWriter.fourcc(*"mp4v"), 25, (w, h))
    mh, mw = shape["hw"]
    frames, first = 0, None
    start = time.perf_counter()
    while frames < max_frames:
        ok, frame = cap.read()
        if not ok:
            break
        x = cv2.cvtColor(cv2.resize(frame, (mw, mh)), cv2.COLOR_BGR2RGB)
        x = (x.astype(np.float32) / 255.0 - mean) / std
        x = x[None] if shape["layout"] == "NHWC" else x.transpose(2, 0, 1)[None]
        out = session.run(None, {input_name: x})[0][0]
        form = shape["out"]
        if form == "softmax-scores":
            best = int(out.argmax())
            frame = frame.copy()
            cv2.putText(frame, f"class {best} {out[best]:.2f}", (20, 40),
                        cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)  # fmt: skip
            writer.write(frame)
        else:
            if form == "softmax-logits":
                e = np.exp(out - out.max(axis=0, keepdims=True))
                probs = e / e.sum(axis=0, keepdims=True)
                full = cv2.resize(probs.transpose(1, 2, 0), (w, h))
                mask = full.argmax(axis=2)
            else:  # per-class sigmoid (or a probability map already): resize, threshold
                probs = 1 / (1 + np.exp(-out)) if form == "sigmoid-logits" else out
                mask = np.zeros((h, w), np.int64)
                for c in range(probs.shape[0]):
                    up = cv2.resize(probs[c], (w, h))
                    mask[up > (0.3 if form == "prob-map" else 0.5)] = c + 1
            colour = palette[mask]
            writer.write(cv2.addWeighted(frame, 0.5, colour, 0.5, 0))
        frames += 1
        if first is None:
            first = time.perf_counter()
    writer.release()
    cap.release()
    return {"frames": frames, "loop_s": time.perf_counter() - start}


# ------------------------------------------------------------------------------ measuring


def _child(args: list[str], cwd: Path) -> tuple[float, float, float | None, str]:
    """(wall s, CPU s, peak RSS MiB, stdout) of a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=3600
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    peak = None
    for line in proc.stderr.splitlines():
        if line.startswith("VmHWM_KIB="):
            peak = int(line.split("=")[1]) / 1024
    return wall, cpu, peak, proc.stdout


_HWM = (
    "import atexit, sys\n"
    "def _hwm():\n"
    "    with open('/proc/self/status') as f:\n"
    "        v = [l.split()[1] for l in f if l.startswith('VmHWM:')]\n"
    "    print('VmHWM_KIB=' + v[0], file=sys.stderr)\n"
    "atexit.register(_hwm)\n"
)


def run_tutorial(name: str, model: Path, video: Path, cwd: Path, max_frames: int) -> Any:
    code = _HWM + (
        f"sys.path.insert(0, {str(ROOT / 'benchmarks')!r})\n"
        "import json, speed_matrix as m\n"
        f"print(json.dumps(m.tutorial({name!r}, __import__('pathlib').Path({str(model)!r}), "
        f"__import__('pathlib').Path({str(video)!r}), __import__('pathlib').Path('t.mp4'), "
        f"{max_frames})))\n"
    )
    return _child(["-c", code], cwd)


def run_worker(model: Path, video: Path, cwd: Path, max_frames: int | None) -> Any:
    code = _HWM + "from worker.cli.main import main\nsys.exit(main(sys.argv[1:]))\n"
    args = ["-c", code, "run", "--input", str(video), "--model", str(model), "--output",
            "w.mp4", "--results", "w.jsonl", "--quiet", "--no-picture"]  # fmt: skip
    if max_frames:
        args += ["--max-frames", str(max_frames)]
    return _child(args, cwd)


def _cpu_of(body: Callable[[], int]) -> tuple[int, float, float]:
    c0, t0 = os.times(), time.perf_counter()
    n = body()
    c1 = os.times()
    return n, time.perf_counter() - t0, (c1.user - c0.user) + (c1.system - c0.system)


def alone(model_path: Path, video: Path, frames: int) -> dict[str, float]:
    """CPU ms per frame of the model (worker's session settings, ready batches), decoding,
    x264 encoding and the host work (resize in, draw out), each alone in this process."""
    import numpy as np

    from worker.models import load_model
    from worker.stages import VideoSource, VideoWriter, default_batch
    from worker.stages.atomic import AtomicFile
    from worker.stages.frames import Frame

    model = load_model(model_path, provider="cpu")
    batch = default_batch(model, 0)
    h, w = model.input_hw
    shape = (batch, 3, h, w) if model.graph.layout == "NCHW" else (batch, h, w, 3)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    model.engine.run(x)

    def infer() -> int:
        for _ in range(math.ceil(frames / batch)):
            model.engine.run(x)
        return math.ceil(frames / batch) * batch

    n, _, cpu_model = _cpu_of(infer)
    images: list[Array] = []

    def decode() -> int:
        src = VideoSource(video)
        try:
            for f in src.frames():
                if len(images) < 50:
                    images.append(f.image)
            return src.info.frames or len(images)
        finally:
            src.close()

    nd, _, cpu_dec = _cpu_of(decode)

    def encode() -> int:
        target = AtomicFile(Path(tempfile.mkdtemp()) / "e.mp4", "bench")
        src = VideoSource(video)
        info = src.info
        src.close()
        out = VideoWriter(target, info, preset="ultrafast", crf=23)
        for i in range(frames):
            img = images[i % len(images)]
            out.write(Frame(index=i, pts=i, time=i / 25, image=img), img)
        out.close(flush=True)
        target.discard()
        return frames

    ne, _, cpu_enc = _cpu_of(encode)

    # The host work no pipeline can skip: the resize to the model's input, and the answer
    # drawn onto the frame (the mask mapped and blended, or the label written).
    from worker.ops.preprocess import warp
    from worker.stages import Annotator
    from worker.stages.infer import Inferencer, plan_for

    infer_ = Inferencer(model, batch=1)
    answers = infer_(images[:1])
    draw = Annotator(model, 0.5)
    plan = plan_for(model)

    def host() -> int:
        for i in range(frames):
            img = images[i % len(images)]
            warp([img], plan.hw, plan.resize, plan.crop_from)
            draw.draw(Frame(index=i, pts=i, time=i / 25, image=img), answers[0])
        return frames

    nh, _, cpu_host = _cpu_of(host)
    return {
        "model": 1000 * cpu_model / n,
        "model_fps_alone": n / max(1e-9, _cpu_of(infer)[1]),
        "decode": 1000 * cpu_dec / nd,
        "encode": 1000 * cpu_enc / ne,
        "host": 1000 * cpu_host / nh,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=6.0, help="of 25 fps 720p video")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    from factory import make_video, walkers

    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory(prefix="speed-matrix-") as t:
        tmp = Path(t)
        frames = round(a.seconds * 25)
        video = make_video(tmp / "street720.mp4", frames=frames, width=1280, height=720,
                           image=walkers(), crf=23)  # fmt: skip
        mbit = video.stat().st_size * 8 / a.seconds / 1e6
        for name in a.shapes.split(","):
            model = tmp / f"{name}.onnx"
            gflops = build_model(SHAPES[name], model)
            tut: dict[str, list[float]] = {"fps": [], "start": [], "rss": []}
            wrk: dict[str, list[float]] = {"fps": [], "start": [], "rss": [], "cpu": []}
            for _ in range(a.rounds):
                wall, _, rss, out = run_tutorial(name, model, video, tmp, frames)
                tut["fps"].append(json.loads(out)["frames"] / wall)
                tut["rss"].append(rss or 0)
                wall, cpu, rss, out = run_worker(model, video, tmp, None)
                wrk["fps"].append(json.loads(out)["frames"] / wall)
                wrk["cpu"].append(1000 * cpu / json.loads(out)["frames"])
                wrk["rss"].append(rss or 0)
                tut["start"].append(run_tutorial(name, model, video, tmp, 1)[0])
                wrk["start"].append(run_worker(model, video, tmp, 1)[0])
            solo = alone(model, video, frames)
            med = {k: statistics.median(v) for k, v in wrk.items()}
            tmed = {k: statistics.median(v) for k, v in tut.items()}
            parts = solo["model"] + solo["decode"] + solo["encode"] + solo["host"]
            bound = 1000 * cores / parts
            rows.append(
                {
                    "shape": name,
                    "gflops": round(gflops, 2),
                    "tutorial_fps": round(tmed["fps"], 1),
                    "worker_fps": round(med["fps"], 1),
                    "worker_vs_tutorial": round(med["fps"] / tmed["fps"], 2),
                    "model_alone_fps": round(solo["model_fps_alone"], 1),
                    "worker_vs_model": round(med["fps"] / solo["model_fps_alone"], 2),
                    "cpu_ms": {
                        "model": round(solo["model"], 1),
                        "decode": round(solo["decode"], 1),
                        "encode": round(solo["encode"], 1),
                        "host": round(solo["host"], 1),
                        "rest": round(med["cpu"] - parts, 1),
                        "total": round(med["cpu"], 1),
                    },
                    "bound_fps": round(bound, 1),
                    "worker_vs_bound": round(med["fps"] / bound, 2),
                    "startup_s": {
                        "tutorial": round(tmed["start"], 2),
                        "worker": round(med["start"], 2),
                    },
                    "peak_rss_mib": {
                        "tutorial": round(tmed["rss"]),
                        "worker": round(med["rss"]),
                    },
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if a.json:
        print(json.dumps({"video_mbit_s": round(mbit, 2), "cores": cores, "rows": rows}))
        return 0
    print(f"1280x720 walkers, {a.seconds:g} s, {mbit:.2f} Mbit/s; {cores} cores; whole "
          f"processes, median of {a.rounds}, alternating")  # fmt: skip
    print(f"{'shape':<15} {'tut fps':>8} {'wrk fps':>8} {'x tut':>6} {'x model':>8} "
          f"{'model/dec/enc/host/rest':>24} {'bound':>6} {'x bound':>8} {'start s':>11} "
          f"{'RSS MiB':>10}")  # fmt: skip
    for r in rows:
        c = r["cpu_ms"]
        split = "/".join(f"{c[k]:.0f}" for k in ("model", "decode", "encode", "host", "rest"))
        st, rss = r["startup_s"], r["peak_rss_mib"]
        print(f"{r['shape']:<15} {r['tutorial_fps']:>8.1f} {r['worker_fps']:>8.1f} "
              f"{r['worker_vs_tutorial']:>6.2f} {r['worker_vs_model']:>8.2f} {split:>24} "
              f"{r['bound_fps']:>6.1f} {r['worker_vs_bound']:>8.2f} "
              f"{st['tutorial']:>5.2f}/{st['worker']:<5.2f} "
              f"{rss['tutorial']:>4}/{rss['worker']:<5}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
