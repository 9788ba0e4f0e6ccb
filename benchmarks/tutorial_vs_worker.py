"""Tutorial-style sequential loop vs. the worker vs. the model alone, same video, same model.

Everything is built in a temporary directory (nothing downloaded, nothing committed):

- a 720p H.264 MP4 of ``worker sample``'s robot scene (``worker.sample.write_sample``);
- a VOC-style segmentation model made with ``onnx.helper``: NCHW float32 [N,3,512,512]
  (dynamic batch) -> logits [N,21,128,128] (stride 4, no Resize in the graph), three strided
  3x3 Conv+Relu layers and a 1x1 Conv head, random weights from a fixed seed; and its card.

- the same video played ``--long`` times in a row (packets copied, not re-encoded).

Then, in this one process and one after the other:

1. the loop a hand-written tutorial uses: cv2.VideoCapture -> numpy preprocess ->
   onnxruntime.InferenceSession (default options) -> numpy softmax -> float probability maps
   resized to the frame -> argmax -> palette -> cv2.addWeighted -> cv2.VideoWriter('mp4v'),
   single-threaded, each stage timed per frame;
2. the worker: ``models.load_model`` then ``pipelines.run_file`` with its defaults (fused
   graph, IO binding), CPU time per thread sampled while it runs;
3. the model-only ceiling: the same session settings (``Engine``, IO binding, intra-op
   threads) fed ready-made float32 batches of the plain model, nothing else running; and the
   fused graph fed ready-made uint8 batches (the in-graph pre/post-processing included);
4. the worker's stages one after the other on one thread, to see what each costs alone;
5. ``worker run`` on the short and on the long video, each in a fresh process: peak RSS must
   not grow with the length.

It prints the ratios the speed issue sets as targets (worker/tutorial >= 2.0, worker/ceiling
>= 0.75, long/short peak RSS < 1.10), the bytes per frame that cross to the inference device,
where the CPU time goes, and the arithmetic of the best any pipeline could do on this machine.

Run from the repository root: ``python benchmarks/tutorial_vs_worker.py`` (``--help``).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
import onnx
import onnxruntime as ort
from bench_support import (
    Phase,
    Stages,
    ThreadSampler,
    environment,
    measure,
    repeat_video,
    run_worker,
)
from onnx import TensorProto, helper, numpy_helper
from tqdm import tqdm

from models import Model, load_model, voc_palette
from pipelines import Annotator, VideoSource, VideoWriter, default_batch, run_file
from pipelines.atomic import AtomicFile
from pipelines.frames import Frame
from pipelines.infer import Inferencer
from pipelines.speed import Speed
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


def _best_of(rounds: int, body: Any) -> tuple[float, float]:
    """(wall s, CPU s) of the fastest of ``rounds`` calls of ``body``."""
    best = (math.inf, 0.0)
    for _ in range(rounds):
        c0, t0 = os.times(), time.perf_counter()
        body()
        wall, c1 = time.perf_counter() - t0, os.times()
        if wall < best[0]:
            best = (wall, (c1.user - c0.user) + (c1.system - c0.system))
    return best


def ceiling(model: Model, batch: int, frames: int, rounds: int = 3) -> tuple[int, float, float]:
    """The plain model alone: ``Engine.run`` (IO binding, the worker's session settings) on a
    ready-made float32 [batch,3,512,512] batch; the best of ``rounds`` passes over ``frames``
    frames. Returns (frames, wall s, CPU s) of that pass."""
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((batch, 3, *model.input_hw)).astype(np.float32)
    for _ in range(2):  # warm-up: the first runs allocate
        model.engine.run(x)
    runs = max(1, math.ceil(frames / batch))

    def passes() -> None:
        for _ in range(runs):
            model.engine.run(x)

    wall, cpu = _best_of(rounds, passes)
    return runs * batch, wall, cpu


def fused_ceiling(
    infer: Inferencer, batch: int, frames: int, rounds: int = 3
) -> tuple[int, float, float]:
    """The fused graph alone on ready-made uint8 [batch,512,512,3] frames: the model plus the
    in-graph colour order, normalisation and argmax. Same return as ``ceiling``."""
    assert infer.fused is not None
    h, w = infer.fused.spec.hw
    x = np.random.default_rng(SEED).integers(0, 256, (batch, h, w, 3), dtype=np.uint8)
    specs = infer.fused.output_specs(batch)
    for _ in range(2):
        infer.engine.run_all(x, specs)
    runs = max(1, math.ceil(frames / batch))

    def passes() -> None:
        for _ in range(runs):
            infer.engine.run_all(x, specs)

    wall, cpu = _best_of(rounds, passes)
    return runs * batch, wall, cpu


def decode_ceiling(video: Path) -> tuple[int, float, float]:
    """Decoding alone, as the worker's source does it (threads, BGR conversion): the other
    ceiling a pipeline cannot beat. Returns (frames, wall s, CPU s)."""
    c0, t0 = os.times(), time.perf_counter()
    source = VideoSource(video)
    try:
        n = sum(1 for _ in source.frames())
    finally:
        source.close()
    wall, c1 = time.perf_counter() - t0, os.times()
    return n, wall, (c1.user - c0.user) + (c1.system - c0.system)


def worker_stages(
    model: Model, video: Path, tmp: Path, batch: int, preset: str, stages: Stages
) -> int:
    """The worker's own stage code (fused path), one stage after the other on this thread;
    returns frames. Wall time per stage: decode threads and ORT's pool still help."""
    source = VideoSource(video)
    infer = Inferencer(model, batch=batch)
    annotate = Annotator(model, 0.5)
    video_file = AtomicFile(tmp / "stages.mp4", "output")
    results_file = AtomicFile(tmp / "stages.jsonl", "results")
    writer = VideoWriter(video_file, source.info, preset=preset, crf=23)
    results = ResultsWriter(results_file)
    n = 0
    clock = time.perf_counter

    def flush(pending: list[Frame]) -> None:
        t0 = clock()
        x = infer.stage([f.image for f in pending])
        t1 = clock()
        outs = infer.run_staged(x)
        t2 = clock()
        answers = infer.answers(outs)
        t3 = clock()
        stages.add("resize (host)", t1 - t0)
        stages.add("model (fused)", t2 - t1)
        stages.add("answers", t3 - t2)
        for frame, answer in zip(pending, answers, strict=True):
            t0 = clock()
            image, record = annotate(frame, answer)
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
    targets: list[dict[str, Any]] = field(default_factory=list)
    device_bytes_per_frame: dict[str, dict[str, int]] = field(default_factory=dict)
    cpu_ms_per_frame: dict[str, float] = field(default_factory=dict)  # the worker, by thread
    bound: dict[str, float] = field(default_factory=dict)  # the arithmetic of the ceiling
    rss: dict[str, dict[str, float]] = field(default_factory=dict)  # `worker run`, short/long
    tutorial_ms_per_frame: dict[str, float] = field(default_factory=dict)
    tutorial_postprocess_ms_per_frame: dict[str, float] = field(default_factory=dict)
    worker_stage_ms_per_frame: dict[str, float] = field(default_factory=dict)
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    peak_rss_mib_process: float = 0.0
    temp_dir: str | None = None


def _fps(frames: int, seconds: float) -> float:
    return round(frames / seconds, 2) if seconds > 0 else 0.0


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b > 0 else 0.0


def _target(name: str, value: float, goal: float, higher: bool, unit: str) -> dict[str, Any]:
    met = value >= goal if higher else value < goal
    miss = 0.0 if met else abs(goal - value)
    return {
        "name": name,
        "value": value,
        "goal": goal,
        "higher": higher,
        "unit": unit,
        "met": met,
        "missed_by": round(miss, 3),
    }


def run(args: argparse.Namespace, out: IO[str]) -> Result:
    tmp = Path(tempfile.mkdtemp(prefix="bench-tutorial-vs-worker-"))
    phases: dict[str, Phase] = {}
    devnull = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    preset_kw: dict[str, Any] = {"preset": args.preset} if args.preset else {}
    try:
        with measure("build inputs", phases):
            video, model_path, gflops = write_inputs(tmp, args.frames, args.width, args.height)
            long_video = tmp / "long.mp4"
            long_frames = repeat_video(video, long_video, args.long) if args.long > 1 else 0
        result = Result(
            environment=environment(),
            video={
                "path": str(video),
                "frames": args.frames,
                "size": [args.width, args.height],
                "fps": FPS,
                "codec": "h264 (libx264 veryfast crf 18)",
                "bytes": video.stat().st_size,
                "long_frames": long_frames,
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
            f"H.264, {video.stat().st_size / 1e3:.0f} kB"
            + (f"; long: the same x{args.long} ({long_frames} frames)" if long_frames else ""),
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

        # 2. the worker; the fused session is built with the model (load time), as a
        # long-lived worker builds it once per model, not per video.
        speed = Speed()
        with measure("worker load", phases) as ph:
            model = load_model(model_path, provider="cpu", threads=args.threads)
            batch = default_batch(model, args.batch)
            infer = Inferencer(model, speed=speed, batch=batch)
        load_s = ph.wall_s
        sampler = ThreadSampler()
        with measure("worker", phases) as ph, sampler:
            summary = run_file(
                video,
                model,
                output=tmp / "worker.mp4",
                results=tmp / "worker.jsonl",
                batch=args.batch,
                progress=False,
                speed=speed,
                **preset_kw,
            )
        w_run = ph.wall_s
        result.cpu_ms_per_frame = sampler.per_frame_ms(summary.frames)

        # 3. the model alone, then the fused graph alone
        with measure("ceiling", phases):
            c_frames, c_s, c_cpu = ceiling(model, batch, args.frames)
        f_frames, f_s, f_cpu = 0, 0.0, 0.0
        if infer.fused is not None:
            with measure("fused ceiling", phases):
                f_frames, f_s, f_cpu = fused_ceiling(infer, batch, args.frames)

        with measure("decode ceiling", phases):
            d_frames, d_s, d_cpu = decode_ceiling(video)

        # 4. the worker's stages, one after the other
        w_stages = Stages()
        with measure("worker stages", phases):
            preset = args.preset or inspect.signature(run_file).parameters["preset"].default
            s_frames = worker_stages(model, video, tmp, batch, preset, w_stages)
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
                "pipeline": summary.pipeline,
                "what": "run_file call (open .. commit); load = load_model (read, check, "
                "session, probe run) + the fused session",
            },
            "ceiling": {
                "frames": c_frames,
                "fps": ceil_fps,
                "seconds": round(c_s, 3),
                "cpu_ms_per_frame": round(1000 * c_cpu / max(c_frames, 1), 2),
                "batch": batch,
                "what": "model.engine.run on ready-made float32 batches, after 2 warm-up runs; "
                "best of 3 passes",
            },
        }
        if f_frames:
            result.runs["fused ceiling"] = {
                "frames": f_frames,
                "fps": _fps(f_frames, f_s),
                "seconds": round(f_s, 3),
                "cpu_ms_per_frame": round(1000 * f_cpu / f_frames, 2),
                "batch": batch,
                "what": "the fused graph on ready-made uint8 frames at 512x512",
            }
        result.runs["decode ceiling"] = {
            "frames": d_frames,
            "fps": _fps(d_frames, d_s),
            "seconds": round(d_s, 3),
            "cpu_ms_per_frame": round(1000 * d_cpu / max(d_frames, 1), 2),
            "what": "VideoSource.frames(): PyAV decode with the worker's threads + BGR",
        }
        result.ratios = {
            "worker/tutorial": _ratio(wrk_fps, tut_fps),
            "worker/ceiling": _ratio(wrk_fps, ceil_fps),
            "tutorial/ceiling": _ratio(tut_fps, ceil_fps),
            # The GPU target's form: end to end against the slower of the two ceilings.
            "worker/min(decode, model)": _ratio(wrk_fps, min(ceil_fps, _fps(d_frames, d_s))),
        }
        result.targets = [
            _target("worker/tutorial", result.ratios["worker/tutorial"], 2.0, True, "x"),
            _target("worker/ceiling", result.ratios["worker/ceiling"], 0.75, True, "x"),
        ]
        if long_frames:
            # 5. peak RSS against video length: `worker run` itself, each in a fresh process, so
            # both start from the same nothing (this process's heap has seen every run above).
            with measure("rss check", phases):
                for name, path in (("short", video), ("long", long_video)):
                    child = run_worker(
                        [
                            "run",
                            "--input",
                            str(path),
                            "--model",
                            str(model_path),
                            "--output",
                            str(tmp / f"rss-{name}.mp4"),
                            "--results",
                            str(tmp / f"rss-{name}.jsonl"),
                            "--provider",
                            "cpu",
                            "--quiet",
                            *(["--batch", str(args.batch)] if args.batch else []),
                            *(["--threads", str(args.threads)] if args.threads else []),
                            *(["--preset", args.preset] if args.preset else []),
                        ]
                    )
                    if child.returncode != 0 or child.peak_rss_mib is None:
                        raise SystemExit(f"worker run failed: {child.stderr.strip()}")
                    summary_child = json.loads(child.stdout.strip().splitlines()[-1])
                    result.rss[name] = {
                        "frames": summary_child["frames"],
                        "fps": summary_child["fps"],
                        "peak_rss_mib": round(child.peak_rss_mib, 1),
                    }
            growth = result.rss["long"]["peak_rss_mib"] / result.rss["short"]["peak_rss_mib"] - 1
            result.ratios["peak RSS long/short - 1"] = round(growth, 4)
            result.targets.append(
                _target(f"peak RSS growth, {args.long}x longer", round(growth, 4), 0.10, False, "")
            )
        pipe = summary.pipeline
        h, w = model.input_hw
        oh, ow = model.output_shape[2:]
        result.device_bytes_per_frame = {
            "worker": dict(pipe.get("device_bytes_per_frame", {})),
            "plain model (tutorial, unfused worker)": {
                "in": 3 * h * w * 4,
                "out": CLASSES * oh * ow * 4,
            },
        }
        # The arithmetic of the best any pipeline could do here: every core busy all the time.
        cores = os.cpu_count() or 1
        total = phases["worker"].cpu_s * 1000 / max(summary.frames, 1)
        model_ms = 1000 * c_cpu / max(c_frames, 1)
        best_fps = 1000 * cores / total
        need = 1000 * cores / (0.75 * ceil_fps) if ceil_fps else 0.0
        result.bound = {
            "cores": cores,
            "worker_cpu_ms_per_frame": round(total, 2),
            "model_cpu_ms_per_frame": round(model_ms, 2),
            "host_cpu_ms_per_frame": round(total - model_ms, 2),
            "best_fps_at_full_cores": round(best_fps, 2),
            "best_ratio_to_ceiling": _ratio(best_fps, ceil_fps),
            "cpu_ms_per_frame_allowed_for_0.75x": round(need, 2),
            "host_ms_allowed_for_0.75x": round(need - model_ms, 2),
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
    ]
    rows.append(("model-only ceiling", r.runs["ceiling"], p["ceiling"]))
    if "fused ceiling" in r.runs:
        rows.append(("fused graph alone", r.runs["fused ceiling"], p["fused ceiling"]))
    rows.append(("decode alone", r.runs["decode ceiling"], p["decode ceiling"]))
    print("", file=out)
    print(
        f"{'run':<22}{'frames':>7}{'seconds':>9}{'fps':>8}{'load s':>8}{'fps+load':>9}"
        f"{'cores':>7}{'others':>7}{'RSS start':>11}{'peak':>6}",
        file=out,
    )
    for name, run_, ph in rows:
        load = run_.get("load_seconds")
        with_load = run_.get("fps_with_load")
        others = ph["others_busy"]
        print(
            f"{name:<22}{run_['frames']:>7}{run_['seconds']:>9.2f}{run_['fps']:>8.2f}"
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
        "    worker = load_model (read, check, session, probe run) + fused session; fps+load: "
        "both included\n"
        "  cores: this process's CPU time (all threads) / wall time, out of "
        f"{os.cpu_count()}; others: the same for every other process\n"
        "  RSS: when the phase began / its own high-water mark"
        + ("" if all(v["peak_is_phase"] for v in p.values()) else " (NOT reset: process peak)"),
        file=out,
    )
    w = r.runs["worker"]
    pipe = w.get("pipeline", {})
    print(
        f"  worker: batch {w['batch']}, {w['threads']} intra-op threads (no spinning), "
        f"{'fused' if pipe.get('fused') else 'UNFUSED'} graph, IO binding "
        f"{'on' if pipe.get('io_binding') else 'off'}, decoder {pipe.get('decoder')}, encoder "
        f"{pipe.get('encoder')}; tutorial: ORT default options; ceiling: batch "
        f"{r.runs['ceiling']['batch']}, plain model, float32 in",
        file=out,
    )
    busy = {
        k: v["others_busy"]
        for k, v in p.items()
        # rss check: its CPU is a child's, counted as "others"; its timing is not a result.
        if k not in ("build inputs", "worker load", "rss check")
        and (v["others_busy"] or 0.0) > NOISY_CORES
    }
    if busy:
        print(
            "  WARNING: other processes were busy during "
            + ", ".join(f"{k} ({v:.2f} cores)" for k, v in busy.items())
            + ": those timings are disturbed; rerun on a quiet machine",
            file=out,
        )
    print("", file=out)
    print("ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in r.ratios.items()), file=out)
    print("targets (issue 3):", file=out)
    for t in r.targets:
        rel = "" if t["met"] else f" by {t['missed_by']:.3f}"
        pct = f"{100 * t['value']:+.1f}%" if t["unit"] == "" else f"{t['value']:.2f}x"
        shown = f"{t['goal']:.2f}x" if t["unit"] else f"{100 * t['goal']:.0f}%"
        goal = f"{'>=' if t['higher'] else '<'} {shown}"
        print(
            f"  {t['name']:<32}{pct:>9}  ({goal})  {'met' if t['met'] else 'MISSED' + rel}",
            file=out,
        )
    for who, sent in r.device_bytes_per_frame.items():
        if sent:
            print(
                f"  bytes per frame to / from the device, {who}: {sent['in']:,} / {sent['out']:,}",
                file=out,
            )
    if r.rss:
        short, long_ = r.rss["short"], r.rss["long"]
        print(
            f"  peak RSS of `worker run` (a fresh process each): {short['frames']} frames "
            f"{short['peak_rss_mib']:.0f} MiB ({short['fps']:.1f} fps), {long_['frames']} frames "
            f"{long_['peak_rss_mib']:.0f} MiB ({long_['fps']:.1f} fps)",
            file=out,
        )
    print(f"this process's peak RSS: {r.peak_rss_mib_process:.0f} MiB", file=out)

    b = r.bound
    print("", file=out)
    print("where the CPU goes (the worker run, ms of CPU per frame, all threads):", file=out)
    print(
        "  "
        + ", ".join(f"{k} {v:.1f}" for k, v in r.cpu_ms_per_frame.items())
        + f"  (sum {sum(r.cpu_ms_per_frame.values()):.1f}; "
        f"process {b['worker_cpu_ms_per_frame']:.1f})",
        file=out,
    )
    print(
        f"  the model alone costs {b['model_cpu_ms_per_frame']:.1f} ms CPU per frame (ceiling "
        f"run); decode, resize, in-graph pre/post, drawing, encoding and Python add "
        f"{b['host_cpu_ms_per_frame']:.1f}",
        file=out,
    )
    print(
        f"  bound: {b['cores']} cores x 1000 / {b['worker_cpu_ms_per_frame']:.1f} ms = "
        f"{b['best_fps_at_full_cores']:.1f} fps if every core were busy all the time = "
        f"{b['best_ratio_to_ceiling']:.2f}x the ceiling; 0.75x needs <= "
        f"{b['cpu_ms_per_frame_allowed_for_0.75x']:.1f} ms CPU per frame, i.e. <= "
        f"{b['host_ms_allowed_for_0.75x']:.1f} ms for everything but the model",
        file=out,
    )

    def stage_line(title: str, stages: dict[str, float]) -> None:
        total = sum(stages.values())
        parts = ", ".join(f"{k} {v:.1f}" for k, v in stages.items())
        print(f"{title}: {parts}  (sum {total:.1f})", file=out)

    print("", file=out)
    print("ms per frame (wall)", file=out)
    stage_line("  tutorial loop", r.tutorial_ms_per_frame)
    stage_line("    postprocess", r.tutorial_postprocess_ms_per_frame)
    stage_line("  worker stages, sequential", r.worker_stage_ms_per_frame)
    print(
        "    (the worker's own code on one thread: decode = PyAV, resize = cv2 to 512x512 uint8, "
        "model = the fused graph per frame of a batch, annotate = restore + blend + coverage, "
        "encode = BGR->I420 + libx264 at the worker's preset)",
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
    ap.add_argument("--preset", help="libx264 preset for the worker (default: the worker's)")
    ap.add_argument(
        "--long", type=int, default=10, help="the long video is the short one N times (0: skip)"
    )
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    ap.add_argument(
        "--json", action="store_true", help="print the result as JSON on stdout (table to stderr)"
    )
    args = ap.parse_args(argv)
    if args.frames < 1 or args.batch < 0 or args.threads < 0 or args.long < 0:
        ap.error("--frames must be positive; --batch, --threads and --long >= 0")
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
