"""float32 vs int8 (and float16) exports of two real architectures through ``worker run``,
side by side in one run.

    python benchmarks/precision_bench.py [--seconds 8] [--rounds 2] [--json]

Needs the export extra and torchvision (``benchmarks/torchvision_nets.py`` says which).
Each architecture (MobileNetV3-Small classifier at 224x224, LR-ASPP MobileNetV3-Large
segmenter at 512x512, random weights) is exported by ``worker export`` three times: float32,
``--half`` and ``--quantize int8``, calibrated and verified on frames of the benchmark video
(their agreement with PyTorch's float32 answers is printed). Then ``worker run --output
none`` on a textured, moving 1280x720 scene (its bitrate is printed), each model in a fresh
process, alternating, ``--rounds`` times; fps of the run and wall time of the process, and
each model's speed relative to float32. float16 is for GPUs: on a CPU, ONNX Runtime has few
float16 kernels and casts around the rest, so expect it slower there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2

from worker.testing import clean_env, decode, make_video, walkers

ROOT = Path(__file__).resolve().parents[1]


NETS = {
    "mobilenet_v3_small (classify)": ("torchvision_nets:mobilenet_v3_small", "1,3,224,224"),
    "lraspp_mobilenet_v3_large (segment)": ("torchvision_nets:lraspp", "1,3,512,512"),
}
PRECISIONS = {"float32": [], "float16": ["--half"], "int8": ["--quantize", "int8"]}


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH")) if p)
    return clean_env({"PYTHONPATH": path})


def worker(cwd: Path, *args: str) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "worker", *args],
        cwd=cwd, env=_env(), capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"worker {' '.join(args)} failed: {proc.stderr}")
    return json.loads(proc.stdout), wall


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=8.0, help="of 25 fps video")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="precision-") as t:
        tmp = Path(t)
        video = make_video(tmp / "street720.mp4", frames=round(a.seconds * 25), width=1280,
                           height=720, image=walkers(), crf=23)  # fmt: skip
        mbit = video.stat().st_size * 8 / a.seconds / 1e6
        samples = tmp / "samples"
        samples.mkdir()
        for i, (_, img) in enumerate(decode(video)[::10][:16]):
            cv2.imwrite(str(samples / f"{i:02d}.png"), img)
        import torch
        import torchvision_nets

        exports: dict[str, dict[str, Any]] = {}
        for name, (factory, shape) in NETS.items():
            fn = getattr(torchvision_nets, factory.split(":")[1])
            weights = tmp / f"{fn.__name__}.pth"
            torch.save(fn().state_dict(), weights)
            for prec, flags in PRECISIONS.items():
                out = tmp / f"{fn.__name__}-{prec}.onnx"
                report, wall = worker(
                    tmp, "export", "--factory", factory, "--weights", str(weights),
                    "--input-shape", shape, "--output", str(out), "--samples", str(samples),
                    *flags,
                )  # fmt: skip
                checks = (report["reduced_precision"] or report)["verification"]
                on_samples = next(c for c in checks if c["inputs"] == "samples")
                agree = on_samples.get("top1_agreement", on_samples.get("mask_agreement"))
                exports[f"{name} {prec}"] = {
                    "model": out,
                    "net": name,
                    "precision": prec,
                    "bytes": out.stat().st_size,
                    "agreement_on_samples": agree,
                    "export_s": round(wall, 1),
                    "fps": [],
                    "wall": [],
                }
                print(f"exported {name} {prec}: {out.stat().st_size / 1e6:.1f} MB, agreement "
                      f"with PyTorch float32 on samples {agree:.4f}", file=sys.stderr)  # fmt: skip
        for _ in range(a.rounds):
            for e in exports.values():
                summary, wall = worker(
                    tmp, "run", "--input", video.name, "--model", str(e["model"]),
                    "--output", "none", "--quiet", "--no-picture",
                )  # fmt: skip
                e["fps"].append(summary["fps"])
                e["wall"].append(wall)
    rows = []
    for key, e in exports.items():
        base = exports[f"{e['net']} float32"]
        fps = statistics.median(e["fps"])
        rows.append(
            {
                "model": key,
                "mb": round(e["bytes"] / 1e6, 2),
                "agreement": e["agreement_on_samples"],
                "fps": round(fps, 1),
                "fps_runs": e["fps"],
                "wall_s": round(statistics.median(e["wall"]), 2),
                "vs_float32": round(fps / statistics.median(base["fps"]), 2),
            }
        )
    if a.json:
        print(json.dumps({"video_mbit_s": round(mbit, 2), "rows": rows}))
        return 0
    print(f"1280x720 walkers, {a.seconds:g} s at 25 fps, {mbit:.2f} Mbit/s; worker run "
          f"--output none; median of {a.rounds}, alternating")  # fmt: skip
    print(f"{'model':<46} {'MB':>6} {'agree':>7} {'fps':>7} {'wall s':>7} {'vs fp32':>8}")
    for r in rows:
        print(f"{r['model']:<46} {r['mb']:>6.2f} {r['agreement']:>7.4f} {r['fps']:>7.1f} "
              f"{r['wall_s']:>7.2f} {r['vs_float32']:>8.2f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
