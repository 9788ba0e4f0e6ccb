"""The runs compared by ``tutorial_vs_worker.py``: the tutorial loop, the model-only and
fused-graph ceilings, decoding alone, and the worker's stages one after the other."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import IO, Any

import cv2
import numpy as np
import onnxruntime as ort
from bench_support import Stages
from speed_inputs import FPS, IMAGENET_MEAN, IMAGENET_STD, INPUT, SEED
from tqdm import tqdm

from worker.models import Model, voc_palette
from worker.stages import Annotator, VideoSource, VideoWriter
from worker.stages.atomic import AtomicFile
from worker.stages.frames import Frame
from worker.stages.infer import Inferencer
from worker.stages.writer import ResultsWriter

Array = np.ndarray[Any, Any]

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
