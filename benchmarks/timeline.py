"""Where a whole run's wall time goes: the first frame out, the frames after it, the end.

    python benchmarks/timeline.py [--seconds 8] [--runs 3] [--shapes seg21,...]

Per shape (``shapes.SHAPES``), ``worker run`` on the textured 720p walkers clip, a fresh
process each run as the console script runs it, timed from its launch (the system's
monotonic clock, which parent and child share): when each frame reaches the video writer. A
whole run is then three parts:

- **first out**: imports, settings, the input and the model opened, the first frame decoded,
  run (on every core: the engine's opening run) and handed to the encoder;
- **steady**: the frames after it, at the mean interval between frames over the middle 80 %
  of the run;
- **end**: from the last frame at the writer to the process gone (x264's last frames, the
  summary picture, the files renamed, the exit).

And per frame, inside the lanes (each lane thread's own CPU time): the model run (ONNX
Runtime, ``Engine.run_all``), the staging (resize, planes) and everything else a lane does.

Against the speed matrix's bound (cores / the parts measured alone, ``speed_matrix.alone``)
and the card's imports (a fresh process importing the design card's packages and nothing
else, ``speed_matrix.card_imports``), it prints what share of the bound the steady interval
reaches by itself and what the whole run reaches with its start and end: the gap between the
two is what the clip's length makes the start cost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_support import compile_worker, run_child, walkers_720
from shapes import SHAPES, build_model
from speed_matrix import alone, card_imports, parts_ms

from worker.allocator import tune_for_frames

# The console script's command with marks: each frame's arrival at the video writer, and the
# lanes' CPU split, written as JSON to the file named by the first argument by an exit handler
# (the command runs them before it ends the process). The stage modules are patched when the
# CLI's main runs, after the entry point's own start (signals, allocator), as they are
# imported in a plain run.
_CHILD = """
import atexit, json, sys, time

to = sys.argv.pop(1)
marks = {"writes": [], "lanes": {"run": 0.0, "stage": 0.0, "lane": 0.0}}

def cpu_into(key, f):
    def timed(*a, **k):
        t = time.thread_time()
        try:
            return f(*a, **k)
        finally:
            marks["lanes"][key] += time.thread_time() - t
    return timed

def patch():
    from worker.models import engine
    from worker.stages import batching, infer, writer
    write = writer.VideoWriter.write
    def marked(*a, **k):
        marks["writes"].append(time.monotonic())
        return write(*a, **k)
    writer.VideoWriter.write = marked
    engine.Engine.run_all = cpu_into("run", engine.Engine.run_all)
    infer.Inferencer.stage = cpu_into("stage", infer.Inferencer.stage)
    lane = batching._Lanes._lane
    def whole_lane(self, name):
        try:
            return lane(self, name)
        finally:
            marks["lanes"]["lane"] += time.thread_time()
    batching._Lanes._lane = whole_lane

def save():
    with open(to, "w") as f:
        json.dump(marks, f)

import worker.cli.main
cli = sys.modules["worker.cli.main"]
main = cli.main
def patched_main(*a, **k):
    patch()
    return main(*a, **k)
cli.main = patched_main
atexit.register(save)
from worker.entry import command
sys.argv = ["worker", *sys.argv[1:]]
command()
"""


def one_run(model: Path, video: Path, tmp: Path) -> dict[str, Any]:
    out = tmp / "marks.json"
    args = ["--input", str(video), "--model", str(model), "--output", str(tmp / "t.mp4"),
            "--results", str(tmp / "t.jsonl"), "--quiet"]  # fmt: skip
    launched = time.monotonic()
    run = run_child(["-c", _CHILD, str(out), "run", *args], tmp)
    if run.returncode != 0:
        raise SystemExit(f"worker run failed: {run.stderr[-2000:]}")
    marks = json.loads(out.read_text())
    writes = [t - launched for t in marks["writes"]]
    n = len(writes)
    k = max(1, n // 10)
    steady = (writes[n - 1 - k] - writes[k]) / (n - 1 - 2 * k)
    lanes = marks["lanes"]
    # The first frame's run is the opening one: its other threads are ONNX Runtime's.
    return {
        "frames": n,
        "wall_s": run.wall_s,
        "first_out_s": writes[0],
        "steady_ms": 1000 * steady,
        "end_s": run.wall_s - writes[-1],
        "lane_ms": {
            "run": 1000 * lanes["run"] / n,
            "stage": 1000 * lanes["stage"] / n,
            "other": 1000 * (lanes["lane"] - lanes["run"] - lanes["stage"]) / n,
        },
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=8.0, help="of 25 fps 720p video")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    cores = os.cpu_count() or 1
    tune_for_frames()  # the parts alone with the allocator the worker command sets
    compile_worker()
    _, _, imports_s = card_imports(5)
    rows = []
    with tempfile.TemporaryDirectory(prefix="timeline-") as t:
        tmp = Path(t)
        frames = round(a.seconds * 25)
        video = walkers_720(tmp / "walkers.mp4", frames)
        for name in a.shapes.split(","):
            model = tmp / f"{name}.onnx"
            build_model(SHAPES[name], model)
            one_run(model, video, tmp)  # builds and caches the fused graph, as a first run does
            runs = [one_run(model, video, tmp) for _ in range(a.runs)]
            solo = alone(model, video, frames)
            bound = 1000 * cores / parts_ms(solo)

            def med(key: str, runs: list[dict[str, Any]] = runs) -> float:
                return float(statistics.median(r[key] for r in runs))

            steady_fps = 1000 / med("steady_ms")
            row = {
                "shape": name,
                "frames": frames,
                "wall_s": round(med("wall_s"), 3),
                "first_out_s": round(med("first_out_s"), 3),
                "card_imports_s": round(imports_s, 3),
                "steady_ms": round(med("steady_ms"), 2),
                "end_s": round(med("end_s"), 3),
                "lane_ms": {
                    k: round(statistics.median(r["lane_ms"][k] for r in runs), 2)
                    for k in ("run", "stage", "other")
                },
                "alone_ms": {"model": round(solo["model"], 2), "post": round(solo["post"], 2)},
                "bound_fps": round(bound, 1),
                "steady_vs_bound": round(steady_fps / bound, 3),
                "whole_vs_bound": round(frames / med("wall_s") / bound, 3),
            }
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    if a.json:
        print(json.dumps({"cores": cores, "rows": rows}))
        return 0
    print(f"1280x720 walkers, {a.seconds:g} s; {cores} cores; median of {a.runs} runs; "
          f"the card's imports alone: {imports_s:.3f} s")  # fmt: skip
    print(f"{'shape':<15} {'first out s':>11} {'steady ms':>9} {'end s':>6} {'wall s':>7} "
          f"{'lane run/stage/other ms':>24} {'model+post alone':>16} {'steady x bound':>14} "
          f"{'whole x bound':>13}")  # fmt: skip
    for r in rows:
        ln, al = r["lane_ms"], r["alone_ms"]
        print(f"{r['shape']:<15} {r['first_out_s']:>11.3f} {r['steady_ms']:>9.2f} "
              f"{r['end_s']:>6.3f} {r['wall_s']:>7.3f} "
              f"{ln['run']:>10.2f}/{ln['stage']:.2f}/{ln['other']:.2f} "
              f"{al['model'] + al['post']:>16.2f} {r['steady_vs_bound']:>14.2f} "
              f"{r['whole_vs_bound']:>13.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
