"""The fused graph: uint8 frames in, uint8 masks (or a few top-k numbers) out.

Built at session load around the user's model with ``onnx.compose``::

    frames uint8 --pre--> model input --user's model--> output --post--> answer

The frames cross as planes [N,3,h,w] in the model's colour order, which the host cuts from
the warped frame in one pass (``worker.ops.preprocess.planar``: ~6x cheaper than ONNX Runtime's
Transpose and Gather); only a uint8 NHWC model gets the warped BGR frames [N,h,w,3] (it needs
no normalising). pre: colour order (Gather, uint8 NHWC only), Cast, ``pixel * a + b``
(scale/mean/std folded into one multiply-add per channel, the same float32 numbers
``worker.ops.preprocess`` uses), a Transpose back to NHWC for an NHWC model (ONNX Runtime
cancels it against the model's own), Cast to the model's dtype; optionally a Resize of whole
BGR frames (stretch only, see ``FuseSpec.resize_in_graph``; layout and colour order then in the
graph too).
post, by output kind: multiclass ArgMax + Cast uint8; binary and multi-label a threshold
(on the logit when the card says sigmoid, so no exp); class maps clipped to 0..254 | 255;
classification an optional Softmax/Sigmoid then TopK; a YOLO detector's NMS
(``worker.models.fuse_boxes``), only the kept boxes out. The answers equal what
``worker.ops.postprocess`` computes from the raw output, op for op, so the fused path is exact
wherever the host path is (tests compare them on random frames).

Only uint8 frames and the small answers cross between host and device; the float tensors
(the model input, its logits) live and die on the device.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import onnx
import onnx.checker
import onnx.compose
from onnx import TensorProto, helper, numpy_helper

from worker.errors import FuseError
from worker.models.fuse_boxes import box_post
from worker.models.fuse_spec import BOX_KINDS, FusedGraph, FuseSpec, bits_dtype

__all__ = ["MIN_OPSET", "FuseSpec", "FusedGraph", "bits_dtype", "fuse", "pre_graph"]
# (FuseSpec, FusedGraph and bits_dtype live in ``fuse_spec``, which imports no onnx: a run
# whose fused graph comes from the disk cache never loads onnx.)

#: Resize with half_pixel and TopK with ``largest``/``sorted`` exist from opset 11.
MIN_OPSET = 11
_PRE, _POST = "vw_pre/", "vw_post/"
_FLOAT_OUT = (np.dtype(np.float32), np.dtype(np.float16))
# ------------------------------------------------------------------------------ building


def _const(name: str, value: np.ndarray[Any, Any]) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.asarray(value), name)
    )


class _Builder:
    """Appends nodes to one graph; each step returns the name of its output."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}_{self._n}"

    def op(self, op: str, inputs: list[str], hint: str, **attrs: Any) -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def const(self, value: np.ndarray[Any, Any], hint: str) -> str:
        out = self.name(hint)
        self.nodes.append(_const(out, value))
        return out

    def cast(self, x: str, to: np.dtype[Any]) -> str:
        return self.op("Cast", [x], "cast", to=helper.np_dtype_to_tensor_dtype(to))


