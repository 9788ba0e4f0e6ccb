"""Analytics, measured: what results-only runs and frame-rate control save, and what
hysteresis does to the number of events.

    python benchmarks/analytics_bench.py [--seconds 20] [--rounds 2] [--json]

1. speed: ``worker run`` on a textured, moving 1280x720 scene (walkers over noisy pavement;
   its bitrate is printed: flat synthetic video would make decoding and encoding look cheap),
   each variant in a fresh process, alternating, ``--rounds`` times: the full run, ``--output
   none``, ``--fps 5``, ``--every 5`` and ``--fps 5 --output none``; wall time of the whole
   process and of the run itself, and the speed-up of each over the full run;
2. events: one minute of the same scene at 320x180 with a doorway zone that the walkers pass
   through (behind two posts, so the mask flickers): start events per minute for the rule
   without hysteresis and with it, next to how many times a walker really entered the doorway.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from worker.testing import make_video, walker_spans, walkers, worker_cli

ROOT = Path(__file__).resolve().parents[1]


DOOR = "door=0.35,0.2 0.65,0.2 0.65,0.9 0.35,0.9"
PLAIN = "door:robot>0.03"
DEBOUNCED = "door:robot>0.03@3 end=1s min=0.5s"
VARIANTS = {
    "full": [],
    "--output none": ["--output", "none"],
    "--fps 5": ["--fps", "5"],
    "--every 5": ["--every", "5"],
    "--fps 5 --output none": ["--fps", "5", "--output", "none"],
}


def worker(cwd: Path, *args: str) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    proc = worker_cli(cwd, *args, "--quiet", "--no-picture", timeout=1800)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"worker {' '.join(args)} failed: {proc.stderr}")
    return json.loads(proc.stdout), wall


def speed(tmp: Path, seconds: float, rounds: int) -> dict[str, Any]:
    video = make_video(tmp / "street720.mp4", frames=round(seconds * 25), width=1280,
                       height=720, image=walkers(), crf=23)  # fmt: skip
    kbps = video.stat().st_size * 8 / seconds / 1000
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in VARIANTS}
    frames = 0
    processed: dict[str, int] = {}
    for _ in range(rounds):
        for name, extra in VARIANTS.items():
            summary, wall = worker(tmp, "run", "--input", str(video), "--output", "out.mp4",
                                   "--results", "out.jsonl", *extra)  # fmt: skip
            times[name].append((wall, summary["seconds"]))
            frames, processed[name] = summary["frames"], summary["processed"]
    best = {k: (min(w for w, _ in v), min(r for _, r in v)) for k, v in times.items()}
    full_wall, full_run = best["full"]
    return {
        "video": {"width": 1280, "height": 720, "frames": frames, "kbit_per_s": round(kbps)},
        "variants": {
            k: {
                "processed": processed[k],
                "wall_s": round(w, 3),
                "run_s": round(r, 3),
                "speedup_wall": round(full_wall / w, 2),
                "speedup_run": round(full_run / r, 2),
            }
            for k, (w, r) in best.items()
        },
    }


def _occupancy(seconds: float, merge_s: float, fps: int = 25) -> int:
    """How many times the doorway (x 0.35..0.65 of the width) became occupied by any walker,
    from the scene's own geometry, gaps shorter than ``merge_s`` not counted: what an ideal
    detector with the rule's inertia would report."""
    n = 6
    spans = walker_spans(seconds, fps=fps)
    frames = [spans[i * n : (i + 1) * n] for i in range(len(spans) // n)]
    occupied = [any(r > 0.35 and left < 0.65 for left, r in f) for f in frames]
    episodes, last_end = 0, None
    for i, now in enumerate(occupied):
        before = occupied[i - 1] if i else False
        new = last_end is None or (i - last_end) / fps >= merge_s
        if now and not before and new:
            episodes += 1
        if before and not now:
            last_end = i
    return episodes


def events(tmp: Path) -> dict[str, Any]:
    seconds = 60.0
    video = make_video(tmp / "street180.mp4", frames=round(seconds * 25), width=320,
                       height=180, image=walkers())  # fmt: skip
    out: dict[str, Any] = {
        "seconds": seconds,
        "true_occupancies": _occupancy(seconds, 0.0),
        "true_occupancies_1s_inertia": _occupancy(seconds, 1.0),
    }
    for name, rule in (("no hysteresis", PLAIN), ("hysteresis", DEBOUNCED)):
        summary, _ = worker(tmp, "run", "--input", str(video), "--output", "none", "--results",
                            f"{name}.jsonl", "--zone", DOOR, "--watch", rule)  # fmt: skip
        ev = summary["events"]
        out[name] = {
            "rule": rule,
            "starts_per_minute": round(ev["started"] * 60 / seconds, 1),
            "dropped_short": ev["dropped_short"],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the 720p video")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-analytics-") as name:
        tmp = Path(name)
        result = {"speed": speed(tmp, args.seconds, args.rounds), "events": events(tmp)}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    s, e = result["speed"], result["events"]
    v = s["video"]
    print(f"speed: {v['width']}x{v['height']}, {v['frames']} frames, {v['kbit_per_s']} kbit/s; "
          f"best of {args.rounds}, each in a fresh process")  # fmt: skip
    print(f"  {'variant':24s} {'processed':>9s} {'wall s':>8s} {'run s':>7s} {'x wall':>7s} "
          f"{'x run':>6s}")  # fmt: skip
    for name, r in s["variants"].items():
        print(f"  {name:24s} {r['processed']:9d} {r['wall_s']:8.2f} {r['run_s']:7.2f} "
              f"{r['speedup_wall']:7.2f} {r['speedup_run']:6.2f}")  # fmt: skip
    print(f"events: {e['seconds']:.0f} s of walkers; the doorway really became occupied "
          f"{e['true_occupancies']} times ({e['true_occupancies_1s_inertia']} with gaps under "
          "1 s merged)")  # fmt: skip
    for name in ("no hysteresis", "hysteresis"):
        r = e[name]
        print(f"  {name:14s} {r['starts_per_minute']:6.1f} starts/min  ({r['rule']}; "
              f"{r['dropped_short']} shorter than min dropped)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
