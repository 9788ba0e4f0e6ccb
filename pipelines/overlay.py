"""Drawing answers onto frames. Pure numpy (and cv2's text drawing), no video I/O.

Blending is integer maths on uint8 so that it is exact and testable:
``out = (frame * (256 - A) + colour * A + 128) >> 8`` with ``A = round(alpha * 256)`` for
painted classes and ``A = 0`` (the frame unchanged) for the background and unseen pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = ["Blender", "draw_top", "pad_even"]

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Blender:
    """Per-class lookup tables built once per run: inverse weight and premultiplied colour."""

    inverse: Array  # (256, 1) uint16: 256 - A
    premultiplied: Array  # (256, 1, 3) uint16, BGR: colour * A + 128

    @classmethod
    def build(cls, colors_rgb: Array, alpha: float, painted: Array) -> Blender:
        """``painted``: (256,) bool, which class values get colour."""
        a = np.where(painted, round(alpha * 256), 0).astype(np.uint16)
        bgr = colors_rgb[:, ::-1].astype(np.uint16)
        premultiplied = bgr * a[:, None] + np.uint16(128)
        return cls(
            inverse=(256 - a).astype(np.uint16).reshape(256, 1),
            premultiplied=np.ascontiguousarray(premultiplied.reshape(256, 1, 3)),
        )

    def __call__(self, frame: Array, class_map: Array) -> Array:
        """Blend the class colours over a BGR frame; class_map is (H, W) uint8 of the same size."""
        # cv2.LUT gathers per pixel several times faster than numpy fancy indexing.
        inverse: Array = cv2.LUT(class_map, self.inverse)
        premultiplied: Array = cv2.LUT(cv2.merge([class_map] * 3), self.premultiplied)
        out = frame.astype(np.uint16)
        out *= inverse[..., None]
        out += premultiplied
        out >>= 8
        return out.astype(np.uint8)


def draw_top(
    frame: Array, lines: list[str], color_bgr: tuple[int, int, int] = (255, 255, 255)
) -> Array:
    """Classification: write the top-k lines in the top-left corner on a darkened box."""
    out = frame.copy()
    if not lines:
        return out
    h = out.shape[0]
    scale = max(0.4, h / 720 * 0.8)
    thick = max(1, round(scale * 2))
    sizes = [cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)[0] for t in lines]
    step = max(s[1] for s in sizes) + 2 * thick + 4
    bw = min(out.shape[1], max(s[0] for s in sizes) + 16)
    bh = min(h, step * len(lines) + 8)
    out[:bh, :bw] //= 3  # a dark box keeps the text readable on any frame
    for i, text in enumerate(lines):
        y = 4 + step * (i + 1) - thick - 2
        cv2.putText(
            out, text, (8, y), cv2.FONT_HERSHEY_SIMPLEX, scale, color_bgr, thick, cv2.LINE_AA
        )
    return out


def pad_even(frame: Array) -> Array:
    """H.264 in yuv420p needs even sizes: repeat the last row/column where a size is odd."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
