"""Tutorial-style sequential loop vs. the worker vs. the model alone, same video, same model.

Everything is built in a temporary directory (nothing downloaded, nothing committed):

- a 720p H.264 MP4 of the textured, moving ``walkers`` scene (``speed_inputs``);
- the ``seg21`` model of ``shapes``: NCHW float32 [N,3,512,512] (dynamic batch) -> logits
  [N,21,128,128] (stride 4, no Resize in the graph), random weights from a fixed seed;

- the same video played ``--long`` times in a row (packets copied, not re-encoded).

Then, in this one process and one after the other:

1. the loop a hand-written tutorial uses (``tutorial.py``), each stage timed per frame;
2. the worker: ``worker.models.load_model`` then ``worker.stages.run_file`` with its defaults (fused
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
import json
import os
import resource
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import numpy as np
from bench_support import (
    Phase,
    Stages,
    ThreadSampler,
    environment,
    measure,
    repeat_video,
    run_worker,
)
from components import decode_alone, fused_alone, plain_alone, worker_stages
from speed_inputs import CLASSES, FPS, INPUT, SHAPE, write_inputs
from speed_report import Result, fps_of, ratio, report, target
from tutorial import tutorial_loop

from worker.description import RunDescription
from worker.models import load_model
from worker.stages import default_batch, run_file
from worker.stages.infer import Inferencer

Array = np.ndarray[Any, Any]


def run(args: argparse.Namespace, out: IO[str]) -> Result:
    tmp = Path(tempfile.mkdtemp(prefix="bench-tutorial-vs-worker-"))
    phases: dict[str, Phase] = {}
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
                "codec": "h264 (libx264 ultrafast crf 23)",
                "bytes": video.stat().st_size,
                "long_frames": long_frames,
            },
            model={
                "path": str(model_path),
                "input": [None, 3, INPUT, INPUT],
                "output": [None, CLASSES, INPUT // 4, INPUT // 4],
                "output_note": "logits at stride 4, no Resize in the graph",
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
            tut = tutorial_loop(
                SHAPE, model_path, video, tmp / "tutorial.mp4", stages=t_stages, sub=t_sub
            )
        t_frames, session_s = tut["frames"], tut["session_s"]
        t_loop = ph.wall_s - session_s
        result.tutorial_ms_per_frame = t_stages.per_frame_ms(t_frames)
        result.tutorial_postprocess_ms_per_frame = t_sub.per_frame_ms(t_frames)

        # 2. the worker; the fused session is built with the model (load time), as a
        # long-lived worker builds it once per model, not per video.
        described = {"batch": args.batch, **({"preset": args.preset} if args.preset else {})}
        run_described = RunDescription().overlay(described)
        with measure("worker load", phases) as ph:
            model = load_model(model_path, provider="cpu", threads=args.threads)
            batch = default_batch(model, args.batch)
            infer = Inferencer(model, speed=run_described.speed, batch=batch)
        load_s = ph.wall_s
        sampler = ThreadSampler()
        with measure("worker", phases) as ph, sampler:
            summary = run_file(
                video,
                model,
                run_described,
                output=tmp / "worker.mp4",
                results=tmp / "worker.jsonl",
            )
        w_run = ph.wall_s
        result.cpu_ms_per_frame = sampler.per_frame_ms(summary.frames)

        # 3. the model alone, then the fused graph alone
        with measure("ceiling", phases):
            c_frames, c_s, c_cpu = plain_alone(model, batch, args.frames)
        f_frames, f_s, f_cpu = 0, 0.0, 0.0
        if infer.fused is not None:
            # One caller here: one lane, so that each run gets every core.
            one_caller = run_described.speed.model_copy(update={"lanes": 1})
            one = Inferencer(model, speed=one_caller, batch=batch)
            with measure("fused ceiling", phases):
                f_frames, f_s, f_cpu = fused_alone(one, batch, args.frames)

        with measure("decode ceiling", phases):
            d_frames, d_s, d_cpu = decode_alone(video)

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
        tut_fps = fps_of(t_frames, t_loop)
        wrk_fps = fps_of(summary.frames, w_run)
        ceil_fps = fps_of(c_frames, c_s)
        result.runs = {
            "tutorial": {
                "frames": t_frames,
                "fps": tut_fps,
                "seconds": round(t_loop, 3),
                "load_seconds": round(session_s, 3),
                "fps_with_load": fps_of(t_frames, t_loop + session_s),
                "what": "VideoCapture open .. VideoWriter release; load = InferenceSession()",
            },
            "worker": {
                "frames": summary.frames,
                "fps": wrk_fps,
                "seconds": round(w_run, 3),
                "load_seconds": round(load_s, 3),
                "fps_with_load": fps_of(summary.frames, w_run + load_s),
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
                "fps": fps_of(f_frames, f_s),
                "seconds": round(f_s, 3),
                "cpu_ms_per_frame": round(1000 * f_cpu / f_frames, 2),
                "batch": batch,
                "what": "the fused graph on ready-made uint8 frames at 512x512",
            }
        result.runs["decode ceiling"] = {
            "frames": d_frames,
            "fps": fps_of(d_frames, d_s),
            "seconds": round(d_s, 3),
            "cpu_ms_per_frame": round(1000 * d_cpu / max(d_frames, 1), 2),
            "what": "VideoSource.frames(): PyAV decode with the worker's threads + BGR",
        }
        result.ratios = {
            "worker/tutorial": ratio(wrk_fps, tut_fps),
            "worker/ceiling": ratio(wrk_fps, ceil_fps),
            "tutorial/ceiling": ratio(tut_fps, ceil_fps),
            # The GPU target's form: end to end against the slower of the two ceilings.
            "worker/min(decode, model)": ratio(wrk_fps, min(ceil_fps, fps_of(d_frames, d_s))),
        }
        result.targets = [
            target("worker/tutorial", result.ratios["worker/tutorial"], 2.0, True, "x"),
            target("worker/ceiling", result.ratios["worker/ceiling"], 0.75, True, "x"),
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
                target(f"peak RSS growth, {args.long}x longer", round(growth, 4), 0.10, False, "")
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
            "best_ratio_to_ceiling": ratio(best_fps, ceil_fps),
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
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


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
