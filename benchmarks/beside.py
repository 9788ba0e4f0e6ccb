"""The parts of a run measured beside one another instead of alone.

The component bound (``speed_matrix.py``) adds up what the model, decoding, x264 and the host
work each cost alone on this machine. Parts that run at the same time on neighbouring cores
are slower than alone (they share the caches and the memory bus, and on a virtual machine
whatever the host shares), so no pipeline, however it is built, reaches a bound made of
costs measured alone. This measures each side while the other runs flat out in another
process (no queues, no hand-offs: nothing of the worker's pipeline), which gives the bound a
pipeline could reach on this machine if it wasted nothing:

- the model (the worker's session settings, a ready-made batch) beside a process that
  decodes, encodes and does the host work in a loop;
- decoding + x264 + host work beside a process that runs the model in a loop.

    python benchmarks/beside.py MODEL VIDEO [--frames 100]

``speed_matrix.py`` calls ``beside()`` per shape.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_support import stat_cpu_s
from components import (
    decode_alone,
    drawn_images,
    encode_alone,
    host_alone,
    plain_alone,
    sample_images,
)

from worker.allocator import tune_for_frames
from worker.models import Model, load_model
from worker.stages import default_batch

__all__ = ["beside"]

Array = np.ndarray[Any, Any]

HERE = Path(__file__).resolve().parent


def _model_ms(model_path: Path, frames: int) -> float:
    model = load_model(model_path, provider="cpu")
    n, _, cpu = plain_alone(model, default_batch(model, 0), frames)
    return 1000 * cpu / n


@functools.cache
def _frames(model_path: Path, video: Path) -> tuple[Model, list[Array], list[Array]]:
    """The model, the sampled frames and the same drawn: made once per process, so that the
    loop beside the model runs no model itself."""
    model = load_model(model_path, provider="cpu")
    images = sample_images(video)
    return model, images, drawn_images(model, images)


def _media_ms(model_path: Path, video: Path, frames: int) -> float:
    """Decoding + x264 (of the frames as drawn) + host work, CPU ms per frame (each part's
    frames counted apart)."""
    model, images, drawn = _frames(model_path, video)
    nd, _, dec = decode_alone(video)
    ne, _, enc = encode_alone(video, drawn, frames)
    nh, _, host = host_alone(model, images, frames)
    return 1000 * (dec / nd + enc / ne + host / nh)


def _loop(part: str, model_path: Path, video: Path) -> None:
    """Run ``part`` until killed, saying once on stdout that it is busy."""
    print("busy", flush=True)
    while True:
        if part == "model":
            _model_ms(model_path, 50)
        else:
            _media_ms(model_path, video, 50)


def _until_cpu(pid: int, seconds: float, deadline_s: float = 60.0) -> None:
    """Poll until process ``pid`` has used ``seconds`` of CPU."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if stat_cpu_s(f"/proc/{pid}/stat") >= seconds:
            return
        time.sleep(0.05)
    raise SystemExit(f"process {pid} used less than {seconds} s of CPU in {deadline_s} s")


def _with_neighbour(part: str, model_path: Path, video: Path, measure: object) -> float:
    args = ["--loop", part, str(model_path), str(video)]
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), *args],
        stdout=subprocess.PIPE,
        text=True,
        cwd=HERE,
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "busy":
            raise SystemExit(f"the {part} loop did not start")
        _until_cpu(child.pid, 1.0)  # past its imports and first allocations: flat out
        assert callable(measure)
        ms: float = measure()
        return ms
    finally:
        child.kill()
        child.wait()


def beside(model_path: Path, video: Path, frames: int) -> dict[str, float]:
    """CPU ms per frame of the model beside decoding + x264 + host work, and of those beside
    the model (each in its own process, both flat out)."""
    return {
        "model": _with_neighbour("media", model_path, video, lambda: _model_ms(model_path, frames)),
        "media": _with_neighbour(
            "model", model_path, video, lambda: _media_ms(model_path, video, frames)
        ),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loop", choices=("model", "media"), help=argparse.SUPPRESS)
    p.add_argument("model", type=Path)
    p.add_argument("video", type=Path)
    p.add_argument("--frames", type=int, default=100)
    a = p.parse_args()
    tune_for_frames()  # the parts measured with the allocator the worker command sets
    if a.loop:
        _loop(a.loop, a.model, a.video)
        return 0
    alone = {"model": _model_ms(a.model, a.frames), "media": _media_ms(a.model, a.video, a.frames)}
    near = beside(a.model, a.video, a.frames)
    cores = os.cpu_count() or 1
    out = {
        "alone_ms": {k: round(v, 1) for k, v in alone.items()},
        "beside_ms": {k: round(v, 1) for k, v in near.items()},
        "bound_fps_alone": round(1000 * cores / sum(alone.values()), 1),
        "bound_fps_beside": round(1000 * cores / sum(near.values()), 1),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
