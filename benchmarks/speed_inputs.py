"""``tutorial_vs_worker.py``'s inputs, built in a temporary directory (nothing downloaded,
nothing committed): a 720p H.264 MP4 of the textured, moving ``walkers`` scene (what camera
footage costs to decode and encode) and the ``seg21`` model of ``shapes`` with its card."""

from __future__ import annotations

from pathlib import Path

from shapes import SHAPES, build_model

from worker.testing import make_video, walkers

__all__ = ["CLASSES", "FPS", "INPUT", "NOISY_CORES", "SHAPE", "write_inputs"]

FPS = 25
SHAPE = "seg21"
INPUT = SHAPES[SHAPE]["hw"][0]  # model input side
CLASSES = SHAPES[SHAPE]["classes"]
NOISY_CORES = 0.1  # other processes using more than this many cores disturb the timings


def write_inputs(tmp: Path, frames: int, width: int, height: int) -> tuple[Path, Path, float]:
    """(video, model, GFLOPs per frame)."""
    video = make_video(tmp / f"walkers-{width}x{height}.mp4", frames=frames, width=width,
                       height=height, fps=FPS, image=walkers(), crf=23)  # fmt: skip
    model = tmp / f"{SHAPE}.onnx"
    gflops = build_model(SHAPES[SHAPE], model)
    return video, model, gflops
