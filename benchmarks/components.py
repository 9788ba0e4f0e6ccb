"""The parts of a video run, each alone in this process: the model (plain, and fused), decoding,
x264 encoding, the host work no pipeline can skip (resize in, the model's own pre- and
post-processing, draw out), and the worker's own
stages one after the other. Their CPU costs add up to the bound a pipeline cannot beat on
this machine's cores; ``speed_matrix.py`` and ``tutorial_vs_worker.py`` both measure with
these (the model alone with ``worker bench``'s own ``model_alone``).

Each returns ``(frames, wall s, CPU s)``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from child_support import Stages

from worker.cli.bench import model_alone
from worker.description import Encode, Look, Speed
from worker.models import Model
from worker.ops.preprocess import warp
from worker.stages import Frame, Recorder, VideoSource, VideoWriter, painters_for, plan_for
from worker.stages.atomic import AtomicFile
from worker.stages.infer import Inferencer
from worker.stages.writer import ResultsWriter

__all__ = [
    "decode_alone",
    "drawn_images",
    "encode_alone",
    "fused_alone",
    "host_alone",
    "plain_alone",
    "post_alone",
    "sample_images",
    "worker_stages",
]

Array = np.ndarray[Any, Any]
Timing = tuple[int, float, float]
SEED = 20240601


def _timed(body: Callable[[], int]) -> Timing:
    c0, t0 = os.times(), time.perf_counter()
    n = body()
    c1 = os.times()
    return n, time.perf_counter() - t0, (c1.user - c0.user) + (c1.system - c0.system)


def plain_alone(model: Model, batch: int, frames: int) -> Timing:
    """The plain model alone: ``Engine.run`` (IO binding, the worker's session settings) on a
    ready-made float32 batch."""
    h, w = model.input_hw
    n = model.batch or batch
    shape = (n, 3, h, w) if model.graph.layout == "NCHW" else (n, h, w, 3)
    x = np.random.default_rng(SEED).standard_normal(shape).astype(np.float32)
    return model_alone(lambda: model.engine.run(x), n, frames)


def fused_alone(infer: Inferencer, batch: int, frames: int) -> Timing:
    """The fused graph alone on ready-made uint8 frames (planes for an NCHW model): the model
    plus the in-graph normalisation (and colour order, NHWC) and post-processing."""
    assert infer.fused is not None
    n = infer.model.batch or batch
    shape = infer.fused.input_shape(n, infer.fused.spec.hw)
    x = np.random.default_rng(SEED).integers(0, 256, shape, dtype=np.uint8)
    specs = infer.fused.output_specs(n)
    return model_alone(lambda: infer.engine.run_all(x, specs, fixed=specs is not None), n, frames)


def post_alone(model: Model, images: list[Array], frames: int, rounds: int = 5) -> float:
    """CPU ms a frame that the model's own pre- and post-processing add to the plain model,
    on real frames: its input normalised, and its output made an answer (argmax, top-k, a
    detector's boxes decoded and NMS, whose work grows with what the frame shows: on noise
    it is nearly free). The fused graph and the answers made of its outputs, on frames
    resized beforehand (the resize is host work, timed apart), less the plain model on
    ready-made batches, both with the worker's session settings for a lane: the median of
    ``rounds`` differences, each pass of ``frames`` taken in turn (a difference of two noisy
    times)."""
    # One intra-op thread each, as a lane runs them: the difference is steadier than with
    # every core's threads waking and waiting.
    lanes = os.cpu_count() or 1
    infer = Inferencer(model, speed=Speed(lanes=lanes), batch=1)
    engine = model.engine.derive(str(model.path), name="plain", lanes=lanes)
    staged = [infer.stage([img]) for img in images]
    n, h, w = 1, *model.input_hw
    shape = (n, 3, h, w) if model.graph.layout == "NCHW" else (n, h, w, 3)
    x = np.random.default_rng(SEED).standard_normal(shape).astype(np.float32)

    def fused() -> int:
        for i in range(frames):
            infer.answers(infer.run_staged(staged[i % len(staged)]), 1)
        return frames

    def plain() -> int:
        for _ in range(frames):
            engine.run(x)
        return frames

    fused(), plain()  # the first runs allocate
    diffs = []
    for _ in range(rounds):
        nf, _, cf = _timed(fused)
        np_, _, cp = _timed(plain)
        diffs.append(1000 * (cf / nf - cp / np_))
    return max(0.0, sorted(diffs)[len(diffs) // 2])


def decode_alone(video: Path) -> Timing:
    """Decoding alone, as the worker's source does it (threads, BGR conversion)."""

    def body() -> int:
        source = VideoSource(video)
        try:
            return sum(1 for _ in source.frames())
        finally:
            source.close()

    return _timed(body)


def sample_images(video: Path, n: int = 50) -> list[Array]:
    """The first ``n`` decoded frames (what the encoder and the host work are timed on)."""
    source = VideoSource(video, max_frames=n)
    try:
        return [f.image for f in source.frames()]
    finally:
        source.close()


def drawn_images(model: Model, images: list[Array]) -> list[Array]:
    """``images`` as every pipeline's video gets them: each drawn with its own answer (the
    mask blended, the boxes and their captions, the labels). What x264 is timed on: what a
    frame shows changes its cost (drawn boxes and captions are edges x264 must code)."""
    infer = Inferencer(model, speed=Speed(lanes=1), batch=1)
    recorder = Recorder(model, None)
    painters = painters_for(model, Look(), recorder)
    out = []
    for i, img in enumerate(images):
        frame = Frame(index=i, pts=i, time=i / 25, image=img.copy())
        answer = infer([frame.image])[0]
        recorder.record(frame, answer)  # a detector's painter draws what was recorded
        out.append(painters.draw(frame, answer).copy())  # the painter may reuse its buffer
    return out


def encode_alone(video: Path, images: list[Array], frames: int) -> Timing:
    """x264 alone, as the worker encodes (its defaults), on ``images`` (real decoded frames;
    drawn, ``drawn_images``, for what a pipeline encodes)."""
    source = VideoSource(video)
    info = source.info
    source.close()

    def body() -> int:
        target = AtomicFile(Path(tempfile.mkdtemp()) / "e.mp4", "bench")
        out = VideoWriter(target, info, Encode(encoder="libx264"))
        for i in range(frames):
            img = images[i % len(images)]
            out.write(Frame(index=i, pts=i, time=i / 25, image=img), img)
        out.close(flush=True)
        target.discard()
        return frames

    return _timed(body)


def host_alone(model: Model, images: list[Array], frames: int) -> Timing:
    """The host work no pipeline can skip: the resize to the model's input, and the answer
    drawn onto the frame (the mask mapped and blended, or the labels written)."""
    answer = Inferencer(model, batch=1)(images[:1])[0]
    recorder = Recorder(model, None)
    # A detector's painter draws the boxes the recorder last kept: the first frame's, on
    # every frame (unrecorded, it drew none, and the bound left the boxes out).
    recorder.record(Frame(index=0, pts=0, time=0.0, image=images[0]), answer)
    painters = painters_for(model, Look(), recorder)
    plan = plan_for(model)

    def body() -> int:
        for i in range(frames):
            img = images[i % len(images)]
            warp([img], plan.hw, plan.resize, plan.crop_from)
            painters.draw(Frame(index=i, pts=i, time=i / 25, image=img), answer)
        return frames

    return _timed(body)


def worker_stages(model: Model, video: Path, tmp: Path, batch: int, stages: Stages) -> int:
    """The worker's own stage code (fused path), one stage after the other on this thread;
    returns frames. Wall time per stage: decode threads and ONNX Runtime's pool still help."""
    source = VideoSource(video)
    infer = Inferencer(model, speed=Speed(lanes=1), batch=batch)  # one caller: every core
    recorder = Recorder(model, None)
    painters = painters_for(model, Look(), recorder)
    video_file = AtomicFile(tmp / "stages.mp4", "output")
    results_file = AtomicFile(tmp / "stages.jsonl", "results")
    writer = VideoWriter(video_file, source.info, Encode(encoder="libx264"))
    results = ResultsWriter(results_file)
    n = 0
    clock = time.perf_counter

    def flush(pending: list[Frame]) -> None:
        t0 = clock()
        x = infer.stage([f.image for f in pending])
        t1 = clock()
        outs = infer.run_staged(x)
        t2 = clock()
        answers = infer.answers(outs, len(x))
        t3 = clock()
        stages.add("resize (host)", t1 - t0)
        stages.add("model (fused)", t2 - t1)
        stages.add("answers", t3 - t2)
        for frame, answer in zip(pending, answers, strict=True):
            t0 = clock()
            record = recorder.record(frame, answer)
            image = painters.draw(frame, answer)
            t1 = clock()
            writer.write(frame, image)
            t2 = clock()
            results.write(record)
            t3 = clock()
            stages.add("record and draw", t1 - t0)
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