def pre_graph(spec: FuseSpec, opset: int = 17, ir: int = 9) -> onnx.ModelProto:
    """The preprocessing part alone: ``frames`` uint8 (``FusedGraph.input_shape``) ->
    ``pixels`` (the model input)."""
    b = _Builder(opset)
    n: int | str = spec.batch or "N"
    h, w = spec.hw
    frame_dims: list[int | str] = (
        [n, "H", "W", 3] if spec.resize_in_graph else [n, 3, h, w] if spec.planar else [n, h, w, 3]
    )
    x = "frames"
    f32 = np.dtype(np.float32)
    nchw = spec.layout == "NCHW"
    if spec.resize_in_graph:
        # Resize works on NCHW (the CUDA kernel needs it); go there first, on uint8.
        x = b.op("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
        x = b.cast(x, f32)
        lead = b.op(
            "Slice",
            [
                b.op("Shape", [x], "shape"),
                b.const(np.array([0], np.int64), "s0"),
                b.const(np.array([2], np.int64), "s1"),
            ],
            "lead",
        )
        sizes = b.op("Concat", [lead, b.const(np.array([h, w], np.int64), "hw")], "sizes", axis=0)
        if opset >= 13:
            resize_in = [x, "", "", sizes]
        else:  # opset 11/12: roi and scales are required inputs, empty when sizes is given
            empty = b.const(np.zeros(0, np.float32), "empty")
            resize_in = [x, empty, empty, sizes]
        # half_pixel linear is the pixel-centre convention of worker.ops.preprocess (stretch).
        x = b.op(
            "Resize",
            resize_in,
            "resized",
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        )
        # Round to whole pixel values as the host warp (uint8) does, so both modes feed the
        # model the same kind of numbers.
        x = b.op("Round", [x], "round")
        channel_axis = 1
    else:
        channel_axis = 1 if spec.planar else 3
    if spec.rgb and not spec.planar:
        x = b.op(
            "Gather", [x, b.const(np.array([2, 1, 0], np.int64), "rgb")], "rgb", axis=channel_axis
        )
    if spec.dtype == np.uint8:
        if spec.resize_in_graph:
            x = b.cast(x, np.dtype(np.uint8))
    else:
        if not spec.resize_in_graph:
            x = b.cast(x, f32)
        shape = [1, 3, 1, 1] if channel_axis == 1 else [1, 1, 1, 3]
        a = np.asarray(spec.a, np.float32).reshape(shape)
        c = np.asarray(spec.b, np.float32).reshape(shape)
        # Mul then Add, like preprocess's ``x *= a; x += b``: the same float32 roundings. A
        # scale of 1 or a shift of 0 changes no value (a YOLO model's input is pixel / 255,
        # no mean): that pass over the model's input is left out.
        if any(v != 1.0 for v in spec.a):
            x = b.op("Mul", [x, b.const(a, "scale")], "scaled")
        if any(v != 0.0 for v in spec.b):
            x = b.op("Add", [x, b.const(c, "shift")], "normalised")
    if channel_axis == 1 and not nchw:
        # Normalised as planes, where the per-channel multiply-add is ~10x cheaper per element
        # than over a channel-last tensor; ONNX Runtime cancels this Transpose against the
        # NHWC model's own first one back to planes.
        x = b.op("Transpose", [x], "nhwc", perm=[0, 2, 3, 1])
    if spec.dtype not in (np.dtype(np.uint8), f32):
        x = b.cast(x, spec.dtype)
    b.nodes.append(helper.make_node("Identity", [x], ["pixels"]))
    model_dims: list[int | str] = [n, 3, h, w] if nchw else [n, h, w, 3]
    graph = helper.make_graph(
        b.nodes,
        "pre",
        [helper.make_tensor_value_info("frames", TensorProto.UINT8, frame_dims)],
        [
            helper.make_tensor_value_info(
                "pixels", helper.np_dtype_to_tensor_dtype(spec.dtype), model_dims
            )
        ],
    )
    return _model(graph, opset, ir)


def _logit(threshold: float) -> np.float32:
    # sigmoid(x) > t  <=>  x > log(t / (1 - t)), computed as worker.ops.postprocess does.
    return np.float32(np.log(threshold / (1.0 - threshold)))


def _above(b: _Builder, y: str, spec: FuseSpec) -> str:
    """Boolean ``y > threshold``, in float32 like ``worker.ops.postprocess`` (same numbers)."""
    f32 = np.dtype(np.float32)
    x = y if spec.output_dtype == f32 else b.cast(y, f32)
    if spec.activation == "sigmoid":
        t = _logit(spec.threshold)
    else:
        t = np.float32(spec.threshold)
    return b.op("Greater", [x, b.const(np.array(t, np.float32), "threshold")], "above")


def _dims(rank: int, hint: str) -> list[int | str]:
    # Symbolic dims: ONNX Runtime fixes them per run; the checker wants a rank.
    return [f"{hint}{i}" for i in range(rank)]


def _post(spec: FuseSpec, opset: int, ir: int) -> tuple[onnx.ModelProto, list[str]]:
    b = _Builder(opset)
    rank = len(spec.output_shape)
    mask_rank = rank - 1 if spec.kind in ("multiclass", "multilabel") else rank
    f32, i64 = np.dtype(np.float32), np.dtype(np.int64)
    y = "y"
    outputs: list[onnx.ValueInfoProto] = []
    inputs: list[onnx.ValueInfoProto] = []
    kind = spec.kind
    if kind in BOX_KINDS:
        inputs, outputs = box_post(b, spec, y, _dims)
    elif kind == "multiclass":
        x = y if spec.output_dtype == f32 else b.cast(y, f32)
        # ArgMax takes the first of equal maxima, like numpy's argmax.
        idx = b.op("ArgMax", [x], "argmax", axis=1, keepdims=0)
        b.nodes.append(helper.make_node("Cast", [idx], ["mask"], to=TensorProto.UINT8))
        outputs.append(
            helper.make_tensor_value_info("mask", TensorProto.UINT8, _dims(mask_rank, "m"))
        )
    elif kind == "binary":
        b.nodes.append(
            helper.make_node("Cast", [_above(b, y, spec)], ["mask"], to=TensorProto.UINT8)
        )
        outputs.append(
            helper.make_tensor_value_info("mask", TensorProto.UINT8, _dims(mask_rank, "m"))
        )
    elif kind == "class_map":
        x = y if spec.output_dtype == i64 else b.cast(y, i64)
        bad = b.op(
            "Or",
            [
                b.op("Less", [x, b.const(np.array(0, np.int64), "zero")], "neg"),
                b.op("Greater", [x, b.const(np.array(254, np.int64), "top")], "big"),
            ],
            "bad",
        )
        none = b.const(np.array(255, np.int64), "none")
        fixed = b.op("Where", [bad, none, x], "fixed")
        b.nodes.append(helper.make_node("Cast", [fixed], ["mask"], to=TensorProto.UINT8))
        outputs.append(
            helper.make_tensor_value_info("mask", TensorProto.UINT8, _dims(mask_rank, "m"))
        )
    elif kind == "multilabel":
        c = spec.classes
        on = b.cast(_above(b, y, spec), i64)
        weights = (np.int64(1) << np.arange(c, dtype=np.int64)).reshape(1, c, 1, 1)
        weighted = b.op("Mul", [on, b.const(weights, "bit")], "weighted")
        if opset >= 13:
            packed = b.op(
                "ReduceSum",
                [weighted, b.const(np.array([1], np.int64), "axis")],
                "packed",
                keepdims=0,
            )
        else:
            packed = b.op("ReduceSum", [weighted], "packed", axes=[1], keepdims=0)
        to = helper.np_dtype_to_tensor_dtype(bits_dtype(c))
        b.nodes.append(helper.make_node("Cast", [packed], ["bits"], to=to))
        outputs.append(helper.make_tensor_value_info("bits", to, _dims(mask_rank, "m")))
    elif kind == "scores":
        x = y if spec.output_dtype == f32 else b.cast(y, f32)
        if spec.activation == "softmax":
            x = b.op("Softmax", [x], "softmax", axis=1)
        elif spec.activation == "sigmoid":
            x = b.op("Sigmoid", [x], "sigmoid")
        k = b.const(np.array([spec.k], np.int64), "k")
        # Equal scores: the lower index first, as a stable argsort of -scores orders them.
        b.nodes.append(
            helper.make_node("TopK", [x, k], ["scores", "indices"], axis=1, largest=1, sorted=1)
        )
        outputs += [
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, _dims(2, "k")),
            helper.make_tensor_value_info("indices", TensorProto.INT64, _dims(2, "k")),
        ]
    else:
        raise FuseError(f"output kind {kind!r} has no in-graph post-processing")
    graph = helper.make_graph(
        b.nodes,
        "post",
        [
            helper.make_tensor_value_info(
                "y", helper.np_dtype_to_tensor_dtype(spec.output_dtype), _dims(rank, "y")
            ),
            *inputs,
        ],
        outputs,
    )
    return _model(graph, opset, ir), [o.name for o in outputs]


