"""``worker bench``: how fast one model runs here, per provider, batch size, IO binding and
fusion, and whether the fast paths still give the same answers.

What is timed is the inference stage as ``worker run`` runs it (``worker.stages.Inferencer``):
frames already decoded -> host preparation -> model -> answers at model resolution. Decode,
drawing and encoding are left out on purpose (``benchmarks/tutorial_vs_worker.py`` measures
the whole pipeline). Frames come from ``--input`` or, without it, the built-in sample scene.

The precision check runs the plain path (numpy preprocessing, ``session.run`` without IO
binding, numpy post-processing) against each fast one on the same frames.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from worker.errors import ProviderError, WorkerError

__all__ = ["add_arguments", "cmd_bench", "machine_busy_s", "model_alone"]


def add_arguments(b: argparse.ArgumentParser) -> None:
    """The flags of ``worker bench``; ``worker.cli`` makes the subparser."""
    b.add_argument("--model", type=Path, help="ONNX model (default: the demo model)")
    b.add_argument("--card", type=Path, help="model card JSON (default: <model>.json)")
    b.add_argument("--task", choices=["segment", "classify"])
    b.add_argument("--input", type=Path, help="video to take frames from (default: sample)")
    b.add_argument("--frames", type=int, default=32, help="frames to cycle through (32)")
    b.add_argument("--batch", help="batch sizes, comma-separated (default: 1, auto, 2 x auto)")
    b.add_argument("--threads", type=int, default=0, help="intra-op threads (0: cores)")
    b.add_argument("--seconds", type=float, default=1.5, help="time per configuration")
    b.add_argument("--providers", default="cuda,cpu", help="tried in turn; those that load")
    b.add_argument("--json", action="store_true", help="the result as JSON on stdout")
    b.add_argument("--debug", action="store_true", default=None, help="tracebacks on errors")


@dataclass
class Row:
    provider: str
    batch: int
    io_binding: bool
    fused: bool
    fps: float
    ms_per_frame: float
    bytes_in_per_frame: int
    bytes_out_per_frame: int


@dataclass
class Precision:
    provider: str
    frames: int
    measure: str  # "mask" or "top1"
    fused_agreement: float | None  # fused answers equal to the plain ones (None: not fused)
    fused_max_abs_diff: float | None  # classify: top-k scores; segment: none (masks only)
    binding_max_abs_diff: float  # raw output, IO binding vs session.run
    unfused_because: str | None = None


@dataclass
class BenchResult:
    model: str
    frames_from: str
    frame_size: tuple[int, int]
    frames: int
    rows: list[Row] = field(default_factory=list)
    precision: list[Precision] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)
    # provider -> fps of the plain model alone on ready-made float batches (``model_alone``)
    model_alone_fps: dict[str, float] = field(default_factory=dict)
    others_busy: float | None = None  # cores other processes used meanwhile


def machine_busy_s() -> float | None:
    """CPU seconds the whole machine spent busy, from /proc/stat (None where absent)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    guest = sum(ticks[8:10])  # already counted in user/nice
    return (sum(ticks) - idle - guest) / os.sysconf("SC_CLK_TCK")


def model_alone(
    run: Callable[[], object], frames_per_run: int, frames: int, rounds: int = 3
) -> tuple[int, float, float]:
    """A model alone: ``run`` (one model call on a ready-made batch of ``frames_per_run``
    frames) repeated over ``frames`` frames, after two warm-up calls (the first runs
    allocate); the fastest of ``rounds`` passes, as (frames, wall s, CPU s). What ``worker
    bench`` reports as the model alone, and the benchmarks as its ceiling."""
    for _ in range(2):
        run()
    runs = max(1, math.ceil(frames / frames_per_run))
    best = (math.inf, 0.0)
    for _ in range(rounds):
        c0, t0 = os.times(), time.perf_counter()
        for _ in range(runs):
            run()
        wall, c1 = time.perf_counter() - t0, os.times()
        if wall < best[0]:
            best = (wall, (c1.user - c0.user) + (c1.system - c0.system))
    return runs * frames_per_run, best[0], best[1]


