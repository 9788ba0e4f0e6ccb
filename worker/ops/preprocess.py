"""Frames to model input: geometry, colour order, normalisation, layout. Pure numpy + cv2.

Geometry uses the pixel-centre convention ``u + 0.5 = s * (x + 0.5) + t`` per axis, so one
axis-aligned transform describes stretch, letterbox and centre crop alike, composes with the
model's output stride, and inverts exactly for mapping masks back onto the frame.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

__all__ = [
    "Geometry",
    "InputPlan",
    "geometry",
    "planar",
    "preprocess",
    "resize_antialias",
    "warp",
    "warp_matrix",
]

Resize = Literal["stretch", "letterbox", "center_crop"]
#: How pixels are resampled: ``linear`` (cv2's bilinear: what the worker always did, fastest),
#: ``area`` (cv2's pixel-area average: no aliasing when shrinking), ``antialias`` (the
#: bilinear filter widened by the shrink factor, as torchvision's ``Resize`` does by default
#: and PIL does: what a model trained with torchvision transforms saw).
Interpolation = Literal["linear", "area", "antialias"]


@dataclass(frozen=True)
class Geometry:
    """Axis-aligned map from frame pixels to model pixels: ``u + .5 = s * (x + .5) + t``."""

    sx: float
    sy: float
    tx: float
    ty: float

    def then_scale(self, fx: float, fy: float) -> Geometry:
        """This map followed by a plain resize by (fx, fy), e.g. to an output of lower stride."""
        return Geometry(self.sx * fx, self.sy * fy, self.tx * fx, self.ty * fy)


def geometry(
    frame_hw: tuple[int, int], model_hw: tuple[int, int], mode: Resize, crop_from: int | None = None
) -> Geometry:
    fh, fw = frame_hw
    mh, mw = model_hw
    if mode == "stretch":
        return Geometry(mw / fw, mh / fh, 0.0, 0.0)
    if mode == "letterbox":
        s = min(mw / fw, mh / fh)
    else:  # center_crop: the shorter side becomes crop_from, then the middle is cut out
        s = (crop_from or max(mh, mw)) / min(fh, fw)
    return Geometry(s, s, (mw - fw * s) / 2, (mh - fh * s) / 2)


def warp_matrix(g: Geometry) -> np.ndarray[Any, np.dtype[np.float64]]:
    """The 2x3 matrix cv2.warpAffine needs for ``g`` (integer pixel coordinates)."""
    return np.array([[g.sx, 0.0, g.tx + 0.5 * g.sx - 0.5], [0.0, g.sy, g.ty + 0.5 * g.sy - 0.5]])


@dataclass(frozen=True)
class InputPlan:
    """Everything ``preprocess`` needs, resolved from a model once."""

    hw: tuple[int, int]
    layout: Literal["NCHW", "NHWC"]
    dtype: np.dtype[Any]
    rgb: bool  # the model expects RGB; frames arrive BGR
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: Resize
    crop_from: int | None = None
    interpolation: Interpolation = "linear"
    pad: int = 0  # the grey of letterbox borders (Ultralytics': 114)

    def normaliser(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """(a, b) such that ``pixel * a + b == (pixel * scale - mean) / std`` per channel."""
        std = np.asarray(self.std, dtype=np.float64)
        a = self.scale / std
        b = -np.asarray(self.mean, dtype=np.float64) / std
        return a.astype(np.float32), b.astype(np.float32)


@functools.lru_cache(maxsize=64)
def _aa_taps(n_in: int, n_out: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Source indices and weights, (n_out, taps) each, of the antialiased bilinear filter
    (PIL's and torch's ``antialias=True``): a triangle as wide as the shrink factor."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    inv = 1.0 / support
    taps = int(np.ceil(support)) * 2 + 1
    idx = np.zeros((n_out, taps), np.intp)
    wts = np.zeros((n_out, taps), np.float32)
    for i in range(n_out):
        centre = scale * (i + 0.5)
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), n_in)
        js = np.arange(lo, hi)
        w = np.maximum(0.0, 1.0 - np.abs((js - centre + 0.5) * inv))
        total = w.sum()
        idx[i, : len(js)] = js
        idx[i, len(js) :] = js[-1] if len(js) else 0
        wts[i, : len(js)] = w / total if total > 0 else 0.0
    return idx, wts


def resize_antialias(img: np.ndarray[Any, Any], hw: tuple[int, int]) -> np.ndarray[Any, Any]:
    """uint8 HxWxC -> uint8 hxwxC, as torch's ``interpolate(bilinear, antialias=True)`` (and
    torchvision's ``Resize``) computes it in float, rounded. Separable, in numpy: ~10x the
    time of ``cv2.resize``, the price of matching what the model was trained on."""
    h, w = hw
    iy, wy = _aa_taps(img.shape[0], h)
    ix, wx = _aa_taps(img.shape[1], w)
    rows = np.einsum("hk,hkwc->hwc", wy, img[iy].astype(np.float32))
    out = np.einsum("wk,hwkc->hwc", wx, rows[:, ix])
    result: np.ndarray[Any, Any] = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return result


def _resample(img: np.ndarray[Any, Any], hw: tuple[int, int], how: Interpolation) -> Any:
    if img.shape[:2] == hw:
        return img
    if how == "antialias":
        return resize_antialias(img, hw)
    flag = cv2.INTER_AREA if how == "area" else cv2.INTER_LINEAR
    return cv2.resize(img, (hw[1], hw[0]), interpolation=flag)


def warp(
    images: list[np.ndarray[Any, Any]],
    hw: tuple[int, int],
    resize: Resize,
    crop_from: int | None = None,
    out: np.ndarray[Any, Any] | None = None,
    interpolation: Interpolation = "linear",
    pad: int = 0,
) -> np.ndarray[Any, Any]:
    """BGR uint8 frames -> uint8 BGR NHWC batch at the model size (borders: grey ``pad``).

    This is all the host does for the fused graph, and what ``preprocess`` starts from: the
    bytes that cross to the inference device are these, a model-sized uint8 image per frame.
    ``out`` (n, h, w, 3) uint8 is filled in place when given. Frames of one batch may differ
    in size (cameras of different resolutions, a classifier's zone crops): each is mapped by
    its own geometry. With an ``interpolation`` other than linear the frame is first resampled
    to its scaled size with that filter; letterbox and centre crop then only shift it.
    """
    h, w = hw
    if out is None:
        out = np.empty((len(images), h, w, 3), dtype=np.uint8)
    matrices: dict[tuple[int, int], np.ndarray[Any, Any]] = {}
    for i, img in enumerate(images):
        fh, fw = img.shape[:2]
        if resize == "stretch":
            # cv2.resize (INTER_LINEAR) samples at the same pixel centres as the stretch
            # geometry and is 3-4x faster than the general warp (fixed-point 2-tap rows and
            # columns).
            if (fh, fw) == (h, w):
                out[i] = img
            elif interpolation == "linear":
                cv2.resize(img, (w, h), dst=out[i], interpolation=cv2.INTER_LINEAR)
            else:
                out[i] = _resample(img, (h, w), interpolation)
            continue
        g = geometry((fh, fw), hw, resize, crop_from)
        if interpolation != "linear":
            sh, sw = max(1, round(fh * g.sy)), max(1, round(fw * g.sx))
            img = _resample(img, (sh, sw), interpolation)
            # What is left is a shift (and a scale within a pixel of 1): bilinear is exact
            # enough for that, and the filter has done the shrinking.
            m = warp_matrix(Geometry(g.sx * fw / sw, g.sy * fh / sh, g.tx, g.ty))
        elif (fh, fw) in matrices:
            m = matrices[(fh, fw)]
        else:
            m = matrices[(fh, fw)] = warp_matrix(g)
        cv2.warpAffine(
            img,
            m,
            (w, h),
            dst=out[i],
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(pad, pad, pad),
        )
    return out


def planar(
    batch: np.ndarray[Any, Any], out: np.ndarray[Any, Any], rgb: bool
) -> np.ndarray[Any, Any]:
    """A warped BGR batch (n, h, w, 3) as planes (n, 3, h, w) in the model's channel order,
    written into ``out``: one pass per frame (cv2.split into views of ``out``), about 6x
    cheaper than a transpose and a channel gather (ONNX Runtime's, or numpy's)."""
    for frame, planes in zip(batch, out, strict=True):
        cv2.split(frame, [planes[2], planes[1], planes[0]] if rgb else list(planes))
    return out


def preprocess(images: list[np.ndarray[Any, Any]], plan: InputPlan) -> np.ndarray[Any, Any]:
    """BGR uint8 frames (of any sizes) -> one model input batch."""
    batch = warp(
        images, plan.hw, plan.resize, plan.crop_from, interpolation=plan.interpolation,
        pad=plan.pad,
    )  # fmt: skip
    src: np.ndarray[Any, Any] = batch[..., ::-1] if plan.rgb else batch
    nchw = plan.layout == "NCHW"
    if nchw:
        # Reorder while still uint8 (a quarter of the bytes), then normalise in place in the
        # final layout: 4x cheaper than normalising channel-last and transposing floats.
        src = src.transpose(0, 3, 1, 2)
    if plan.dtype == np.uint8:
        return np.ascontiguousarray(src)
    a, b = plan.normaliser()
    shape = (1, 3, 1, 1) if nchw else (1, 1, 1, 3)
    x = np.ascontiguousarray(src, dtype=np.float32)
    x *= a.reshape(shape)
    x += b.reshape(shape)
    return x if plan.dtype == np.float32 else x.astype(plan.dtype)
