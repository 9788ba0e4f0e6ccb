"""Tutorial-style sequential loop vs. the worker, on the same video and the same model.

Everything is built in a temporary directory (nothing downloaded, nothing committed):

- a 720p H.264 MP4 of ``worker sample``'s robot scene (``worker.sample.write_sample``);
- a VOC-style segmentation model made with ``onnx.helper``: NCHW float32 [N,3,512,512]
  (dynamic batch) -> logits [N,21,128,128] (stride 4, no Resize in the graph), three strided
  3x3 Conv+Relu layers and a 1x1 Conv head, random weights from a fixed seed; and its card.

Then, in this one process and one after the other:

1. the loop a hand-written tutorial uses: cv2.VideoCapture -> numpy preprocess ->
   onnxruntime.InferenceSession (default options) -> numpy softmax -> float probability maps
   resized to the frame -> argmax -> palette -> cv2.addWeighted -> cv2.VideoWriter('mp4v'),
   single-threaded, each stage timed per frame;
2. the worker: ``models.load_model`` then ``pipelines.run_file``;
3. the model-only ceiling: the worker's ``Engine`` on ready-made input batches;
4. the worker's stages one after the other on one thread (decode, preprocess, model, argmax,
   annotate, encode, JSON), to see what each costs when nothing else runs.

Run from the repository root: ``python benchmarks/tutorial_vs_worker.py`` (``--help``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import av
import cv2
import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from tqdm import tqdm

from models import Model, load_model, voc_palette
from pipelines import (
    Annotator,
    VideoSource,
    VideoWriter,
    default_batch,
    plan_for,
    preprocess,
    run_file,
    segment,
)
from pipelines.atomic import AtomicFile
from pipelines.frames import Answer, Frame
from pipelines.writer import ResultsWriter
from worker.sample import write_sample

Array = np.ndarray[Any, Any]

FPS = 25
INPUT = 512  # model input side
CLASSES = 21  # PASCAL VOC
SEED = 20240601
NOISY_CORES = 0.1  # other processes using more than this many cores disturb the timings
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (in channels, out channels, kernel, stride, relu): stem stride 2, then stride 4, then a
# 1x1 head to the classes. Output stride 4: [N,21,128,128] at 512x512.
LAYERS: tuple[tuple[int, int, int, int, bool], ...] = (
    (3, 32, 3, 2, True),
    (32, 64, 3, 2, True),
    (64, 64, 3, 1, True),
    (64, CLASSES, 1, 1, False),
)


# ------------------------------------------------------------------------------ measuring


def _status_kib(key: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _machine_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy (all processes), from /proc/stat."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    guest = sum(ticks[8:10])  # already counted in user/nice
    return (sum(ticks) - idle - guest) / os.sysconf("SC_CLK_TCK")


@dataclass
class Phase:
    """Wall time, CPU time (all threads) and peak RSS of one phase."""

    name: str
    wall_s: float = 0.0
    cpu_s: float = 0.0
    start_rss_mib: float | None = None
    peak_rss_mib: float | None = None
    peak_is_phase: bool = False  # False: the process's peak so far (the reset did not work)
    other_cpu_s: float | None = None  # CPU time other processes used meanwhile

    @property
    def others_busy(self) -> float | None:
        if self.other_cpu_s is None or self.wall_s <= 0:
            return None
        return max(0.0, self.other_cpu_s / self.wall_s)

    @property
    def cores_busy(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


@contextmanager
def measure(name: str, phases: dict[str, Phase]) -> Iterator[Phase]:
    """Time a block; reset the kernel's RSS high-water mark first so the peak is this block's."""
    phase = Phase(name)
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")  # resets VmHWM (Linux >= 4.0)
        phase.peak_is_phase = True
    except OSError:
        phase.peak_is_phase = False
    rss = _status_kib("VmRSS")
    phase.start_rss_mib = None if rss is None else rss / 1024
    t0, c0, m0 = time.perf_counter(), os.times(), _machine_busy_s()
    try:
        yield phase
    finally:
        c1, m1 = os.times(), _machine_busy_s()
        phase.wall_s = time.perf_counter() - t0
        phase.cpu_s = (c1.user - c0.user) + (c1.system - c0.system)
        if m0 is not None and m1 is not None:
            phase.other_cpu_s = (m1 - m0) - phase.cpu_s
        hwm = _status_kib("VmHWM") if phase.peak_is_phase else None
        if hwm is None:
            phase.peak_is_phase = False
            hwm = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        phase.peak_rss_mib = hwm / 1024
        phases[name] = phase


class Stages:
    """Seconds spent per named stage, in the order first seen."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def per_frame_ms(self, frames: int) -> dict[str, float]:
        n = max(frames, 1)
        return {k: round(1000 * v / n, 2) for k, v in self.seconds.items()}