def _frames(video: Path | None, n: int) -> tuple[list[Any], str]:
    from worker.stages.sample import robot_scene
    from worker.stages.source import VideoSource

    if video is None:
        return [robot_scene(i, 1280, 720) for i in range(n)], "sample scene 1280x720"
    source = VideoSource(video, max_frames=n)
    try:
        images = [f.image for f in source.frames()]
    finally:
        source.close()
    if not images:
        raise WorkerError(f"input '{video}': no frame could be decoded")
    return images, str(video)


def _throughput(infer: Any, frames: list[Any], batch: int, seconds: float) -> float:
    infer(frames[:batch])  # warm-up: buffers, arenas, the first-run shape learning
    done, i = 0, 0
    start = time.perf_counter()
    while True:
        infer([frames[(i + j) % len(frames)] for j in range(batch)])
        done += batch
        i += batch
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and done >= 2 * batch:
            return done / elapsed


def _precision(model: Any, frames: list[Any], batch: int, top_k: int) -> Precision:
    import numpy as np

    from worker.description import Speed
    from worker.ops.preprocess import preprocess
    from worker.stages.infer import Inferencer, plan_for

    plain = Inferencer(model, top_k=top_k, speed=Speed(fuse=False, io_binding=False, lanes=1))
    fast = Inferencer(
        model, top_k=top_k, speed=Speed(fuse=True, fuse_cache=False, lanes=1), batch=batch
    )
    step = model.batch or batch
    a, b = [], []
    for s in range(0, len(frames), step):
        a += plain(frames[s : s + step])
        b += fast(frames[s : s + step])
    x = preprocess(frames[:step], plan_for(model))
    bound = model.engine.run(x)
    unbound = model.engine.session.run(None, {model.engine.input_name: x})[0]
    binding_diff = float(np.abs(bound.astype(np.float64) - unbound.astype(np.float64)).max())
    measure = "top1" if model.kind == "scores" else "mask"
    agreement: float | None = None
    diff: float | None = None
    if fast.fused is not None:
        if measure == "top1":
            pairs = list(zip(a, b, strict=True))
            agreement = float(np.mean([p.top[0][0] == q.top[0][0] for p, q in pairs]))
            diffs = [
                abs(dict(p.top)[i] - s) for p, q in pairs for i, s in q.top if i in dict(p.top)
            ]
            diff = max(diffs) if diffs else 0.0
        else:
            same = [
                np.mean(p.class_map == q.class_map)
                if p.bits is None or q.bits is None
                else np.mean(p.bits.astype(np.uint32) == q.bits.astype(np.uint32))
                for p, q in zip(a, b, strict=True)
            ]
            agreement = float(np.mean(same))
    return Precision(
        provider=model.engine.provider,
        frames=len(frames),
        measure=measure,
        fused_agreement=agreement,
        fused_max_abs_diff=diff,
        binding_max_abs_diff=binding_diff,
        unfused_because=fast.why_unfused,
    )


def _alone(model: Any, frames: list[Any], batch: int, seconds: float) -> float:
    """fps of the plain model alone on a ready-made batch of these frames, about ``seconds``
    long."""
    from worker.ops.preprocess import preprocess
    from worker.stages.infer import plan_for

    step = model.batch or batch
    x = preprocess([frames[i % len(frames)] for i in range(step)], plan_for(model))
    started = time.perf_counter()
    model.engine.run(x)
    once = max(time.perf_counter() - started, 1e-6)
    n, wall, _cpu = model_alone(lambda: model.engine.run(x), step, round(seconds / once) * step)
    return round(n / wall, 2)


