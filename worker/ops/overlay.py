"""Drawing answers onto frames. Pure numpy (and cv2's text drawing), no video I/O.

Blending is exact integer maths on uint8, testable to the last bit:
``out = (frame * (256 - A) + colour * A + 128) >> 8`` with ``A = round(alpha * 256)`` for
painted classes and ``A = 0`` (the frame unchanged) for the background and unseen pixels.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from worker.ops.postprocess import NO_CLASS

__all__ = ["Blender", "blend_mask", "draw_boxes", "draw_lines", "draw_top", "pad_even"]

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Blender:
    """Lookup tables built once per run.

    Painted classes share one weight ``A``, so the formula is ``round_half_up(frame * w1 +
    colour * w2)`` with ``w1 = (256 - A) / 256`` and ``w2 = A / 256``: one cv2.LUT gather of
    the class colours and one cv2.addWeighted. Both weights are dyadic, so the float sum is
    exact; cv2 rounds half to even, and the ``+ 1/1024`` turns that into half up without
    moving any other value (they lie at least 1/256 from a rounding edge). Unpainted pixels
    (``A = 0``) are copied back from the frame, which is what the formula gives them.
    2-3x faster on 720p than weighting per pixel in uint16 (numpy or cv2.LUT tables).
    """

    colours: Array  # (256, 1, 3) uint8, BGR, per class
    keep: Array  # (256, 1) uint8: 1 where the class is not painted
    packed: Array  # (256,) uint32: the bytes B, G, R, keep per class (see ``over``)
    w_frame: float
    w_colour: float

    @classmethod
    def build(cls, colors_rgb: Array, alpha: float, painted: Array) -> Blender:
        """``painted``: (256,) bool, which class values get colour."""
        a = round(alpha * 256)
        bgr = colors_rgb[:, ::-1].astype(np.uint8)
        keep = (~painted).astype(np.uint8)
        packed = np.empty((256, 4), np.uint8)
        packed[:, :3], packed[:, 3] = bgr, keep
        return cls(
            colours=np.ascontiguousarray(bgr.reshape(256, 1, 3)),
            keep=keep.reshape(256, 1),
            packed=packed.view(np.uint32).reshape(256),
            w_frame=(256 - a) / 256,
            w_colour=a / 256,
        )

    def __call__(self, frame: Array, class_map: Array) -> Array:
        """Blend the class colours over a BGR frame; class_map is (H, W) uint8 of the same size."""
        # cv2 gathers and blends several times faster than numpy and releases the GIL.
        colour: Array = cv2.LUT(cv2.merge([class_map] * 3), self.colours)
        out: Array = cv2.addWeighted(frame, self.w_frame, colour, self.w_colour, 1 / 1024)
        keep: Array = cv2.LUT(class_map, self.keep)
        cv2.copyTo(frame, keep, out)
        return out

    def over(self, frame: Array, small: Array, restore: Callable[[Array, int], Array]) -> Array:
        """``self(frame, restore(small, NO_CLASS))`` for a model-resolution mask, at half the
        cost: each class's colour and keep flag travel as one uint32 through the nearest-
        neighbour ``restore(mask, fill)``, so the full-size class map is never made and no
        per-pixel colour lookup runs at frame resolution."""
        h, w = frame.shape[:2]
        # np.take and cv2.extractChannel: the same values as indexing and slicing, 0.3 ms less
        # a 720p frame.
        packed = restore(np.take(self.packed, small), int(self.packed[NO_CLASS]))
        bytes_ = packed.view(np.uint8).reshape(h, w, 4)
        colour: Array = cv2.cvtColor(bytes_, cv2.COLOR_BGRA2BGR)
        keep = cv2.extractChannel(bytes_, 3)
        # The blend is written over the colours it reads, and the packed frame goes first: a
        # 720p frame's blend holds 7.4 MB at once instead of 10.1 (the writer's peak).
        del packed, bytes_
        out: Array = cv2.addWeighted(
            frame, self.w_frame, colour, self.w_colour, 1 / 1024, dst=colour
        )
        cv2.copyTo(frame, keep, out)
        return out


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


def blend_mask(image: Array, mask: Array, bgr: Array | tuple[int, int, int], alpha: float) -> None:
    """``bgr`` blended over ``image``'s pixels where ``mask`` (same height and width) is set,
    in place: an instance's mask."""
    colour = np.asarray(bgr, dtype=np.float32)
    picked = image[mask].astype(np.float32)
    image[mask] = np.clip(picked * (1 - alpha) + colour * alpha + 0.5, 0, 255).astype(np.uint8)