def environment() -> dict[str, Any]:
    """Versions and the checkout, so that numbers can be compared across runs."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "onnxruntime": ort.__version__,
        "opencv": cv2.__version__,
        "av": av.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }
    repo = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        env["git"] = rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        env["git"] = None
    return env


# ------------------------------------------------------------------------------ inputs


def build_model(seed: int = SEED) -> tuple[onnx.ModelProto, float]:
    """The segmentation model and its cost in GFLOPs per frame (1 MAC = 2 FLOPs)."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x, side, flops = "image", INPUT, 0
    for i, (cin, cout, k, stride, relu) in enumerate(LAYERS):
        pad = k // 2
        side = (side + 2 * pad - k) // stride + 1
        flops += 2 * cout * side * side * cin * k * k
        w = rng.standard_normal((cout, cin, k, k)).astype(np.float32) * math.sqrt(2 / (cin * k * k))
        b = (0.01 * rng.standard_normal(cout)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        y = "logits" if i == len(LAYERS) - 1 else f"conv{i}"
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"w{i}", f"b{i}"],
                [y],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[pad] * 4,
            )
        )
        if relu:
            nodes.append(helper.make_node("Relu", [y], [f"relu{i}"]))
            y = f"relu{i}"
        x = y
    graph = helper.make_graph(
        nodes,
        "bench_segment",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, INPUT, INPUT])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES, side, side])],
        initializer=inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    onnx.checker.check_model(m, full_check=True)
    return m, flops / 1e9


def write_inputs(tmp: Path, frames: int, width: int, height: int) -> tuple[Path, Path, float]:
    video = tmp / f"sample-{width}x{height}.mp4"
    write_sample(video, seconds=frames / FPS, fps=FPS, width=width, height=height)
    proto, gflops = build_model()
    model = tmp / "seg21.onnx"
    model.write_bytes(proto.SerializeToString(deterministic=True))
    card = {
        "task": "segment",
        "labels": [f"class_{i}" for i in range(CLASSES)],
        "resize": "stretch",
        "scale": 1 / 255,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "background": 0,
    }
    model.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return video, model, gflops


# ------------------------------------------------------------------------------ the runs