def _model(graph: onnx.GraphProto, opset: int, ir: int) -> onnx.ModelProto:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir  # onnx.compose merges only models of one IR version
    return m


def _check_fusable(model: onnx.ModelProto, spec: FuseSpec) -> tuple[int, str, str]:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        raise FuseError(f"opset {opset} < {MIN_OPSET} (Resize/TopK as used here need 11)")
    external = [t.name for t in model.graph.initializer if t.data_location == TensorProto.EXTERNAL]
    if external:
        raise FuseError(f"weights in external data files ({len(external)} tensors)")
    if spec.kind in ("multiclass", "binary", "multilabel", "scores", *BOX_KINDS):
        if spec.output_dtype not in _FLOAT_OUT:
            raise FuseError(f"{spec.kind} output of type {spec.output_dtype} (float32/16 only)")
    elif not np.issubdtype(spec.output_dtype, np.integer):
        raise FuseError(f"class map of type {spec.output_dtype}")
    if spec.kind == "multilabel" and spec.classes > 32:
        raise FuseError(f"{spec.classes} labels; multi-label masks hold at most 32")
    if spec.kind == "scores" and spec.k < 1:
        raise FuseError("top-k of 0")
    for t in (*spec.a, *spec.b):
        if not math.isfinite(t):
            raise FuseError("non-finite scale/mean/std")
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or not model.graph.output:
        raise FuseError("not one image input and at least one output")
    if spec.kind == "boxes_v8seg" and len(model.graph.output) < 2:
        raise FuseError("an instance segmenter without its prototypes output")
    return int(opset), inputs[0], model.graph.output[0].name


def fuse(model: onnx.ModelProto, spec: FuseSpec) -> FusedGraph:
    """Wrap ``model`` per ``spec``; raises ``FuseError`` with the reason when it cannot."""
    opset, model_in, model_out = _check_fusable(model, spec)
    pre = onnx.compose.add_prefix(pre_graph(spec, opset, model.ir_version), _PRE)
    post_model, post_outputs = _post(spec, opset, model.ir_version)
    post = onnx.compose.add_prefix(post_model, _POST)
    # An instance segmenter's prototypes (its second output) go through post as they are.
    io_map = [(model_out, f"{_POST}y")]
    if spec.kind == "boxes_v8seg":
        io_map.append((model.graph.output[1].name, f"{_POST}protos"))
    try:
        front = onnx.compose.merge_models(
            pre, model, io_map=[(f"{_PRE}pixels", model_in)], outputs=[m for m, _ in io_map]
        )
        outputs = [f"{_POST}{o}" for o in post_outputs]
        fused = onnx.compose.merge_models(front, post, io_map=io_map, outputs=outputs)
        fused.graph.name = f"{model.graph.name or 'model'}_fused"
        onnx.checker.check_model(fused)
    except Exception as e:  # onnx.compose raises ValueError; the checker ValidationError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise FuseError(f"onnx.compose could not merge it: {first}") from e
    return FusedGraph(
        proto=fused,
        spec=spec,
        input_name=f"{_PRE}frames",
        output_names=tuple(outputs),
    )