class _Captions:
    """Drawn captions by (text, scale, thickness, colour, ink), least recently used out first
    past ``budget`` bytes (about 500 at 720p, 60 at 4K). Writer threads share it."""

    def __init__(self, budget: int = 4 << 20) -> None:
        self.budget = budget
        self.held = 0
        self.kept: OrderedDict[tuple[Any, ...], Array] = OrderedDict()
        self.lock = threading.Lock()

    def __call__(
        self, text: str, scale: float, thick: int, color: tuple[int, ...], ink: tuple[int, ...]
    ) -> Array:
        key = (text, scale, thick, color, ink)
        with self.lock:
            patch = self.kept.get(key)
            if patch is not None:
                self.kept.move_to_end(key)
                return patch
        patch = _caption(text, scale, thick, color, ink)
        with self.lock:
            if key not in self.kept:
                self.kept[key] = patch
                self.held += patch.nbytes
                while self.held > self.budget and self.kept:
                    self.held -= self.kept.popitem(last=False)[1].nbytes
        return patch


def _caption(
    text: str, scale: float, thick: int, color: tuple[int, ...], ink: tuple[int, ...]
) -> Array:
    """A box's caption as the pixels it covers: its filled rectangle in ``color`` with the text
    in ``ink`` on it. Every pixel the text touches lies inside the rectangle (checked at 240p
    to 4K), so the patch is what drawing it in place gives, wherever it goes; captions repeat
    from frame to frame (label and score), and copying the patch costs a tenth of drawing it."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    patch = np.empty((th + base + 3, tw + 5, 3), np.uint8)
    patch[:] = color
    cv2.putText(patch, text, (2, th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, thick,
                cv2.LINE_AA)  # fmt: skip
    patch.flags.writeable = False
    return patch


_captions = _Captions()


def draw_boxes(
    image: Array, boxes: Sequence[tuple[tuple[int, int, int, int], str, tuple[int, int, int]]]
) -> Array:
    """Boxes (x1, y1, x2, y2: right and bottom edges) with a caption above each, in its BGR
    colour, drawn on ``image`` in place (returned). Line and text scale with the frame."""
    h, w = image.shape[:2]
    thick = max(1, round(h / 360))
    scale = max(0.35, h / 1000)
    for (x1, y1, x2, y2), text, color in boxes:
        cv2.rectangle(image, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), color, thick)
        if not text:
            continue
        # Black or white text, whichever reads on the box's colour.
        ink = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
        patch = _captions(text, scale, thick, tuple(color), ink)
        ph, pw = patch.shape[:2]
        top = y1 - ph + 1 if y1 >= ph - 1 else y1  # inside the box when at the top edge
        # The part inside the frame (all of it but near an edge): what OpenCV's clipping
        # leaves of drawing it in place.
        x0, y0 = max(x1, 0), max(top, 0)
        xe, ye = min(x1 + pw, w), min(top + ph, h)
        if x0 < xe and y0 < ye:
            image[y0:ye, x0:xe] = patch[y0 - top : ye - top, x0 - x1 : xe - x1]
    return image


def draw_lines(
    image: Array,
    lines: Sequence[tuple[tuple[float, float], tuple[float, float], str]],
    color: tuple[int, int, int] = (255, 0, 255),
    line_width: int = 0,
) -> Array:
    """Lines from a to b (frame pixels) with a caption above their second point (where a
    box's caption, at a box's top left, is least likely), in place."""
    h, w = image.shape[:2]
    thick = line_width or max(1, round(h / 360))
    scale = max(0.4, h / 900)
    for a, b, text in lines:
        p, q = (round(a[0]), round(a[1])), (round(b[0]), round(b[1]))
        cv2.line(image, p, q, color, thick, cv2.LINE_AA)
        (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        org = (min(max(q[0] - tw, 0), max(0, w - tw)), min(max(q[1] - 6, 12), h - 4))
        cv2.putText(image, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color,
                    max(1, thick - 1), cv2.LINE_AA)  # fmt: skip
    return image


def pad_even(frame: Array) -> Array:
    """H.264 in yuv420p needs even sizes: repeat the last row/column where a size is odd."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
