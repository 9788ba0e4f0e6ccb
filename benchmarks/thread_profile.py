"""Where the worker's CPU goes, thread by thread: what a profiler of the whole process says.

    python benchmarks/thread_profile.py [--seconds 30] [--window 10] [--shapes seg21,...]

Per shape (``shapes.SHAPES``), ``worker run`` on the textured 720p walkers clip, and while it
runs in its steady state (after start-up, before the end), ``/proc/<pid>/task/*/stat`` and
``status`` sampled at both ends of a window: per thread, CPU seconds and voluntary and
involuntary context switches, grouped by the name the OS gives the thread. The worker names
its stage threads (``worker-source``, ``worker-inferenc``, ``worker-writer``: 15 bytes at
most); x264's threads start from the writer's and carry its name, FFmpeg's decoder threads
are ``av:h264:df*``; OpenCV's pool threads are named after the stage that first used them;
ONNX Runtime's intra-op pool starts from the main thread (where the session is made) and is
``python`` like it (the main thread itself only waits: ``main``). Printed: per group the
threads, CPU ms per frame, its share of the machine, and context switches per frame; then
how many threads wanted a core (more than 5 % of one) on how many cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench_support import stat_cpu_s, walkers_720
from shapes import SHAPES, build_model

from worker.testing import clean_env


def _snap(pid: int) -> dict[int, tuple[str, float, int, int]]:
    """Per thread id: (name, CPU s, voluntary, involuntary context switches)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{base}/comm") as f:
                comm = f.read().strip()
            cpu = stat_cpu_s(f"{base}/stat")
            switches = {}
            with open(f"{base}/status") as f:
                for line in f:
                    key, _, value = line.partition(":")
                    if key in ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"):
                        switches[key] = int(value)
        except (OSError, ValueError):
            continue  # the thread ended between the listing and the read
        name = "main" if int(tid) == pid else comm
        out[int(tid)] = (
            name,
            cpu,
            switches.get("voluntary_ctxt_switches", 0),
            switches.get("nonvoluntary_ctxt_switches", 0),
        )
    return out


def profile(
    model: Path, video: Path, tmp: Path, frames: int, window: float, warmup: float = 2.0
) -> dict[str, Any]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker", "run", "--input", str(video), "--model", str(model),
         "--output", str(tmp / "w.mp4"), "--results", str(tmp / "w.jsonl"), "--quiet",
         "--no-picture"],
        env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(warmup)  # past start-up
    a, t0 = _snap(proc.pid), time.monotonic()
    b, t1 = a, t0
    # The newest snapshot before the run ends (or the window closes): a fast shape's whole
    # clip may take less than the window.
    while proc.poll() is None and t1 - t0 < window:
        time.sleep(0.25)
        try:
            snap = _snap(proc.pid)
        except OSError:
            break
        if len(snap) < len(a) // 2:
            break  # shutting down: its threads are going
        b, t1 = snap, time.monotonic()
    out, err = proc.communicate(timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"worker run failed: {err[-2000:]}")
    summary = json.loads(out)
    fps = summary["fps"]
    if t1 - t0 < 1.0:
        raise SystemExit(f"{model.name}: the run ended before a second was sampled")
    done = fps * (t1 - t0)  # frames processed in the window, at the run's steady rate
    groups: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0, 0])
    busy = 0
    for tid, (name, cpu, vol, inv) in b.items():
        _, c0, v0, i0 = a.get(tid, (name, 0.0, 0, 0))
        g = groups[name]
        g[0] += 1
        g[1] += cpu - c0
        g[2] += vol - v0
        g[3] += inv - i0
        busy += (cpu - c0) / (t1 - t0) > 0.05
    rows = {
        name: {
            "threads": int(g[0]),
            "cpu_ms_per_frame": round(1000 * g[1] / done, 2),
            "share_of_machine": round(g[1] / (t1 - t0) / (os.cpu_count() or 1), 3),
            "voluntary_per_frame": round(g[2] / done, 2),
            "involuntary_per_frame": round(g[3] / done, 2),
        }
        for name, g in sorted(groups.items(), key=lambda kv: -kv[1][1])
    }
    return {
        "fps": fps,
        "frames": frames,
        "threads": len(b),
        "threads_wanting_a_core": busy,
        "cpu_ms_per_frame": round(sum(r["cpu_ms_per_frame"] for r in rows.values()), 1),
        "groups": rows,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=30.0, help="of 25 fps 720p video")
    p.add_argument("--window", type=float, default=10.0, help="seconds sampled")
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    report = {}
    with tempfile.TemporaryDirectory(prefix="thread-profile-") as t:
        tmp = Path(t)
        frames = round(a.seconds * 25)
        video = walkers_720(tmp / "walkers.mp4", frames)
        for name in a.shapes.split(","):
            model = tmp / f"{name}.onnx"
            build_model(SHAPES[name], model)
            report[name] = profile(model, video, tmp, frames, a.window)
    if a.json:
        print(json.dumps(report))
        return 0
    cores = os.cpu_count() or 1
    for name, r in report.items():
        print(f"\n{name}: {r['fps']} fps, {r['cpu_ms_per_frame']} ms CPU a frame, "
              f"{r['threads']} threads, {r['threads_wanting_a_core']} wanting a core "
              f"(> 5 %) on {cores} cores")  # fmt: skip
        print(f"  {'thread(s)':18s} {'n':>3s} {'ms/frame':>9s} {'machine':>8s} "
              f"{'vol/fr':>7s} {'invol/fr':>8s}")  # fmt: skip
        for group, g in r["groups"].items():
            if g["cpu_ms_per_frame"] < 0.05 and g["voluntary_per_frame"] < 0.5:
                continue
            print(f"  {group:18s} {g['threads']:3d} {g['cpu_ms_per_frame']:9.2f} "
                  f"{100 * g['share_of_machine']:7.1f}% {g['voluntary_per_frame']:7.2f} "
                  f"{g['involuntary_per_frame']:8.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
