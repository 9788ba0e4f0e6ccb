"""Reading what an ONNX graph says about itself: its image input and its output.

Everything here works on the protobuf only; running the model is ``worker.models.engine``'s job.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import onnx
import onnx.checker
import onnx.helper

from worker.errors import ModelError
from worker.models.forms import object_form

__all__ = ["Dim", "GraphInfo", "TensorInfo", "read_graph"]

#: A dimension: a fixed size, or ``None`` when it is symbolic or unknown (dynamic).
Dim = int | None
Layout = Literal["NCHW", "NHWC"]

SUPPORTED_INPUT_DTYPES = (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.uint8))
# Ops that move or reshape values without changing them: we look through them to find
# whether the graph already ends in an activation.
_PASS_THROUGH = {"Identity", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Flatten", "Cast"}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[Dim, ...] | None  # None when the graph does not record a shape
    dtype: np.dtype[np.generic]

    def describe(self) -> str:
        if self.shape is None:
            return f"{self.name}[?] {self.dtype}"
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}[{dims}] {self.dtype}"


@dataclass(frozen=True)
class GraphInfo:
    path: Path
    proto: onnx.ModelProto
    input: TensorInfo
    output: TensorInfo
    layout: Layout
    batch: Dim
    height: Dim
    width: Dim
    final_op: str | None  # op type that produces the output, seen through pass-through ops
    opset: int
    #: Every output (``output`` is the first): an instance segmenter's prototypes are second.
    outputs: tuple[TensorInfo, ...] = ()


def _tensor_info(value: onnx.ValueInfoProto) -> TensorInfo:
    t = value.type.tensor_type
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)) if t.elem_type else None
    if dtype is None:
        raise ModelError(f"tensor '{value.name}' has no element type")
    shape: tuple[Dim, ...] | None = None
    if t.HasField("shape"):
        shape = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in t.shape.dim
        )
    return TensorInfo(value.name, shape, dtype)


def _load(path: Path) -> onnx.ModelProto:
    if not path.is_file():
        raise ModelError(f"model '{path}': file not found")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError, RuntimeWarning-ish or ValueError
        raise ModelError(f"model '{path}': not an ONNX model ({e})") from e
    try:
        # The path form also works for models over 2 GB with external data.
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as e:
        # The whole message (its context lines say which node), on one line.
        said = " ".join(x.strip() for x in str(e).splitlines() if x.strip()) or type(e).__name__
        raise ModelError(f"model '{path}': fails onnx.checker: {said}") from e
    except Exception as e:
        raise ModelError(f"model '{path}': not an ONNX model ({e})") from e
    return proto


def _final_op(graph: onnx.GraphProto, output: str) -> str | None:
    producers = {o: n for n in graph.node for o in n.output}
    name, seen = output, 0
    while name in producers and seen < 32:
        node = producers[name]
        if node.op_type not in _PASS_THROUGH or not node.input:
            return str(node.op_type)
        name, seen = node.input[0], seen + 1
    return None


def read_graph(path: Path) -> GraphInfo:
    """Load, check and describe a model; refuse inputs we cannot feed with a precise message."""
    proto = _load(path)
    graph = proto.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [_tensor_info(i) for i in graph.input if i.name not in initializers]
    outputs = [_tensor_info(o) for o in graph.output]
    expected = "one image input shaped [N,3,H,W] (NCHW) or [N,H,W,3] (NHWC)"
    found = ", ".join(i.describe() for i in inputs) or "none"
    if len(inputs) != 1:
        raise ModelError(
            f"model '{path}': expected {expected}; found {len(inputs)} inputs: {found}"
        )
    if not outputs:
        raise ModelError(f"model '{path}': the graph has no outputs")
    inp = inputs[0]
    if inp.shape is None or len(inp.shape) != 4:
        raise ModelError(f"model '{path}': expected {expected}; found {found}")
    if inp.dtype not in SUPPORTED_INPUT_DTYPES:
        raise ModelError(
            f"model '{path}': input {inp.describe()} has element type {inp.dtype}; "
            "expected float32, float16 or uint8"
        )
    n, d1, d2, d3 = inp.shape
    layout: Layout
    if d1 == 3:
        layout, h, w = "NCHW", d2, d3
    elif d3 == 3:
        layout, h, w = "NHWC", d1, d2
    else:
        raise ModelError(
            f"model '{path}': expected {expected} with 3 colour channels; found {found}"
        )
    metadata = {p.key: p.value for p in proto.metadata_props}
    form = object_form(metadata, [(o.name, o.shape) for o in outputs])
    if form is not None:
        raise ModelError(
            f"model '{path}': {form} (outputs {', '.join(o.describe() for o in outputs)}); "
            "object models (boxes, instance masks) are not supported yet, and read as a "
            "segmentation map its answers would be wrong"
        )
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    return GraphInfo(
        path=path,
        proto=proto,
        input=inp,
        output=outputs[0],
        outputs=tuple(outputs),
        layout=layout,
        batch=n,
        height=h,
        width=w,
        final_op=_final_op(graph, outputs[0].name),
        opset=int(opset),
    )