def bench(args: argparse.Namespace) -> BenchResult:
    from worker.description import Speed
    from worker.models import demo_model_path, load_model
    from worker.stages.infer import Inferencer
    from worker.stages.runner import default_batch

    path = args.model or demo_model_path(args.task or "segment")
    frames, where = _frames(args.input, max(args.frames, 1))
    h, w = frames[0].shape[:2]
    result = BenchResult(str(path), where, (w, h), len(frames))
    busy0, t0 = machine_busy_s(), os.times()
    for provider in [p.strip() for p in args.providers.split(",") if p.strip()]:
        if provider not in ("cuda", "cpu"):
            raise WorkerError(f"--providers: '{provider}' is not cuda or cpu")
        try:
            model = load_model(
                path, card=args.card, task=args.task, provider=provider, threads=args.threads
            )
        except ProviderError as e:
            result.unavailable[provider] = str(e)
            continue
        if args.batch:
            batches = sorted({int(v) for v in str(args.batch).split(",")})
        elif model.batch is not None:
            batches = [model.batch]
        else:
            auto = default_batch(model)
            batches = sorted({1, auto, 2 * auto})
        if model.batch is not None and batches != [model.batch]:
            raise WorkerError(f"--batch: the model's batch is fixed at {model.batch}")
        for batch in batches:
            for binding in (True, False):
                for fused in (True, False):
                    # One caller: each run gets every core (a pipeline's lanes share them).
                    speed = Speed(fuse=fused, io_binding=binding, fuse_cache=False, lanes=1)
                    infer = Inferencer(model, speed=speed, batch=batch)
                    fps = _throughput(infer, frames, batch, args.seconds)
                    n = max(infer.frames, 1)
                    result.rows.append(
                        Row(
                            provider,
                            batch,
                            binding,
                            infer.fused is not None,
                            round(fps, 2),
                            round(1000 / fps, 2),
                            round(infer.bytes_in / n),
                            round(infer.bytes_out / n),
                        )
                    )
        result.precision.append(_precision(model, frames, batches[-1], 5))
        result.model_alone_fps[provider] = _alone(model, frames, batches[-1], args.seconds)
    busy1, t1 = machine_busy_s(), os.times()
    if busy0 is not None and busy1 is not None:
        wall = t1.elapsed - t0.elapsed
        mine = (t1.user - t0.user) + (t1.system - t0.system)
        result.others_busy = round(max(0.0, (busy1 - busy0) - mine) / max(wall, 1e-9), 2)
    return result


def render(r: BenchResult) -> str:
    lines = [
        f"model: {r.model}",
        f"frames: {r.frames} from {r.frames_from} ({r.frame_size[0]}x{r.frame_size[1]})",
        "",
        f"{'provider':<9}{'batch':>6}{'binding':>9}{'fused':>7}{'fps':>9}{'ms/frame':>10}"
        f"{'B in/frame':>12}{'B out/frame':>13}",
    ]
    for row in r.rows:
        lines.append(
            f"{row.provider:<9}{row.batch:>6}{'on' if row.io_binding else 'off':>9}"
            f"{'yes' if row.fused else 'no':>7}{row.fps:>9.1f}{row.ms_per_frame:>10.2f}"
            f"{row.bytes_in_per_frame:>12}{row.bytes_out_per_frame:>13}"
        )
    for provider, why in r.unavailable.items():
        lines.append(f"{provider:<9} not available: {why}")
    for provider, fps in r.model_alone_fps.items():
        lines.append(f"{provider:<9} model alone (ready-made float batches): {fps:.1f} fps")
    lines += [
        "  fps: the inference stage (host prep + model + answers) on decoded frames;",
        "  B in/out: bytes copied to / from the inference device per frame",
        "",
        "precision (fast paths vs plain: numpy pre/post, session.run without IO binding)",
    ]
    for p in r.precision:
        if p.fused_agreement is None:
            fused = f"not fused ({p.unfused_because})"
        else:
            fused = f"fused {p.measure} agreement {100 * p.fused_agreement:.3f}%"
            if p.fused_max_abs_diff is not None:
                fused += f", top-k score max abs diff {p.fused_max_abs_diff:.2e}"
        lines.append(
            f"  {p.provider}: {fused}; IO binding vs session.run: raw output max abs diff "
            f"{p.binding_max_abs_diff:.2e} ({p.frames} frames)"
        )
    if r.others_busy is not None:
        lines.append(
            f"other processes used {r.others_busy:.2f} cores meanwhile"
            + (" (timings disturbed)" if r.others_busy > 0.1 else "")
        )
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.frames < 1 or args.seconds <= 0 or args.threads < 0:
        raise WorkerError("--frames and --seconds must be positive, --threads >= 0")
    result = bench(args)
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(render(result))
    return 0
