"""Reading what an ONNX graph says about itself: its image input and its output.

Everything here works on the protobuf only; running the model is ``worker.models.engine``'s job.
What was read is kept with the fused graphs (``fused_cache``, under the file's SHA-256), so a
second start of the same model reads it back as JSON and never imports onnx (whose import
costs ~0.8 s here, most of a warm start).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from worker.errors import ModelError
from worker.models import fused_cache
from worker.models.forms import object_form

if TYPE_CHECKING:
    import onnx

__all__ = ["Dim", "GraphInfo", "TensorInfo", "read_graph", "remember_probe"]

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
    metadata: dict[str, str] = field(default_factory=dict)  # the graph's metadata_props
    external: bool = False  # weights in external data files
    sha256: str | None = None  # of the file, when read through the cache
    #: Output shapes seen on a blank input, per "HxW" (from the cache; ``remember_probe``).
    probes: dict[str, list[list[int]]] = field(default_factory=dict)
    #: Quantized with int8 weights (``worker.models.cpu``: they saturate without VNNI).
    int8_weights: bool = False

    def load_proto(self) -> onnx.ModelProto:
        """The graph itself (imports onnx): for building the fused graph."""
        import onnx

        return onnx.load(str(self.path), load_external_data=False)


def _tensor_info(value: onnx.ValueInfoProto) -> TensorInfo:
    import onnx.helper

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
    import onnx
    import onnx.checker

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


def read_graph(path: Path, cache_dir: Path | None = None) -> GraphInfo:
    """Load, check and describe a model; refuse inputs we cannot feed with a precise message.
    ``cache_dir``: where what was read is kept (and read back, by the file's SHA-256)."""
    if not path.is_file():
        raise ModelError(f"model '{path}': file not found")
    if cache_dir is None:
        return _read(path)
    try:
        sha = fused_cache.model_sha256(path, cache_dir)
    except OSError as e:
        raise ModelError(f"model '{path}': cannot be read ({e.strerror or e})") from e
    facts = fused_cache.load_facts(cache_dir, sha)
    if facts is not None:
        try:
            return _from_facts(path, sha, facts)
        except (KeyError, TypeError, ValueError):
            pass  # an entry of another shape: read the model again
    g = replace(_read(path), sha256=sha)
    fused_cache.store_facts(cache_dir, sha, _to_facts(g))
    return g


def remember_probe(
    g: GraphInfo, cache_dir: Path | None, key: str, shapes: list[tuple[int, ...]]
) -> None:
    """Keep the output shapes a blank input gave at ``key`` ("HxW") with the graph's facts."""
    if cache_dir is None or g.sha256 is None:
        return
    g.probes[key] = [list(s) for s in shapes]
    fused_cache.store_facts(cache_dir, g.sha256, _to_facts(g))


def _tensor_facts(t: TensorInfo) -> dict[str, Any]:
    shape = None if t.shape is None else list(t.shape)
    return {"name": t.name, "shape": shape, "dtype": t.dtype.str}


def _tensor_from(d: dict[str, Any]) -> TensorInfo:
    shape = None if d["shape"] is None else tuple(None if v is None else int(v) for v in d["shape"])
    return TensorInfo(str(d["name"]), shape, np.dtype(d["dtype"]))


def _to_facts(g: GraphInfo) -> dict[str, Any]:
    d = asdict(g)
    d.pop("path")
    d.pop("sha256")
    d["input"] = _tensor_facts(g.input)
    d["output"] = _tensor_facts(g.output)
    d["outputs"] = [_tensor_facts(o) for o in g.outputs]
    return d


def _from_facts(path: Path, sha: str, d: dict[str, Any]) -> GraphInfo:
    layout = d["layout"]
    if layout not in ("NCHW", "NHWC"):
        raise ValueError(layout)
    return GraphInfo(
        path=path,
        input=_tensor_from(d["input"]),
        output=_tensor_from(d["output"]),
        outputs=tuple(_tensor_from(o) for o in d["outputs"]),
        layout=layout,
        batch=d["batch"],
        height=d["height"],
        width=d["width"],
        final_op=d["final_op"],
        opset=int(d["opset"]),
        metadata={str(k): str(v) for k, v in d["metadata"].items()},
        external=bool(d["external"]),
        sha256=sha,
        probes={str(k): [[int(x) for x in s] for s in v] for k, v in d["probes"].items()},
        int8_weights=bool(d["int8_weights"]),
    )


#: Where quantized weights enter: the QDQ form's DequantizeLinear, the operator form's ops.
_WEIGHT_INPUT = {
    "DequantizeLinear": 0,
    "QLinearConv": 3,
    "QLinearMatMul": 3,
    "ConvInteger": 1,
    "MatMulInteger": 1,
}


def _read(path: Path) -> GraphInfo:
    import onnx

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
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in graph.initializer)
    int8 = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8}
    return GraphInfo(
        path=path,
        metadata=metadata,
        external=external,
        int8_weights=any(
            n.input[k] in int8
            for n in graph.node
            if (k := _WEIGHT_INPUT.get(n.op_type)) is not None and len(n.input) > k
        ),
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
