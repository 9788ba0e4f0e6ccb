"""The tutorial loop vs the worker vs the model alone, on four model shapes people ship.

    python benchmarks/speed_matrix.py [--seconds 6] [--rounds 2] [--json]

Shapes: ``shapes.SHAPES`` (``onnx.helper``, random weights from a fixed seed).

Input: a textured, moving 1280x720 scene (walkers over noisy pavement, its bitrate printed).
Per shape, each in a fresh process and alternating ``--rounds`` times: the tutorial loop
(``cv2.VideoCapture`` -> numpy -> ``onnxruntime`` with its defaults -> the post-processing a
tutorial writes for that output, at frame size -> ``cv2.VideoWriter('mp4v')``) and ``worker
run`` (its defaults; H.264 out). Also each alone in this process: the model on ready-made
batches (the worker's session settings), decoding, and x264 encoding (of the frames drawn as
the worker draws them: what any pipeline's video encodes). Printed per shape: fps
of both (whole process) and their ratio, the worker's fps over the model alone, the worker's
CPU ms per frame split into model, post, decode, encode, host and the rest, the bound those
costs imply on this machine's cores (cores / (model + post + decode + encode + host) CPU s per
frame; post: the model's own pre- and post-processing on real frames, normalisation, argmax,
top-k, NMS; host: the resize to the model input and the drawing no pipeline can skip) and the
worker's share of it, the same bound with each part measured beside the others (``beside.py``:
the model while decoding + x264 + host work run flat out in another process, and those beside
the model; post at its cost alone),
the ceiling (the share of the bound any pipeline could reach on this clip: every part at its
beside cost, no idle core, the tutorial's start-up) and the worker's share of the ceiling,
the card ceiling (the same with the start-up no pipeline on the design card's packages can
go below: a fresh process importing numpy, OpenCV, ONNX Runtime, PyAV and pydantic-settings
and nothing else, measured here) and the worker's share of it, start-up to the first frame
(``--max-frames 1``, whole process), peak RSS, and an estimate of the least peak RSS on the
card's packages (the tutorial's plus what PyAV's and pydantic-settings' imports add) over
the tutorial's. The worker is byte-compiled first, as an installed wheel is, and runs one
frame of each shape before it is measured (its fused graph cached, as after any first run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from bench_support import ChildRun, compile_worker, run_child, run_worker
from beside import beside
from components import (
    decode_alone,
    drawn_images,
    encode_alone,
    host_alone,
    plain_alone,
    post_alone,
    sample_images,
)
from shapes import SHAPES, build_model

from worker.allocator import tune_for_frames
from worker.models import load_model
from worker.stages import default_batch
from worker.testing import make_video, walkers

HERE = Path(__file__).resolve().parent


def _worker_args(model: Path, video: Path, max_frames: int | None) -> list[str]:
    args = ["run", "--input", str(video), "--model", str(model), "--output", "w.mp4",
            "--results", "w.jsonl", "--quiet", "--no-picture"]  # fmt: skip
    return args + (["--max-frames", str(max_frames)] if max_frames else [])


def _tutorial_args(name: str, model: Path, video: Path, max_frames: int) -> list[str]:
    return [str(HERE / "tutorial.py"), name, str(model), str(video), "t.mp4", str(max_frames)]


def _ok(run: ChildRun, what: str) -> ChildRun:
    if run.returncode != 0:
        raise SystemExit(f"{what} failed: {run.stderr[-2000:]}")
    return run


def alone(model_path: Path, video: Path, frames: int) -> dict[str, float]:
    """CPU ms per frame of the model (the worker's session settings, ready batches), its own
    pre- and post-processing on real frames (normalisation, argmax, top-k, NMS), decoding,
    x264 encoding (of the frames as drawn) and the host work (resize in, draw out), each alone
    here."""
    model = load_model(model_path, provider="cpu")
    batch = default_batch(model, 0)
    n, wall, cpu_model = plain_alone(model, batch, frames)
    nd, _, cpu_dec = decode_alone(video)
    images = sample_images(video)
    # x264 on the frames as drawn: what any pipeline's video encodes (on the frames as decoded
    # too, for the record: drawn boxes and captions cost x264 up to 40 % more here).
    ne, _, cpu_enc = encode_alone(video, drawn_images(model, images), frames)
    nu, _, cpu_undrawn = encode_alone(video, images, frames)
    nh, _, cpu_host = host_alone(model, images, frames)
    return {
        "model": 1000 * cpu_model / n,
        # Ten passes (five of each): a few dozen frames each keep them to seconds.
        "post": post_alone(model, images, max(10, frames // 8)),
        "model_fps_alone": n / max(1e-9, wall),
        "decode": 1000 * cpu_dec / nd,
        "encode": 1000 * cpu_enc / ne,
        "encode_undrawn": 1000 * cpu_undrawn / nu,
        "host": 1000 * cpu_host / nh,
    }


def parts_ms(solo: dict[str, float], encode: str = "encode") -> float:
    """CPU ms a frame of the parts ``alone`` measured, the bound's denominator: the model,
    its pre- and post-processing, decoding, x264 (``encode``: of the frames as drawn;
    ``"encode_undrawn"``: as decoded) and the host work."""
    return solo["model"] + solo["post"] + solo["decode"] + solo[encode] + solo["host"]


# A beside bound this far over the alone one is no measurement error of the beside kind.
_DISTURBED = 1.03

# What a fresh process of the tutorial imports, and what any worker on the design card's
# packages imports on top (PyAV to decode and encode, pydantic-settings for its settings).
_TUTORIAL_IMPORTS = "numpy, cv2, onnxruntime"
_CARD_IMPORTS = "av, pydantic_settings"
# Its peak RSS as run_child reads it (child_support imports nothing but sys), then the end
# the worker's command has (``worker.entry.command``): no pipeline need wait for the
# interpreter to tear the card's packages down (20-60 ms here), so neither does the floor.
_HWM = (
    f"import os, sys\nsys.path.insert(0, {str(HERE)!r})\n"
    "from child_support import print_peak_rss\nprint_peak_rss()\nos._exit(0)"
)


def card_imports(pairs: int) -> tuple[float, float, float]:
    """Seconds and MiB (peak RSS) that importing the card's packages the tutorial does without
    adds to a fresh process (medians of paired differences, alternating), and the seconds of
    a fresh process that imports them all and does nothing else (median): no pipeline on the
    card's packages starts faster, since imports hold the GIL (importing some in a thread
    beside the others is no faster)."""
    secs, mib, whole = [], [], []
    for i in range(pairs):
        runs = {}
        for extra in ("", _CARD_IMPORTS)[:: 1 if i % 2 else -1]:
            names = f"{_TUTORIAL_IMPORTS}, {extra}" if extra else _TUTORIAL_IMPORTS
            runs[extra] = _ok(run_child(["-c", f"import {names}\n{_HWM}"]), "imports")
        base, card = runs[""], runs[_CARD_IMPORTS]
        secs.append(card.wall_s - base.wall_s)
        mib.append((card.peak_rss_mib or 0) - (base.peak_rss_mib or 0))
        whole.append(card.wall_s)
    return statistics.median(secs), statistics.median(mib), statistics.median(whole)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=6.0, help="of 25 fps 720p video")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    cores = os.cpu_count() or 1
    # The parts alone and beside (this process and beside.py's) measured with the allocator
    # the worker command sets (worker.allocator); the tutorial keeps glibc's defaults.
    tune_for_frames()
    compile_worker()
    rows = []
    card_s, card_mib, imports_s = card_imports(max(5, 2 * a.rounds + 1))
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
            # A first run builds the fused graph and writes it to the cache, as a model's
            # first run anywhere does; every measured run finds it there.
            _ok(run_worker(_worker_args(model, video, 1), tmp), "worker run (warm-up)")
            for _ in range(a.rounds):
                tr = _ok(run_child(_tutorial_args(name, model, video, frames), tmp), "tutorial")
                tut["fps"].append(json.loads(tr.stdout)["frames"] / tr.wall_s)
                tut["rss"].append(tr.peak_rss_mib or 0)
                w = _ok(run_worker(_worker_args(model, video, None), tmp), "worker run")
                done = json.loads(w.stdout)["frames"]
                wrk["fps"].append(done / w.wall_s)
                wrk["cpu"].append(1000 * w.cpu_s / done)
                wrk["rss"].append(w.peak_rss_mib or 0)
                first = run_child(_tutorial_args(name, model, video, 1), tmp)
                tut["start"].append(_ok(first, "tutorial").wall_s)
                wrk["start"].append(
                    _ok(run_worker(_worker_args(model, video, 1), tmp), "worker run").wall_s
                )
            solo = alone(model, video, frames)
            # The model's pre- and post-processing at its cost alone beside the others too
            # (a detector's NMS is no part of beside.py's model loop, on ready batches).
            near = {**beside(model, video, frames), "post": solo["post"]}
            med = {k: statistics.median(v) for k, v in wrk.items()}
            tmed = {k: statistics.median(v) for k, v in tut.items()}
            parts = parts_ms(solo)
            bound = 1000 * cores / parts
            # The bound as it was until x264 was timed on drawn frames (on the frames as
            # decoded), for comparison across rounds.
            undrawn = 1000 * cores / parts_ms(solo, "encode_undrawn")
            beside_fps = 1000 * cores / sum(near.values())
            # The most any pipeline could do on this clip: every part at its cost beside the
            # others, no core ever idle, and a start-up no shorter than the tutorial's (which
            # imports and sets up less than any pipeline that decodes and encodes H.264).
            ceiling = frames / (frames / beside_fps + tmed["start"])
            # The same with the start-up no pipeline on the design card's packages can go
            # below: importing them (nothing else). And an estimate of its peak RSS: the
            # tutorial's plus what the card's imports add (a pipeline whose run holds less
            # than the tutorial's could go below it; x264's buffers against mp4v's and a
            # second lane's activations come on top).
            card_ceiling = frames / (frames / beside_fps + imports_s)
            rss_floor = tmed["rss"] + card_mib
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
                        "post": round(solo["post"], 1),
                        "decode": round(solo["decode"], 1),
                        "encode": round(solo["encode"], 1),
                        "encode_undrawn": round(solo["encode_undrawn"], 1),
                        "host": round(solo["host"], 1),
                        "rest": round(med["cpu"] - parts, 1),
                        "total": round(med["cpu"], 1),
                    },
                    "bound_fps": round(bound, 1),
                    "worker_vs_bound": round(med["fps"] / bound, 2),
                    "worker_vs_bound_undrawn": round(med["fps"] / undrawn, 2),
                    # The same parts measured beside one another (beside.py): model beside
                    # decode + encode + host, and those beside the model.
                    "beside_ms": {k: round(v, 1) for k, v in near.items()},
                    "bound_beside_fps": round(beside_fps, 1),
                    # Beside one another the parts cost more than alone; a beside bound over
                    # the alone one says a measurement alone was disturbed (another process
                    # busy): that row's bound and ceilings do not compare with the others'.
                    "disturbed": beside_fps > _DISTURBED * bound,
                    "ceiling_fps": round(ceiling, 1),
                    "ceiling_vs_bound": round(ceiling / bound, 2),
                    "worker_vs_ceiling": round(med["fps"] / ceiling, 2),
                    "card_imports": {
                        "s": round(card_s, 3),
                        "mib": round(card_mib),
                        "all_s": round(imports_s, 3),
                    },
                    "card_ceiling_vs_bound": round(card_ceiling / bound, 2),
                    "worker_vs_card_ceiling": round(med["fps"] / card_ceiling, 2),
                    "rss_floor_vs_tutorial": round(rss_floor / tmed["rss"], 2),
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
          f"processes, median of {a.rounds}, alternating; the card's imports beyond the "
          f"tutorial's: {card_s:.3f} s, {card_mib:.0f} MiB; importing them all: "
          f"{imports_s:.3f} s")  # fmt: skip
    print(f"{'shape':<15} {'tut fps':>8} {'wrk fps':>8} {'x tut':>6} {'x model':>8} "
          f"{'model/post/dec/enc/host/rest':>28} {'bound':>6} {'x bound':>8} {'beside':>7} "
          f"{'ceiling':>8} {'x ceil':>7} {'card ceil':>10} {'x card':>7} {'start s':>11} "
          f"{'RSS MiB':>10} {'RSS floor':>10}")  # fmt: skip
    for r in rows:
        c = r["cpu_ms"]
        split = "/".join(
            f"{c[k]:.1f}" if k == "post" else f"{c[k]:.0f}"
            for k in ("model", "post", "decode", "encode", "host", "rest")
        )
        st, rss = r["startup_s"], r["peak_rss_mib"]
        print(f"{r['shape']:<15} {r['tutorial_fps']:>8.1f} {r['worker_fps']:>8.1f} "
              f"{r['worker_vs_tutorial']:>6.2f} {r['worker_vs_model']:>8.2f} {split:>28} "
              f"{r['bound_fps']:>6.1f} {r['worker_vs_bound']:>8.2f} "
              f"{r['bound_beside_fps']:>7.1f} "
              f"{r['ceiling_vs_bound']:>8.2f} {r['worker_vs_ceiling']:>7.2f} "
              f"{r['card_ceiling_vs_bound']:>10.2f} {r['worker_vs_card_ceiling']:>7.2f} "
              f"{st['tutorial']:>5.2f}/{st['worker']:<5.2f} "
              f"{rss['tutorial']:>4}/{rss['worker']:<5} "
              f"{r['rss_floor_vs_tutorial']:>9.2f}x")  # fmt: skip
    print("x264 on the frames as decoded, not drawn (the bound's encode until it was timed on "
          "drawn frames): " + ", ".join(
              f"{r['shape']} {r['cpu_ms']['encode_undrawn']:.1f} ms, x bound "
              f"{r['worker_vs_bound_undrawn']:.2f}" for r in rows))  # fmt: skip
    for r in rows:
        if r["disturbed"]:
            print(f"{r['shape']}: its parts alone measured slower than beside one another "
                  f"(bound {r['bound_fps']:.1f} fps alone, {r['bound_beside_fps']:.1f} beside): "
                  "something else was busy; its bound and ceilings do not compare")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
