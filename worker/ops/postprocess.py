"""Model outputs to answers, and answers back onto the frame. Pure numpy.

Masks stay uint8 (255 = a pixel the model did not see) and are mapped to frame resolution by
nearest-neighbour index maps, never as float score maps: a 21-class 512x512 float map resized
to 1080p is 170 MB of work per frame; the uint8 class map is 2 MB.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from worker.ops.preprocess import Geometry

__all__ = [
    "NO_CLASS",
    "MaskMap",
    "classify",
    "coverage",
    "coverage_bits",
    "restore",
    "segment",
    "shown_from_bits",
    "sigmoid",
    "softmax",
]

NO_CLASS = 255
Activation = Literal["softmax", "sigmoid", "none"]
Array = np.ndarray[Any, Any]


def softmax(x: Array, axis: int = -1) -> Array:
    z: Array = x.astype(np.float32) - x.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


def sigmoid(x: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-x.astype(np.float32)))


def _above(x: Array, activation: Activation, threshold: float) -> Array:
    if activation == "sigmoid":
        # sigmoid(x) > t  <=>  x > logit(t): no exp over the whole map.
        return x > np.float32(np.log(threshold / (1.0 - threshold)))
    # In float32, not in x's own dtype: a float16 map compared with a Python float would see
    # the threshold rounded to float16 (0.3 -> 0.30005), and 0.30005 would not count as above
    # 0.3. The fused graph compares the same float32 numbers.
    return x.astype(np.float32, copy=False) > np.float32(threshold)


def segment(
    out: Array, kind: str, activation: Activation, threshold: float
) -> tuple[Array, Array | None]:
    """Batch output -> (class maps (N,h,w) uint8, multi-label bits (N,h,w) uint32 or None).

    multiclass: argmax over C (activation does not change it). binary: one map thresholded,
    class 1 where above. class_map: values taken as they are, anything outside 0..254 -> none.
    multilabel: each class thresholded on its own; the class map shows the highest active class.
    """
    if kind == "multiclass":
        return out.argmax(axis=1).astype(np.uint8), None
    if out.ndim == 4:
        out = out[:, 0] if kind != "multilabel" else out
    if kind == "binary":
        return _above(out, activation, threshold).astype(np.uint8), None
    if kind == "class_map":
        bad = (out < 0) | (out >= NO_CLASS)
        return np.where(bad, NO_CLASS, out).astype(np.uint8), None
    if kind == "multilabel":
        active = _above(out, activation, threshold)  # (N, C, h, w)
        n, c, h, w = active.shape
        bits = np.zeros((n, h, w), dtype=np.uint32)
        shown = np.full((n, h, w), NO_CLASS, dtype=np.uint8)
        for k in range(c):
            bits |= active[:, k].astype(np.uint32) << np.uint32(k)
            shown[active[:, k]] = k
        return shown, bits
    raise ValueError(f"unknown segmentation output kind {kind!r}")


def classify(out: Array, activation: Activation, k: int) -> list[list[tuple[int, float]]]:
    """Batch [N,C] output -> per frame the top k (class index, score), best first."""
    scores = out.astype(np.float32)
    if activation == "softmax":
        scores = softmax(scores, axis=1)
    elif activation == "sigmoid":
        scores = sigmoid(scores)
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[(int(i), float(row[i])) for i in idx] for row, idx in zip(scores, order, strict=True)]


def _index(n_out: int, n_src: int, s: float, t: float) -> Array:
    """For each output pixel, the nearest source pixel under ``u + .5 = s (x + .5) + t``;
    -1 where it falls outside the source."""
    u: Array = np.floor(s * (np.arange(n_out) + 0.5) + t).astype(np.int64)
    u[(u < 0) | (u >= n_src)] = -1
    return u


def restore(small: Array, g: Geometry, frame_hw: tuple[int, int], fill: int = NO_CLASS) -> Array:
    """Map a model-resolution mask (h, w) onto the frame (H, W) by nearest neighbour.

    ``g`` maps frame pixels to ``small``'s pixels. Pixels outside what the model saw (centre
    crop) get ``fill``.
    """
    return MaskMap.build(g, small.shape[:2], frame_hw).restore(small, fill)


@dataclass(frozen=True)
class MaskMap:
    """Where each frame pixel finds its model-resolution mask pixel, built once per video.

    Nearest neighbour makes the full-size mask a grid of repeated rows and columns, so how
    often each mask pixel appears on the frame is ``row_counts[i] * col_counts[j]``: coverage
    is counted on the small mask with those weights, exactly equal to counting the frame.
    """

    rows: Array  # (H,) source row per frame row, -1 outside the mask
    cols: Array  # (W,) source column per frame column, -1 outside
    small_hw: tuple[int, int]
    frame_hw: tuple[int, int]
    weights: Array = field(init=False, repr=False)  # (h, w) float64 frame pixels per mask pixel

    def __post_init__(self) -> None:
        h, w = self.small_hw
        rc = np.bincount(self.rows[self.rows >= 0], minlength=h)[:h]
        cc = np.bincount(self.cols[self.cols >= 0], minlength=w)[:w]
        # float64 holds these integer counts exactly (< 2**53), and bincount wants floats.
        object.__setattr__(self, "weights", np.outer(rc, cc).astype(np.float64))

    @classmethod
    def build(cls, g: Geometry, small_hw: tuple[int, int], frame_hw: tuple[int, int]) -> MaskMap:
        (fh, fw), (sh, sw) = frame_hw, small_hw
        return cls(_index(fh, sh, g.sy, g.ty), _index(fw, sw, g.sx, g.tx), small_hw, frame_hw)

    def restore(self, small: Array, fill: int = NO_CLASS) -> Array:
        h, w = self.small_hw
        padded = np.full((h + 1, w + 1), fill, dtype=small.dtype)
        padded[:-1, :-1] = small  # index -1 lands on the fill row/column
        # Two 1-D takes: 5x faster than one 2-D fancy index for the same pixels.
        full: Array = np.take(np.take(padded, self.rows, axis=0), self.cols, axis=1)
        return full

    def coverage(self, small: Array, labels: tuple[str, ...]) -> dict[str, float]:
        """``coverage(self.restore(small), labels)``, counted on the small mask."""
        counts = np.bincount(small.ravel(), weights=self.weights.ravel(), minlength=256)
        total = self.frame_hw[0] * self.frame_hw[1]
        present = (i for i in range(min(len(labels), NO_CLASS)) if counts[i])
        return {labels[i]: int(counts[i]) / total for i in present}

    def coverage_bits(self, bits: Array, labels: tuple[str, ...]) -> dict[str, float]:
        """``coverage_bits(self.restore(bits, fill=0), labels)``, counted on the small mask."""
        total = self.frame_hw[0] * self.frame_hw[1]
        out = {}
        for k, label in enumerate(labels):
            n = int(self.weights[(bits >> k) & 1 != 0].sum())
            if n:
                out[label] = n / total
        return out


def shown_from_bits(bits: Array, classes: int) -> Array:
    """Multi-label bits -> the class drawn per pixel: the highest one on, else ``NO_CLASS``."""
    shown = np.full(bits.shape, NO_CLASS, dtype=np.uint8)
    for k in range(classes):
        shown[(bits >> k) & 1 != 0] = k
    return shown


def coverage(class_map: Array, labels: tuple[str, ...]) -> dict[str, float]:
    """label -> fraction of the frame's pixels of that class, for the classes present."""
    counts = np.bincount(class_map.ravel(), minlength=256)
    total = class_map.size
    present = (i for i in range(min(len(labels), NO_CLASS)) if counts[i])
    return {labels[i]: int(counts[i]) / total for i in present}


def coverage_bits(bits: Array, labels: tuple[str, ...]) -> dict[str, float]:
    """Multi-label: label -> fraction of pixels where that class is on (they may overlap)."""
    total = bits.size
    out = {}
    for k, label in enumerate(labels):
        n = int(np.count_nonzero(bits & np.uint32(1 << k)))
        if n:
            out[label] = n / total
    return out
