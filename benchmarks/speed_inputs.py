"""The benchmark's inputs, built in a temporary directory (nothing downloaded, nothing
committed): a 720p H.264 MP4 of ``worker sample``'s robot scene and a VOC-style segmentation
model made with ``onnx.helper`` (random weights from a fixed seed) with its card."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from worker.stages.sample import write_sample

Array = np.ndarray[Any, Any]

FPS = 25
INPUT = 512  # model input side
CLASSES = 21  # PASCAL VOC
SEED = 20240601
NOISY_CORES = 0.1  # other processes using more than this many cores disturb the timings
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# (in channels, out channels, kernel, stride, relu): stem stride 2, then stride 4, then a
# 1x1 head to the classes. Output stride 4: [N,21,128,128] at 512x512.
LAYERS: tuple[tuple[int, int, int, int, bool], ...] = (
    (3, 32, 3, 2, True),
    (32, 64, 3, 2, True),
    (64, 64, 3, 1, True),
    (64, CLASSES, 1, 1, False),
)


# ------------------------------------------------------------------------------ inputs


def build_model(seed: int = SEED) -> tuple[onnx.ModelProto, float]:
    """The segmentation model and its cost in GFLOPs per frame (1 MAC = 2 FLOPs)."""
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x, side, flops = "image", INPUT, 0
    for i, (cin, cout, k, stride, relu) in enumerate(LAYERS):
        pad = k // 2
        side = (side + 2 * pad - k) // stride + 1
        flops += 2 * cout * side * side * cin * k * k
        w = rng.standard_normal((cout, cin, k, k)).astype(np.float32) * math.sqrt(2 / (cin * k * k))
        b = (0.01 * rng.standard_normal(cout)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(b, f"b{i}")]
        y = "logits" if i == len(LAYERS) - 1 else f"conv{i}"
        nodes.append(
            helper.make_node(
                "Conv",
                [x, f"w{i}", f"b{i}"],
                [y],
                kernel_shape=[k, k],
                strides=[stride, stride],
                pads=[pad] * 4,
            )
        )
        if relu:
            nodes.append(helper.make_node("Relu", [y], [f"relu{i}"]))
            y = f"relu{i}"
        x = y
    graph = helper.make_graph(
        nodes,
        "bench_segment",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, INPUT, INPUT])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES, side, side])],
        initializer=inits,
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    onnx.checker.check_model(m, full_check=True)
    return m, flops / 1e9


def write_inputs(tmp: Path, frames: int, width: int, height: int) -> tuple[Path, Path, float]:
    video = tmp / f"sample-{width}x{height}.mp4"
    write_sample(video, seconds=frames / FPS, fps=FPS, width=width, height=height)
    proto, gflops = build_model()
    model = tmp / "seg21.onnx"
    model.write_bytes(proto.SerializeToString(deterministic=True))
    card = {
        "task": "segment",
        "labels": [f"class_{i}" for i in range(CLASSES)],
        "resize": "stretch",
        "scale": 1 / 255,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "background": 0,
    }
    model.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return video, model, gflops
