"""Signals at random moments to ``worker run`` on a loaded machine: how often does a run end
badly? The goal is 0 aborts (SIGABRT, "terminate called without an active exception") and 0
broken promises (wrong exit code, traceback, a ``.part`` left, one output half-published).

    python benchmarks/signal_storm.py [--trials 200] [--busy 2] [--code DIR] [--json]

Each trial starts ``worker run`` on a 400-frame 640x360 clip of ``worker sample``'s scene,
waits a random 0-4 s (start-up, model loading, mid-run, after the end), then sends SIGINT,
SIGTERM, SIGHUP or SIGINT twice 20-50 ms apart, in turn; ``--busy`` processes spin on the
CPU meanwhile. ``--code DIR`` runs another checkout of the project (e.g. an older commit in a
git worktree) to compare, side by side.
Judging is ``worker.testing.signal_trials``'s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
from pathlib import Path

from worker.stages import write_sample
from worker.testing import KINDS, Trial, busy_cores, run_trial

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--busy", type=int, default=2, help="busy-loop processes beside it")
    ap.add_argument("--max-delay", type=float, default=4.0, dest="max_delay")
    ap.add_argument("--code", type=Path, help="the checkout to run (default: this one)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.code is not None:
        os.environ["PYTHONPATH"] = str(args.code.resolve())
    rng = random.Random(args.seed)
    trials: list[Trial] = []
    with tempfile.TemporaryDirectory(prefix="bench-signals-") as tmp_name:
        tmp = Path(tmp_name)
        clip = tmp / "clip.mp4"
        write_sample(clip, seconds=16, fps=25, width=640, height=360)
        with busy_cores(args.busy):
            for i in range(args.trials):
                delay = rng.uniform(0.0, args.max_delay)
                trials.append(run_trial(tmp / f"t{i}", clip, KINDS[i % len(KINDS)], delay, rng))
    startup = [t for t in trials if t.before_our_code]
    ours = [t for t in trials if not t.before_our_code]
    summary = {
        "code": str(args.code or ROOT),
        "trials": len(trials),
        "busy_processes": args.busy,
        "aborts": sum(t.aborted for t in ours),
        "broken_promises": sum(bool(t.problems) for t in ours),
        "in_pythons_own_startup": len(startup),
        "by_kind": {
            k: {
                "trials": sum(t.kind == k for t in ours),
                "aborts": sum(t.kind == k and t.aborted for t in ours),
                "broken": sum(t.kind == k and bool(t.problems) for t in ours),
            }
            for k in KINDS
        },
        "examples": [
            {"kind": t.kind, "delay_s": round(t.delay_s, 3), "code": t.code,
             "problems": t.problems, "stderr": t.stderr[-300:]}
            for t in ours if t.problems
        ][:10],
    }  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{summary['trials']} signals to 'worker run' ({summary['code']}), "
            f"{args.busy} busy processes beside it:"
        )
        print(f"  aborts (SIGABRT): {summary['aborts']}")
        print(f"  broken promises (exit code, traceback, .part, half-published): "
              f"{summary['broken_promises']}")  # fmt: skip
        print(f"  signals during Python's own start-up (before our code): {len(startup)}")
        for k, v in summary["by_kind"].items():
            counts = f"{v['trials']:4d} trials  {v['aborts']:3d} aborts  {v['broken']:3d} broken"
            print(f"  {k:8s} {counts}")
        for e in summary["examples"]:
            print(f"    {e['kind']} at {e['delay_s']} s: exit {e['code']} {e['problems']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
