"""ONNX models for tests and benchmarks, built with onnx.helper."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["make_slow_model"]


def make_slow_model(path: Path, size: int = 1024, rounds: int = 8) -> Path:
    """A 3-class segmenter with a costly side branch that depends on the input (so ONNX
    Runtime cannot fold it away): ``rounds`` matmuls of ``size``², ~2·size³ flops each."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 1, (3, 3, 1, 1)).astype(np.float32), "W")
    big = numpy_helper.from_array((rng.normal(0, 1, (size, size)) / size).astype(np.float32), "M")
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    nodes = [
        helper.make_node("Conv", ["image", "W"], ["logits"], kernel_shape=[1, 1]),
        helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["M", "mean"], ["x0"]),
    ]
    for i in range(rounds):
        nodes.append(helper.make_node("MatMul", [f"x{i}", "M"], [f"x{i + 1}"]))
    nodes += [
        helper.make_node("ReduceSum", [f"x{rounds}"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["logits", "nothing"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 32, 32])],
        initializer=[w, big, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString())
    return path
