"""What the fused graph does and how its outputs look, without building it (no onnx import):
a run whose fused graph comes from the disk cache (``fused_cache``) needs only this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from worker.models.engine import OutputSpec

if TYPE_CHECKING:
    import onnx

__all__ = ["BOX_KINDS", "Activation", "FuseSpec", "FusedGraph", "Kind", "bits_dtype", "split_rows"]

#: Fused detector kinds (``e2e`` has its NMS inside already: its output is small as it is).
BOX_KINDS = ("boxes_v8", "boxes_v5", "boxes_v8seg")

Kind = Literal[
    "scores", "multiclass", "multilabel", "binary", "class_map",
    "boxes_v8", "boxes_v5", "boxes_v8seg",
]  # fmt: skip
Activation = Literal["softmax", "sigmoid", "none"]


@dataclass(frozen=True)
class FuseSpec:
    """Everything the wrapper needs, resolved from a model, its card and the run options."""

    layout: Literal["NCHW", "NHWC"]
    dtype: np.dtype[Any]  # the model input's element type
    hw: tuple[int, int]  # model input (h, w)
    batch: int | None  # the graph's fixed batch, or None when dynamic
    rgb: bool  # the model wants RGB; frames are BGR
    a: tuple[float, float, float]  # pixel * a + b per channel, in the model's channel order
    b: tuple[float, float, float]
    kind: Kind
    activation: Activation
    threshold: float
    output_dtype: np.dtype[Any]
    output_shape: tuple[int, ...]  # from the probe run, batch first
    top_k: int = 5
    # Frames cross at their own size and a Resize in the graph makes the model input (stretch
    # only). Off: the host warps frames to the model size first (cheaper to move, exact).
    resize_in_graph: bool = False
    # Detectors: the card's confidence, NMS overlap and boxes per frame.
    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300

    @property
    def planar(self) -> bool:
        """Frames cross as planes (N, 3, h, w) in the model's colour order, made by the host
        (``worker.ops.preprocess.planar``) from the warped frames; else as warped BGR frames
        (N, h, w, 3): a uint8 NHWC model's (nothing to normalise), or whole ones with the
        resize in the graph."""
        if self.resize_in_graph:
            return False
        return self.layout == "NCHW" or self.dtype != np.uint8

    @property
    def classes(self) -> int:
        return self.output_shape[1] if len(self.output_shape) >= 2 else 1

    @property
    def k(self) -> int:
        return min(self.top_k, self.output_shape[-1])


def bits_dtype(classes: int) -> np.dtype[Any]:
    """The narrowest unsigned type holding one bit per class (multi-label masks)."""
    return np.dtype(np.uint8 if classes <= 8 else np.uint16 if classes <= 16 else np.uint32)


@dataclass(frozen=True)
class FusedGraph:
    proto: onnx.ModelProto | None  # None when it came from the disk cache as bytes
    spec: FuseSpec
    input_name: str
    output_names: tuple[str, ...]

    def input_shape(self, n: int, frame_hw: tuple[int, int]) -> tuple[int, int, int, int]:
        h, w = frame_hw if self.spec.resize_in_graph else self.spec.hw
        return (n, 3, h, w) if self.spec.planar else (n, h, w, 3)

    def output_specs(self, n: int) -> list[OutputSpec] | None:
        """Shapes and dtypes of the outputs for a batch of ``n`` (known before running);
        None for a detector (how many boxes it keeps is known only after)."""
        s = self.spec
        if s.kind in BOX_KINDS:
            return None
        rest = s.output_shape[1:]
        u8 = np.dtype(np.uint8)
        if s.kind == "scores":
            return [((n, s.k), np.dtype(np.float32)), ((n, s.k), np.dtype(np.int64))]
        if s.kind == "multiclass":
            return [((n, *rest[1:]), u8)]
        if s.kind == "multilabel":
            return [((n, *rest[1:]), bits_dtype(s.classes))]
        return [((n, *rest), u8)]  # binary, class_map: the output's own shape


def split_rows(rows: np.ndarray[Any, Any], n: int) -> list[np.ndarray[Any, Any]]:
    """A fused detector's ``rows`` per frame of a batch of ``n``, without the frame column,
    best score first (stable, as the host's NMS orders them)."""
    out = []
    for i in range(n):
        mine = rows[rows[:, 0] == i, 1:]
        out.append(mine[np.argsort(-mine[:, 4], kind="stable")])
    return out
