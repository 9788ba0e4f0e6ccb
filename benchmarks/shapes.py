"""The model shapes the speed benchmarks run, built with ``onnx.helper`` (random weights from a
fixed seed, ~1-11 GFLOPs a frame each): what people ship, in the output forms a tutorial
post-processes differently.

- ``seg21``: 21-class softmax segmenter, NCHW 512x512, dynamic batch, logits at stride 4;
- ``multilabel3-b1``: 3-class multi-label sigmoid segmenter, fixed batch of 1, 512x512;
- ``map1-dyn``: one-channel probability map (sigmoid inside), dynamic height and width, run
  at 736x1280 (text and foreground detectors);
- ``nhwc-cls``: NHWC classifier, 224x224, softmax inside, 1000 classes;
- ``yolo8-det``: a YOLOv8-form detector at 640x640, fixed batch of 1, 80 classes, its card in
  its metadata as Ultralytics writes it (``objects_bench.build_detector``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["MEAN", "SHAPES", "STD", "build_model"]

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

# name -> (input hw, layout, batch, dynamic hw, output form, classes, card)
SHAPES: dict[str, dict[str, Any]] = {
    "seg21": {"hw": (512, 512), "layout": "NCHW", "batch": None, "dyn": False,
              "out": "softmax-logits", "classes": 21, "card": {}},
    "multilabel3-b1": {"hw": (512, 512), "layout": "NCHW", "batch": 1, "dyn": False,
                       "out": "sigmoid-logits", "classes": 3, "card": {"multi_label": True}},
    "map1-dyn": {"hw": (736, 1280), "layout": "NCHW", "batch": None, "dyn": True,
                 "out": "prob-map", "classes": 1,
                 "card": {"input_size": [736, 1280], "labels": ["text"], "multi_label": True,
                          "threshold": 0.3}},
    "nhwc-cls": {"hw": (224, 224), "layout": "NHWC", "batch": None, "dyn": False,
                 "out": "softmax-scores", "classes": 1000, "card": {}},
    # A YOLOv8-form detector as Ultralytics exports it (its metadata is its card): built by
    # objects_bench.build_detector, class 0 firing on the walkers.
    "yolo8-det": {"hw": (640, 640), "layout": "NCHW", "batch": 1, "dyn": False,
                  "out": "yolo-v8", "classes": 80, "card": None},
}  # fmt: skip


# ------------------------------------------------------------------------------ models


def build_model(shape: dict[str, Any], path: Path) -> float:
    """Writes the model (and its card beside it); returns its GFLOPs per frame."""
    if shape["out"] == "yolo-v8":
        from objects_bench import build_detector

        return build_detector(path)
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(20261129)
    h, w = shape["hw"]
    n: int | str = shape["batch"] or "N"
    hd: int | str = "H" if shape["dyn"] else h
    wd: int | str = "W" if shape["dyn"] else w
    nodes, inits = [], []
    x = "image"
    if shape["layout"] == "NHWC":
        nodes.append(helper.make_node("Transpose", ["image"], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    cls = shape["classes"]
    # Stride-2 stem, stride-2 block, two stride-1 blocks: output stride 4.
    layers = [(3, 32, 3, 2), (32, 64, 3, 2), (64, 64, 3, 1), (64, 64, 3, 1)]
    flops, side_h, side_w = 0.0, h, w
    for i, (cin, cout, k, s) in enumerate(layers):
        side_h, side_w = (side_h + 2 - k) // s + 1, (side_w + 2 - k) // s + 1
        flops += 2 * cout * side_h * side_w * cin * k * k
        wt = rng.standard_normal((cout, cin, k, k)).astype(np.float32) * math.sqrt(
            2 / (cin * k * k)
        )
        inits += [numpy_helper.from_array(wt, f"w{i}"),
                  numpy_helper.from_array(np.zeros(cout, np.float32), f"b{i}")]  # fmt: skip
        nodes += [
            helper.make_node("Conv", [x, f"w{i}", f"b{i}"], [f"c{i}"], kernel_shape=[k, k],
                             strides=[s, s], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        ]  # fmt: skip
        x = f"r{i}"
    form = shape["out"]
    if form == "softmax-scores":
        head = (rng.standard_normal((64, cls)) * 0.3).astype(np.float32)
        inits.append(numpy_helper.from_array(head, "head"))
        nodes += [
            helper.make_node("GlobalAveragePool", [x], ["gap"]),
            helper.make_node("Flatten", ["gap"], ["flat"]),
            helper.make_node("MatMul", ["flat", "head"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["out"], axis=1),
        ]
        out_shape: list[int | str] = [n, cls]
    else:
        hw_ = rng.standard_normal((cls, 64, 1, 1)).astype(np.float32) * 0.3
        inits += [numpy_helper.from_array(hw_, "hw"),
                  numpy_helper.from_array(np.zeros(cls, np.float32), "hb")]  # fmt: skip
        last = "out" if form != "prob-map" else "logits"
        nodes.append(helper.make_node("Conv", [x, "hw", "hb"], [last], kernel_shape=[1, 1]))
        if form == "prob-map":
            nodes.append(helper.make_node("Sigmoid", ["logits"], ["out"]))
        oh: int | str = "OH" if shape["dyn"] else side_h
        ow: int | str = "OW" if shape["dyn"] else side_w
        out_shape = [n, cls, oh, ow]
    in_shape = [n, 3, hd, wd] if shape["layout"] == "NCHW" else [n, hd, wd, 3]
    graph = helper.make_graph(
        nodes, "bench", [helper.make_tensor_value_info("image", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_shape)], initializer=inits,
    )  # fmt: skip
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 9
    onnx.checker.check_model(m, full_check=True)
    path.write_bytes(m.SerializeToString())
    path.with_suffix(".json").write_text(json.dumps(shape["card"]))
    return flops / 1e9
