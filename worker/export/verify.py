"""Does the exported model answer like the PyTorch one? Compare both on the same inputs.

Inputs are made the way ``worker run`` makes them: images through ``worker.ops.preprocess``
with the plan the exported model and its card resolve to. Raw outputs are compared as the
torch.onnx guide does, element by element within ``atol + rtol * |reference|`` (so a model
whose logits reach 1e4 is judged relative to them; ``all_close`` says how elements near 0
are); answers are compared the way the worker reads them too (``worker.ops.postprocess``):
top-1 labels for classifiers, class maps (pixel agreement and IoU per class) for segmenters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from worker.errors import ExportError, ShapeMismatch
from worker.models.model import Model
from worker.ops.postprocess import classify, segment
from worker.ops.preprocess import preprocess
from worker.stages.infer import plan_for

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_SAMPLES",
    "Check",
    "all_close",
    "compare",
    "random_images",
    "read_samples",
    "sample_input",
    "verify",
    "within",
]

Array = np.ndarray[Any, Any]
#: Runs the reference (PyTorch) model on a preprocessed batch; returns its output as numpy.
Reference = Callable[[Array], Array]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
MAX_SAMPLES = 32


@dataclass(frozen=True)
class Check:
    """One comparison: which inputs, their shape, and how far apart the two answers were."""

    inputs: str  # "random" or "samples"
    shape: tuple[int, ...]  # the model input, batch first (samples: per image)
    count: int  # images compared
    max_abs_diff: float
    agreement: float  # fraction of top-1 labels (classify) or mask pixels (segment) equal
    measure: str  # "top1" or "mask"
    close: bool = True  # every element within atol + rtol * |reference|
    iou: dict[str, float] | None = None  # segment: IoU per class present on either side

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "inputs": self.inputs,
            "shape": list(self.shape),
            "images": self.count,
            "max_abs_diff": self.max_abs_diff,
            "within_tolerance": self.close,
            f"{self.measure}_agreement": round(self.agreement, 6),
        }
        if self.iou:
            out["min_class_iou"] = round(min(self.iou.values()), 6)
            out["class_iou"] = {k: round(v, 6) for k, v in self.iou.items()}
        return out


@dataclass
class _Tally:
    """Intersections and unions per class, summed over images."""

    inter: dict[int, int]
    union: dict[int, int]

    def add(self, a: Array, b: Array) -> None:
        """Two class maps (or two multi-label bit maps, last axis the label)."""
        if a.dtype == bool:
            for c in range(a.shape[-1]):
                self._count(c, a[..., c], b[..., c])
            return
        for c in np.union1d(np.unique(a), np.unique(b)):
            self._count(int(c), a == c, b == c)

    def _count(self, c: int, x: Array, y: Array) -> None:
        union = int(np.count_nonzero(x | y))
        if union:
            self.inter[c] = self.inter.get(c, 0) + int(np.count_nonzero(x & y))
            self.union[c] = self.union.get(c, 0) + union

    def iou(self, model: Model) -> dict[str, float]:
        return {model.label(c): self.inter[c] / self.union[c] for c in sorted(self.union)}


def _max_abs_diff(ref: Array, out: Array) -> float:
    a, b = ref.astype(np.float64), out.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    # NaN where only one side has it must count as a difference, not vanish in max().
    d = np.where(both_nan, 0.0, np.abs(a - b))
    d = np.where(np.isnan(d), np.inf, d)
    return float(d.max()) if d.size else 0.0


def within(ref: Array, out: Array, rtol: float, atol: float) -> bool:
    """Every element within ``atol + rtol * max(|ref|, mean |ref|)`` (float64 arrays of one
    shape; a NaN anywhere fails). The floor at the output's mean magnitude is for elements near
    zero: float32 rounding grows with the values summed into an element, not with the element
    itself (a logit of 0.1 among logits of 1e4 carries their rounding)."""
    if not ref.size:
        return True
    scale = np.maximum(np.abs(ref), float(np.mean(np.abs(ref))))
    return bool((np.abs(ref - out) <= atol + rtol * scale).all())


def all_close(ref: Array, out: Array, rtol: float, atol: float) -> bool:
    """``within``, where NaN matches NaN (and only NaN)."""
    a, b = ref.astype(np.float64), out.astype(np.float64)
    both_nan = np.isnan(a) & np.isnan(b)
    if bool((np.isnan(a) ^ np.isnan(b)).any()):
        return False
    return within(np.where(both_nan, 0.0, a), np.where(both_nan, 0.0, b), rtol, atol)


def compare(
    model: Model,
    ref: Array,
    out: Array,
    rtol: float = 1e-3,
    atol: float = 1e-5,
    tally: _Tally | None = None,
) -> tuple[float, float, bool]:
    """(max abs diff, agreement of the worker's answers, all close) for one batch of outputs;
    a segmenter's class overlaps are added to ``tally``."""
    if ref.shape != out.shape:
        raise ShapeMismatch(
            f"ONNX Runtime's output is shaped {list(out.shape)}, PyTorch's {list(ref.shape)}"
        )
    diff = _max_abs_diff(ref, out)
    close = all_close(ref, out, rtol, atol)
    if model.kind == "scores":
        top_ref = [t[0][0] for t in classify(ref, model.activation, 1)]
        top_out = [t[0][0] for t in classify(out, model.activation, 1)]
        same = sum(a == b for a, b in zip(top_ref, top_out, strict=True))
        return diff, same / max(len(top_ref), 1), close
    maps_ref, bits_ref = segment(ref, model.kind, model.activation, model.threshold)
    maps_out, bits_out = segment(out, model.kind, model.activation, model.threshold)
    if bits_ref is not None and bits_out is not None:
        if tally is not None:
            tally.add(bits_ref, bits_out)
        return diff, float(np.mean(bits_ref == bits_out)), close
    if tally is not None:
        tally.add(maps_ref, maps_out)
    return diff, float(np.mean(maps_ref == maps_out)), close


def random_images(n: int, hw: tuple[int, int], seed: int) -> list[Array]:
    """Noise BGR images: every pixel value, every channel, no structure a model could like."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(n)]


def read_samples(directory: Path) -> list[tuple[Path, Array]]:
    """The images in ``directory`` (sorted by name, at most ``MAX_SAMPLES``), read as BGR."""
    if not directory.is_dir():
        raise ExportError(f"--samples '{directory}': not a directory")
    paths = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ExportError(f"--samples '{directory}': no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    images = []
    for p in paths[:MAX_SAMPLES]:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ExportError(f"--samples: cannot read image '{p}'")
        images.append((p, img))
    return images


def _run(model: Model, reference: Reference, x: Array, what: str) -> tuple[Array, Array]:
    shape = list(x.shape)
    try:
        ref = reference(x)
    except Exception as e:
        raise ExportError(f"PyTorch fails on {what} shaped {shape}: {type(e).__name__}: {e}") from e
    try:
        out = model.engine.run(x)
    except Exception as e:
        raise ExportError(
            f"ONNX Runtime fails on {what} shaped {shape}: {type(e).__name__}: {e}"
        ) from e
    return ref, out


def sample_input(model: Model, image: Array) -> Array:
    """One image as ``worker run`` feeds it to ``model`` (a fixed batch filled with it)."""
    x = preprocess([image], plan_for(model))
    if model.batch is not None and model.batch > 1:
        x = np.repeat(x, model.batch, axis=0)
    return x


def verify(
    model: Model,
    reference: Reference,
    shapes: Sequence[tuple[int, int, int]],
    samples: Sequence[Array] = (),
    *,
    seed: int = 0,
    rtol: float = 1e-3,
    atol: float = 1e-5,
) -> list[Check]:
    """Compare on noise images at each (batch, height, width), then on ``samples``.

    Noise is preprocessed with the model's plan at that size; samples are preprocessed exactly
    as ``worker run`` would (one at a time: they may differ in size).
    """
    measure = "top1" if model.kind == "scores" else "mask"
    plan = plan_for(model)
    checks = []
    for i, (n, h, w) in enumerate(shapes):
        x = preprocess(random_images(n, (h, w), seed + i), dataclasses.replace(plan, hw=(h, w)))
        ref, out = _run(model, reference, x, "random inputs")
        tally = _Tally({}, {}) if measure == "mask" else None
        diff, agree, close = _compare_at(model, ref, out, rtol, atol, tally, x.shape)
        iou = tally.iou(model) if tally is not None else None
        checks.append(Check("random", tuple(x.shape), n, diff, agree, measure, close, iou))
    if samples:
        diffs, agrees, closes = [], [], []
        tally = _Tally({}, {}) if measure == "mask" else None
        for img in samples:
            x = sample_input(model, img)
            ref, out = _run(model, reference, x, "a sample image")
            diff, agree, close = _compare_at(model, ref, out, rtol, atol, tally, x.shape)
            diffs.append(diff)
            agrees.append(agree)
            closes.append(close)
        checks.append(
            Check(
                "samples",
                tuple(x.shape),
                len(samples),
                max(diffs),
                float(np.mean(agrees)),
                measure,
                all(closes),
                tally.iou(model) if tally is not None else None,
            )
        )
    return checks


def _compare_at(
    model: Model,
    ref: Array,
    out: Array,
    rtol: float,
    atol: float,
    tally: _Tally | None,
    shape: tuple[int, ...],
) -> tuple[float, float, bool]:
    try:
        return compare(model, ref, out, rtol, atol, tally)
    except ShapeMismatch as e:
        raise ShapeMismatch(f"{e} for an input shaped {list(shape)}") from e
