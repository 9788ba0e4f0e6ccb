"""``worker sample``: a short synthetic video to try the worker on (blue sky, green ground,
a red robot walking across). Deterministic: the same arguments give the same pixels."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from worker.stages.atomic import AtomicFile

__all__ = ["robot_scene", "write_sample"]


def robot_scene(
    index: int, width: int = 640, height: int = 360, fps: int = 25
) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """Frame ``index`` of the scene as BGR uint8."""
    t = index / fps
    rgb = np.empty((height, width, 3), dtype=np.float32)
    horizon = int(height * 0.6)
    sky = np.linspace(0.0, 1.0, horizon, dtype=np.float32)[:, None]
    rgb[:horizon, :, 0] = 70 + 90 * sky
    rgb[:horizon, :, 1] = 130 + 60 * sky
    rgb[:horizon, :, 2] = 240 + 10 * sky
    yy, xx = np.mgrid[horizon:height, 0:width]
    stripes = 12 * np.sin(xx / 9.0 + yy / 5.0 - 6 * t)  # grass that moves with the camera
    rgb[horizon:, :, 0] = 50 + stripes
    rgb[horizon:, :, 1] = 160 + stripes
    rgb[horizon:, :, 2] = 55
    # The robot: body, head and two eyes, walking left to right and bobbing.
    s = height / 360
    cx = int((0.1 + 0.8 * ((t / 4.0) % 1.0)) * width)
    base = horizon + int(20 * s) + int(4 * s * np.sin(2 * np.pi * 2 * t))
    bw, bh, hw = int(60 * s), int(90 * s), int(40 * s)
    body = (slice(max(base - bh, 0), base), slice(max(cx - bw // 2, 0), cx + bw // 2))
    head = (slice(max(base - bh - hw, 0), base - bh), slice(max(cx - hw // 2, 0), cx + hw // 2))
    rgb[body] = (215, 45, 40)
    rgb[head] = (235, 70, 55)
    ey = base - bh - hw // 2
    for ex in (cx - hw // 4, cx + hw // 4):
        rgb[max(ey - 3, 0) : ey + 3, max(ex - 3, 0) : ex + 3] = (20, 20, 20)
    return np.ascontiguousarray(np.clip(rgb, 0, 255).astype(np.uint8)[..., ::-1])


def write_sample(
    path: Path, *, seconds: float = 4.0, fps: int = 25, width: int = 640, height: int = 360
) -> int:
    """Encode the scene as H.264 MP4 at ``path`` (atomically); returns the frame count."""
    n = max(1, round(seconds * fps))
    made: list[AtomicFile] = []
    try:
        target = AtomicFile(path, "sample", into=made)
        with av.open(
            str(target.temp), mode="w", format="mp4", options={"movflags": "+faststart"}
        ) as c:
            stream: Any = c.add_stream("libx264", rate=Fraction(fps))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.options = {"preset": "veryfast", "crf": "18"}
            for i in range(n):
                frame = av.VideoFrame.from_ndarray(
                    robot_scene(i, width, height, fps), format="bgr24"
                )
                for packet in stream.encode(frame):
                    c.mux(packet)
            for packet in stream.encode(None):
                c.mux(packet)
    except BaseException:
        for f in made:
            f.discard()
        raise
    target.commit()
    return n