def tutorial_loop(
    video: Path, model: Path, output: Path, stages: Stages, sub: Stages, devnull: IO[str]
) -> tuple[int, float]:
    """The tutorial's loop, as written in tutorials. Returns (frames, session creation s)."""
    t0 = time.perf_counter()
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    session_s = time.perf_counter() - t0
    input_name = session.get_inputs()[0].name
    mean = np.array(IMAGENET_MEAN, dtype=np.float32)
    std = np.array(IMAGENET_STD, dtype=np.float32)
    palette = voc_palette(256)[:, ::-1].copy()  # BGR, for OpenCV

    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise SystemExit(f"cv2.VideoCapture cannot open {video} (OpenCV built without FFmpeg?)")
    w = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    h = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    fps = cap.get(cv2.CAP_PROP_FPS) or FPS
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    writer = cv2.VideoWriter(str(output), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise SystemExit(f"cv2.VideoWriter cannot write 'mp4v' to {output}")
    bar = tqdm(total=total, file=devnull)
    n = 0
    while True:
        t_read = time.perf_counter()
        ok, frame = cap.read()
        if not ok:
            break
        t_pre = time.perf_counter()
        x = cv2.resize(frame, (INPUT, INPUT))
        x = cv2.cvtColor(x, cv2.COLOR_BGR2RGB)
        x = x.astype(np.float32) / 255.0
        x = (x - mean) / std
        x = x.transpose(2, 0, 1)[None]
        t_inf = time.perf_counter()
        logits = session.run(None, {input_name: x})[0]
        t_post = time.perf_counter()
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = e / e.sum(axis=1, keepdims=True)
        t_a = time.perf_counter()
        full = cv2.resize(probs[0].transpose(1, 2, 0), (w, h))  # (H, W, 21) float32
        t_b = time.perf_counter()
        mask = full.argmax(axis=2)
        t_c = time.perf_counter()
        colour = palette[mask]
        t_d = time.perf_counter()
        blended = cv2.addWeighted(frame, 0.5, colour, 0.5, 0)
        t_write = time.perf_counter()
        writer.write(blended)
        bar.update(1)
        t_end = time.perf_counter()
        n += 1
        for name, a, b in (
            ("read", t_read, t_pre),
            ("preprocess", t_pre, t_inf),
            ("inference", t_inf, t_post),
            ("postprocess", t_post, t_write),
            ("write", t_write, t_end),
        ):
            stages.add(name, b - a)
        for name, a, b in (
            ("softmax", t_post, t_a),
            ("resize probs", t_a, t_b),
            ("argmax", t_b, t_c),
            ("palette", t_c, t_d),
            ("addWeighted", t_d, t_write),
        ):
            sub.add(name, b - a)
    bar.close()
    cap.release()
    writer.release()
    return n, session_s


def ceiling(model: Model, batch: int, frames: int, rounds: int = 3) -> tuple[int, float]:
    """Engine.run alone on ready-made [batch,3,512,512] inputs, the best of ``rounds`` passes
    over ``frames`` frames; returns (frames, seconds) of the best pass."""
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((batch, 3, *model.input_hw)).astype(np.float32)
    for _ in range(2):  # warm-up: first runs allocate
        model.engine.run(x)
    runs = max(1, math.ceil(frames / batch))
    best = math.inf
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(runs):
            model.engine.run(x)
        best = min(best, time.perf_counter() - t0)
    return runs * batch, best


def worker_stages(model: Model, video: Path, tmp: Path, batch: int, stages: Stages) -> int:
    """The worker's stage code, run one after the other on this thread; returns frames."""
    source = VideoSource(video)
    plan = plan_for(model)
    annotate = Annotator(model, 0.5)
    video_file = AtomicFile(tmp / "stages.mp4", "output")
    results_file = AtomicFile(tmp / "stages.jsonl", "results")
    writer = VideoWriter(video_file, source.info, preset="veryfast", crf=23)
    results = ResultsWriter(results_file)
    n = 0

    clock = time.perf_counter

    def flush(pending: list[Frame]) -> None:
        t0 = clock()
        x = preprocess([f.image for f in pending], plan)
        t1 = clock()
        out = model.engine.run(x)
        t2 = clock()
        maps, _ = segment(out, model.kind, model.activation, model.threshold)
        t3 = clock()
        stages.add("preprocess", t1 - t0)
        stages.add("model", t2 - t1)
        stages.add("argmax", t3 - t2)
        for frame, cmap in zip(pending, maps, strict=True):
            t0 = clock()
            image, record = annotate(frame, Answer(class_map=cmap))
            t1 = clock()
            writer.write(frame, image)
            t2 = clock()
            results.write(record)
            t3 = clock()
            stages.add("annotate", t1 - t0)
            stages.add("encode", t2 - t1)
            stages.add("json", t3 - t2)

    try:
        frames = source.frames()
        pending: list[Frame] = []
        while True:
            t = clock()
            frame = next(frames, None)
            stages.add("decode", clock() - t)
            if frame is None:
                break
            n += 1
            pending.append(frame)
            if len(pending) == batch:
                flush(pending)
                pending = []
        if pending:
            flush(pending)
        t = clock()
        writer.close(flush=True)
        stages.add("encode", clock() - t)
        results.close()
    finally:
        source.close()
        video_file.discard()
        results_file.discard()
    return n


# ------------------------------------------------------------------------------ main


@dataclass
class Result:
    environment: dict[str, Any]
    video: dict[str, Any]
    model: dict[str, Any]
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    ratios: dict[str, float] = field(default_factory=dict)
    tutorial_ms_per_frame: dict[str, float] = field(default_factory=dict)
    tutorial_postprocess_ms_per_frame: dict[str, float] = field(default_factory=dict)
    worker_stage_ms_per_frame: dict[str, float] = field(default_factory=dict)
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    peak_rss_mib_process: float = 0.0
    temp_dir: str | None = None


def _fps(frames: int, seconds: float) -> float:
    return round(frames / seconds, 2) if seconds > 0 else 0.0


def _ratio(a: float, b: float) -> float:
    return round(a / b, 2) if b > 0 else 0.0


def run(args: argparse.Namespace, out: IO[str]) -> Result:
    tmp = Path(tempfile.mkdtemp(prefix="bench-tutorial-vs-worker-"))
    phases: dict[str, Phase] = {}
    devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    try:
        with measure("build inputs", phases):
            video, model_path, gflops = write_inputs(tmp, args.frames, args.width, args.height)
        result = Result(
            environment=environment(),
            video={
                "path": str(video),
                "frames": args.frames,
                "size": [args.width, args.height],
                "fps": FPS,
                "codec": "h264 (libx264 veryfast crf 18)",
                "bytes": video.stat().st_size,
            },
            model={
                "path": str(model_path),
                "input": [None, 3, INPUT, INPUT],
                "output": [None, CLASSES, INPUT // 4, INPUT // 4],
                "output_note": "logits at stride 4, no Resize in the graph",
                "layers": [list(layer) for layer in LAYERS],
                "gflops_per_frame": round(gflops, 3),
                "bytes": model_path.stat().st_size,
            },
        )
        env = result.environment
        print(
            f"env: python {env['python']}, numpy {env['numpy']}, onnxruntime "
            f"{env['onnxruntime']}, opencv {env['opencv']}, av {env['av']}, "
            f"{env['cpus']} CPUs, git {env['git'] or '?'}",
            file=out,
        )
        print(
            f"video: {video.name} {args.width}x{args.height} {args.frames} frames @ {FPS} fps, "
            f"H.264, {video.stat().st_size / 1e3:.0f} kB",
            file=out,
        )
        print(
            f"model: {model_path.name} NCHW float32 [N,3,{INPUT},{INPUT}] -> logits "
            f"[N,{CLASSES},{INPUT // 4},{INPUT // 4}] (stride 4, not upsampled in the graph); "
            f"{gflops:.2f} GFLOPs/frame (2 x MACs of the convolutions)",
            file=out,
        )
        print(f"built in {phases['build inputs'].wall_s:.1f} s; running...", file=out, flush=True)

        # 1. the tutorial loop
        t_stages, t_sub = Stages(), Stages()
        with measure("tutorial", phases) as ph:
            t_frames, session_s = tutorial_loop(
                video, model_path, tmp / "tutorial.mp4", t_stages, t_sub, devnull
            )
        t_loop = ph.wall_s - session_s
        result.tutorial_ms_per_frame = t_stages.per_frame_ms(t_frames)
        result.tutorial_postprocess_ms_per_frame = t_sub.per_frame_ms(t_frames)

        # 2. the worker
        with measure("worker load", phases) as ph:
            model = load_model(model_path, provider="cpu", threads=args.threads)
        load_s = ph.wall_s
        batch = default_batch(model, args.batch)
        with measure("worker", phases) as ph:
            summary = run_file(
                video,
                model,
                output=tmp / "worker.mp4",
                results=tmp / "worker.jsonl",
                batch=args.batch,
                progress=False,
            )
        w_run = ph.wall_s

        # 3. the model alone
        with measure("ceiling", phases) as ph:
            c_frames, c_s = ceiling(model, batch, args.frames)

        # 4. the worker's stages, one after the other
        w_stages = Stages()
        with measure("worker stages", phases):
            s_frames = worker_stages(model, video, tmp, batch, w_stages)
        result.worker_stage_ms_per_frame = w_stages.per_frame_ms(s_frames)

        if not t_frames == summary.frames == s_frames == args.frames:
            print(
                f"WARNING: frame counts differ: video {args.frames}, tutorial {t_frames}, "
                f"worker {summary.frames}, worker stages {s_frames}",
                file=out,
            )
        tut_fps = _fps(t_frames, t_loop)
        wrk_fps = _fps(summary.frames, w_run)
        ceil_fps = _fps(c_frames, c_s)
        result.runs = {
            "tutorial": {
                "frames": t_frames,
                "fps": tut_fps,
                "seconds": round(t_loop, 3),
                "load_seconds": round(session_s, 3),
                "fps_with_load": _fps(t_frames, t_loop + session_s),
                "what": "VideoCapture open .. VideoWriter release; load = InferenceSession()",
            },
            "worker": {
                "frames": summary.frames,
                "fps": wrk_fps,
                "seconds": round(w_run, 3),
                "load_seconds": round(load_s, 3),
                "fps_with_load": _fps(summary.frames, w_run + load_s),
                "batch": summary.batch,
                "threads": args.threads or os.cpu_count(),
                "summary_fps": summary.fps,
                "what": "run_file call (open .. commit); load = load_model (read, check, "
                "session, probe run)",
            },
            "ceiling": {
                "frames": c_frames,
                "fps": ceil_fps,
                "seconds": round(c_s, 3),
                "batch": batch,
                "what": "model.engine.run on ready-made float32 batches, after 2 warm-up runs; "
                "best of 3 passes",
            },
        }
        result.ratios = {
            "worker/tutorial": _ratio(wrk_fps, tut_fps),
            "worker/ceiling": _ratio(wrk_fps, ceil_fps),
            "tutorial/ceiling": _ratio(tut_fps, ceil_fps),
        }
        result.phases = {
            k: {
                "wall_s": round(p.wall_s, 3),
                "cpu_s": round(p.cpu_s, 3),
                "cores_busy": round(p.cores_busy, 2),
                "others_busy": None if p.others_busy is None else round(p.others_busy, 2),
                "start_rss_mib": round(p.start_rss_mib or 0.0, 1),
                "peak_rss_mib": round(p.peak_rss_mib or 0.0, 1),
                "peak_is_phase": p.peak_is_phase,
            }
            for k, p in phases.items()
        }
        # Resetting VmHWM also lowers ru_maxrss, so the process peak is the largest phase peak.
        result.peak_rss_mib_process = round(
            max(
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                *(p.peak_rss_mib or 0.0 for p in phases.values()),
            ),
            1,
        )
        if args.keep:
            result.temp_dir = str(tmp)
        return result
    finally:
        devnull.close()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


def report(r: Result, out: IO[str]) -> None:
    p = r.phases
    rows = [
        ("tutorial loop", r.runs["tutorial"], p["tutorial"]),
        ("worker", r.runs["worker"], p["worker"]),
        ("model-only ceiling", r.runs["ceiling"], p["ceiling"]),
    ]
    print("", file=out)
    print(
        f"{'run':<20}{'frames':>7}{'seconds':>9}{'fps':>8}{'load s':>8}{'fps+load':>9}"
        f"{'cores':>7}{'others':>7}{'RSS start':>11}{'peak':>6}",
        file=out,
    )
    for name, run_, ph in rows:
        load = run_.get("load_seconds")
        with_load = run_.get("fps_with_load")
        others = ph["others_busy"]
        print(
            f"{name:<20}{run_['frames']:>7}{run_['seconds']:>9.2f}{run_['fps']:>8.2f}"
            f"{'' if load is None else f'{load:.3f}':>8}"
            f"{'' if with_load is None else f'{with_load:.2f}':>9}"
            f"{ph['cores_busy']:>7.2f}{'?' if others is None else f'{others:.2f}':>7}"
            f"{ph['start_rss_mib']:>11.0f}{ph['peak_rss_mib']:>6.0f} MiB",
            file=out,
        )
    print(
        "  seconds, fps: model loading excluded (tutorial: VideoCapture open .. VideoWriter "
        "release;\n"
        "    worker: the run_file call, open .. outputs committed); load s: tutorial = "
        "InferenceSession(),\n"
        "    worker = load_model (read, check, session, probe run); fps+load: both included\n"
        "  cores: this process's CPU time (all threads) / wall time, out of "
        f"{os.cpu_count()}; others: the same for every other process\n"
        "  RSS: when the phase began / its own high-water mark"
        + ("" if all(v["peak_is_phase"] for v in p.values()) else " (NOT reset: process peak)"),
        file=out,
    )
    w = r.runs["worker"]
    print(
        f"  worker: batch {w['batch']}, {w['threads']} intra-op threads (no spinning); "
        f"tutorial: ORT default options; ceiling: batch {r.runs['ceiling']['batch']}",
        file=out,
    )
    busy = {
        k: v["others_busy"]
        for k, v in p.items()
        if k not in ("build inputs", "worker load") and (v["others_busy"] or 0.0) > NOISY_CORES
    }
    if busy:
        print(
            "  WARNING: other processes were busy during "
            + ", ".join(f"{k} ({v:.2f} cores)" for k, v in busy.items())
            + ": those timings are disturbed; rerun on a quiet machine",
            file=out,
        )
    print("", file=out)
    print("ratios: " + ", ".join(f"{k} {v:.2f}x" for k, v in r.ratios.items()), file=out)
    print(f"process peak RSS: {r.peak_rss_mib_process:.0f} MiB", file=out)

    def stage_line(title: str, stages: dict[str, float]) -> None:
        total = sum(stages.values())
        parts = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
        print(f"{title}: {parts}  (sum {total:.1f})", file=out)

    print("", file=out)
    print("ms per frame", file=out)
    stage_line("  tutorial loop", r.tutorial_ms_per_frame)
    stage_line("    postprocess", r.tutorial_postprocess_ms_per_frame)
    stage_line("  worker stages, sequential", r.worker_stage_ms_per_frame)
    print(
        "    (the worker's own code on one thread: decode = PyAV, model = Engine.run per frame "
        "of a batch, annotate = restore + blend + coverage, encode = libx264 veryfast)",
        file=out,
    )
    if r.temp_dir:
        print(f"\nkept: {r.temp_dir}", file=out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--frames", type=int, default=150, help="frames in the video (25 fps)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument(
        "--batch", type=int, default=0, help="worker batch; 0 = the worker's default (4 on CPU)"
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="worker intra-op threads; 0 = the worker's default (all cores). The tutorial "
        "loop always uses ONNX Runtime's defaults",
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument(
        "--json", action="store_true", help="print the result as JSON on stdout (table to stderr)"
    )
    args = ap.parse_args(argv)
    if args.frames < 1 or args.batch < 0 or args.threads < 0:
        ap.error("--frames must be positive; --batch and --threads >= 0")
    if min(args.width, args.height) < 2 or args.width % 2 or args.height % 2:
        ap.error("--width and --height must be even (H.264 yuv420p)")
    out = sys.stderr if args.json else sys.stdout
    result = run(args, out)
    report(result, out)
    if args.json:
        json.dump(asdict(result), sys.stdout, indent=2)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
