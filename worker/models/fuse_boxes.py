"""A YOLO head's post-processing as a graph: NMS on the device, only kept boxes leave it.

The fused graph of a detector (``worker.models.fuse``) ends here instead of at the head's raw
output ([N, 4 + C, 8400] floats: 2.8 MB a frame for 80 classes at 640). Per frame, what
``worker.ops.detect.detections`` does on the host, op for op:

- v8 / v8seg ([N, 4 + C (+ 32), A]) transposed to [N, A, F]; v5 ([N, A, 5 + C]) as it is, its
  class scores times the objectness;
- each anchor's best class and its score (ReduceMax, ArgMax: the first of equal maxima);
- boxes shifted by class * 7680 (Ultralytics' offset: boxes of different classes never
  overlap), ``NonMaxSuppression`` with ``center_point_box`` at the card's iou, conf and
  max_det (per frame: the batch axis is NMS's own);
- the kept anchors gathered (GatherND on (frame, anchor)) and their boxes turned to corners.

Output ``rows`` [K, 7 (+ 32)] float32: frame index in the batch, x1, y1, x2, y2 (input
pixels), score, class (then the 32 mask coefficients); an instance segmenter's prototypes
pass through as ``protos``. K is known only after the run: the engine lets ONNX Runtime
allocate these outputs (no CUDA graphs). The host splits the rows per frame, best first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
from onnx import TensorProto, helper

if TYPE_CHECKING:
    from worker.models.fuse import _Builder
    from worker.models.fuse_spec import FuseSpec

__all__ = ["box_post", "box_width"]
_COEFS = 32
_MAX_WH = 7680.0  # as worker.ops.detect


def _classes(spec: FuseSpec) -> int:
    s = spec.output_shape
    if spec.kind == "boxes_v5":
        return s[-1] - 5
    return s[1] - 4 - (_COEFS if spec.kind == "boxes_v8seg" else 0)


def box_width(spec: FuseSpec) -> int:
    """Columns of ``rows``: frame index, box, score, class (and the coefficients)."""
    return 7 + (_COEFS if spec.kind == "boxes_v8seg" else 0)


def box_post(
    b: _Builder, spec: FuseSpec, y: str, dims: Any
) -> tuple[list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
    """Appends the nodes to ``b`` (reading the head's output ``y``); returns the extra graph
    inputs (the prototypes) and the outputs."""
    f32 = np.dtype(np.float32)
    c = _classes(spec)

    def ints(*v: int) -> str:
        return b.const(np.array(v, np.int64), "i")

    def cut(x: str, start: int, end: int) -> str:
        return b.op("Slice", [x, ints(start), ints(end), ints(2)], "cut")

    x = y if spec.output_dtype == f32 else b.cast(y, f32)
    feats = x if spec.kind == "boxes_v5" else b.op("Transpose", [x], "feats", perm=[0, 2, 1])
    boxes = cut(feats, 0, 4)  # [N, A, 4] cx, cy, w, h
    if spec.kind == "boxes_v5":
        scores = b.op("Mul", [cut(feats, 5, 5 + c), cut(feats, 4, 5)], "scores")
    else:
        scores = cut(feats, 4, 4 + c)
    best = b.op("ReduceMax", [scores, ints(2)] if b.opset >= 18 else [scores], "best",
                keepdims=1, **({} if b.opset >= 18 else {"axes": [2]}))  # fmt: skip
    which = b.cast(b.op("ArgMax", [scores], "which", axis=2, keepdims=1), f32)  # [N, A, 1]
    shift = b.op("Mul", [which, b.const(np.array(_MAX_WH, np.float32), "offset")], "shift")
    centres = b.op("Add", [cut(boxes, 0, 2), shift], "centres")
    shifted = b.op("Concat", [centres, cut(boxes, 2, 4)], "shifted", axis=2)
    per_class = b.op("Transpose", [best], "per_class", perm=[0, 2, 1])  # [N, 1, A]
    selected = b.op(
        "NonMaxSuppression",
        [
            shifted,
            per_class,
            b.const(np.array([spec.max_det], np.int64), "max_det"),
            b.const(np.array([spec.iou], np.float32), "iou"),
            b.const(np.array([spec.conf], np.float32), "conf"),
        ],
        "selected",
        center_point_box=1,
    )  # [K, 3]: frame, class (0: one, the offset keeps classes apart), anchor
    where = b.op("Gather", [selected, ints(0, 2)], "where", axis=1)  # [K, 2]
    kept = b.op("GatherND", [feats, where], "kept")  # [K, F]
    k_best = b.op("GatherND", [best, where], "k_best")  # [K, 1]
    k_which = b.op("GatherND", [which, where], "k_which")
    k_boxes = b.op("Slice", [kept, ints(0), ints(4), ints(1)], "k_boxes")
    k_centre = b.op("Slice", [k_boxes, ints(0), ints(2), ints(1)], "k_centre")
    half = b.op(
        "Mul",
        [b.op("Slice", [k_boxes, ints(2), ints(4), ints(1)], "k_wh"),
         b.const(np.array(0.5, np.float32), "half")],
        "k_half",
    )  # fmt: skip
    frame = b.cast(b.op("Slice", [where, ints(0), ints(1), ints(1)], "k_frame"), f32)
    parts = [
        frame,
        b.op("Sub", [k_centre, half], "x1y1"),
        b.op("Add", [k_centre, half], "x2y2"),
        k_best,
        k_which,
    ]
    if spec.kind == "boxes_v8seg":
        parts.append(b.op("Slice", [kept, ints(4 + c), ints(4 + c + _COEFS), ints(1)], "coefs"))
    b.nodes.append(helper.make_node("Concat", parts, ["rows"], axis=1))
    outputs = [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["k", box_width(spec)])]
    inputs = []
    if spec.kind == "boxes_v8seg":
        proto_type = helper.np_dtype_to_tensor_dtype(spec.output_dtype)
        inputs.append(helper.make_tensor_value_info("protos", proto_type, dims(4, "p")))
        p = "protos" if spec.output_dtype == f32 else b.cast("protos", f32)
        b.nodes.append(helper.make_node("Identity", [p], ["protos_out"]))
        outputs.append(helper.make_tensor_value_info("protos_out", TensorProto.FLOAT, dims(4, "q")))
    return inputs, outputs
