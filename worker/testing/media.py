"""Videos for tests and benchmarks, encoded here with PyAV: nothing is downloaded or committed.

``pattern`` is flat colour regions that move (they survive H.264 nearly intact); ``walkers``
a street-like scene with texture, motion and sensor noise (what camera footage costs to
decode and encode, and what the demo segmenter sees as walkers); ``walker_spans`` where its
walkers are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

__all__ = ["decode", "make_video", "pattern", "walker_spans", "walkers"]

Array = np.ndarray[Any, Any]


def pattern(index: int, width: int, height: int) -> Array:
    """A BGR frame with large flat colour regions (they survive H.264 nearly intact) that move."""
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[: height // 2, :, :] = (200, 60, 30)  # blue-ish top (BGR)
    img[height // 2 :, :, :] = (40, 180, 60)  # green bottom
    x = (index * 4) % max(width - width // 4, 1)
    img[height // 4 : height * 3 // 4, x : x + width // 4] = (30, 40, 220)  # a red block
    return img


def make_video(
    path: Path,
    *,
    frames: int = 12,
    width: int = 64,
    height: int = 48,
    fps: int = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    rotation: int | None = None,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    image: Callable[[int, int, int], Array] = pattern,
    container_format: str | None = None,
    container_options: dict[str, str] | None = None,
    crf: int = 12,
) -> Path:
    """Encode ``frames`` frames; ``pts``/``time_base`` give variable frame rate timestamps.

    ``container_options`` go to the muxer, e.g. ``{"movflags": "+faststart"}`` puts the MP4
    index first, as cameras and web encoders do.
    """
    with av.open(
        str(path), mode="w", format=container_format, options=container_options or {}
    ) as c:
        s: Any = c.add_stream(codec, rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = width, height, pix_fmt
        if codec == "libx264":
            s.options = {"preset": "ultrafast", "crf": str(crf)}
        if time_base is not None:
            s.codec_context.time_base = time_base
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i in range(frames):
            vf = av.VideoFrame.from_ndarray(image(i, width, height), format="bgr24")
            if pix_fmt != "bgr24":
                vf = vf.reformat(format=pix_fmt)
            if pts is not None:
                vf.pts = pts[i]
                vf.time_base = time_base
            for packet in s.encode(vf):
                c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    return path


def decode(path: Path) -> list[tuple[float, Array]]:
    """Every frame of a file as (time in seconds, BGR image)."""
    with av.open(str(path)) as c:
        return [(float(f.time), f.to_ndarray(format="bgr24")) for f in c.decode(video=0)]


def walkers(seed: int = 7, fps: int = 25) -> Callable[[int, int, int], Array]:
    """A street-like scene for the demo segmenter: textured grey pavement, green verge, and
    red "walkers" crossing at different speeds, passing behind two grey posts (so the red a
    model sees in a doorway flickers as a walker goes by, as a real mask does), with a little
    sensor noise. Deterministic for a seed; ``walker_spans`` gives where the walkers are."""
    rng = np.random.default_rng(seed)
    n = 6
    speed = rng.uniform(0.06, 0.18, n)  # frame widths per second
    offset = rng.uniform(0.0, 1.0, n)
    lane = rng.uniform(0.35, 0.75, n)
    size = rng.uniform(0.05, 0.09, n)
    noise = np.random.default_rng(seed + 1)
    grounds: dict[tuple[int, int], Array] = {}

    def ground(width: int, height: int) -> Array:
        """Pavement with a fixed texture (as a camera's scene has) and a green verge."""
        key = (width, height)
        if key not in grounds:
            tex = np.random.default_rng(seed + 2).integers(-20, 21, (height, width, 1))
            img = np.empty((height, width, 3), np.int16)
            img[:] = (128, 128, 128)  # pavement (BGR): neutral
            img[int(height * 0.85) :] = (60, 170, 70)  # a green verge at the bottom
            grounds[key] = np.clip(img + tex, 0, 255).astype(np.uint8)
        return grounds[key]

    def image(index: int, width: int, height: int) -> Array:
        t = index / fps
        img = ground(width, height).copy()
        for k in range(n):
            x = ((offset[k] + speed[k] * t) % 1.4 - 0.2) * width
            w, h = int(size[k] * width), int(size[k] * 2.6 * height)
            y = int(lane[k] * height) - h // 2
            x0, x1 = int(x), int(x) + w
            if x1 > 0 and x0 < width:
                img[max(y, 0) : y + h, max(x0, 0) : min(x1, width)] = (40, 40, 210)  # red
        for px in (0.42, 0.58):  # posts the walkers pass behind
            c = int(px * width)
            img[:, c - width // 60 : c + width // 60] = (150, 150, 150)
        # A little sensor noise on top, changing every frame, as a camera's has.
        jitter = noise.integers(-3, 4, img.shape, dtype=np.int16)
        out: Array = np.clip(img.astype(np.int16) + jitter, 0, 255).astype(np.uint8)
        return out

    return image


def walker_spans(seconds: float, seed: int = 7, fps: int = 25) -> list[tuple[float, float]]:
    """Where ``walkers`` puts each walker horizontally (fractions of the width), per frame:
    the truth an ideal detector would see, as ``(left, right)`` per walker per frame, flat."""
    rng = np.random.default_rng(seed)  # the same draws walkers(seed) makes, in its order
    n = 6
    speed = rng.uniform(0.06, 0.18, n)
    offset = rng.uniform(0.0, 1.0, n)
    rng.uniform(0.35, 0.75, n)
    size = rng.uniform(0.05, 0.09, n)
    out = []
    for i in range(round(seconds * fps)):
        for k in range(n):
            x = (offset[k] + speed[k] * i / fps) % 1.4 - 0.2
            out.append((float(x), float(x + size[k])))
    return out
