"""The demo models the project ships, built here from hand-set weights (no training, no download).

They are demos, not detectors: they label pixels and frames by colour, which is enough to see
the whole pipeline work on ``worker sample``'s synthetic scene (blue sky, green ground, a red
robot). Rebuild with ``python -m worker.models``; the build is deterministic and a test
checks the shipped files match it. They live in the model repository's layout
(``models/demo-segment/model.onnx`` and ``card.json``) and ship inside the package.

- ``demo-segment``: NCHW float32 [N,3,256,256] (dynamic batch) -> Softmax [N,4,128,128]
  over background, sky, ground, robot.
- ``demo-classify``: NHWC uint8 [N,224,224,3] (dynamic batch) -> logits [N,4] over
  neutral, blue, green, red (the dominant colour of the frame).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from worker.models.repository import (
    CARD_FILE,
    DEMO_NAMES,
    MODEL_FILE,
    builtin_root,
    demo_model_path,
)

__all__ = [
    "DEMO_NAMES",
    "build_classifier",
    "build_demo_models",
    "build_segmenter",
    "demo_model_path",
]

OPSET = 17
IR_VERSION = 9  # readable by ONNX Runtime releases back to 1.15

SEGMENT_LABELS = ["background", "sky", "ground", "robot"]
# Contrasting on purpose: the overlay should be visible over the scene it labels.
SEGMENT_COLORS = [[0, 0, 0], [255, 215, 0], [170, 50, 220], [0, 230, 255]]
CLASSIFY_LABELS = ["neutral", "blue", "green", "red"]  # the rows of _colour_weights
#: Written into each model's doc_string; kept apart from this module's docstring so editing
#: the docs does not change the shipped bytes.
_ABOUT = (
    "Built by video-worker (worker/models/demo.py) from hand-set weights: a demo, not a "
    "detector. Labels pixels (demo-segment) or frames (demo-classify) by colour."
)


def _colour_weights(gain: float) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    # One row per class over (r, g, b) in [0, 1]: a class wins where its channel dominates;
    # "background"/"neutral" wins where none does (grey, black, white).
    w = np.array([[0, 0, 0], [-1.5, -1.5, 3], [-1.5, 3, -1.5], [3, -1.5, -1.5]], np.float32)
    b = np.array([0.35, 0, 0, 0], np.float32)
    return w * gain, b * gain


def _model(graph: onnx.GraphProto, doc: str) -> onnx.ModelProto:
    m = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="video-worker demo",
        producer_version="1",
    )
    m.ir_version = IR_VERSION
    m.doc_string = doc
    onnx.checker.check_model(m, full_check=True)
    return m


def build_segmenter() -> onnx.ModelProto:
    w, b = _colour_weights(gain=12.0)
    nodes = [
        # Smooth then halve: a stride-2 output like real segmenters (SegFormer is stride 4).
        helper.make_node(
            "AveragePool",
            ["image"],
            ["pooled"],
            kernel_shape=[3, 3],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            count_include_pad=0,
        ),
        helper.make_node("Conv", ["pooled", "W", "B"], ["logits"], kernel_shape=[1, 1]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "demo_segment",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 256, 256])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 4, 128, 128])],
        initializer=[
            numpy_helper.from_array(w.reshape(4, 3, 1, 1), "W"),
            numpy_helper.from_array(b, "B"),
        ],
    )
    return _model(graph, "DEMO ONLY: labels pixels by colour (sky/ground/robot). " + _ABOUT)


def build_classifier() -> onnx.ModelProto:
    w, b = _colour_weights(gain=8.0)
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Transpose", ["f"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("GlobalAveragePool", ["nchw"], ["avg"]),
        helper.make_node("Flatten", ["avg"], ["flat"], axis=1),
        helper.make_node("Mul", ["flat", "inv255"], ["rgb"]),
        helper.make_node("Gemm", ["rgb", "W", "B"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "demo_classify",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", 224, 224, 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
        initializer=[
            numpy_helper.from_array(w, "W"),
            numpy_helper.from_array(b, "B"),
            numpy_helper.from_array(np.array(1 / 255, np.float32), "inv255"),
        ],
    )
    return _model(graph, "DEMO ONLY: names the dominant colour of the frame. " + _ABOUT)


CARDS: dict[str, dict[str, Any]] = {
    "segment": {
        "task": "segment",
        "labels": SEGMENT_LABELS,
        "colors": SEGMENT_COLORS,
        "color_order": "rgb",
        "scale": 1 / 255,
        "mean": [0.0, 0.0, 0.0],
        "std": [1.0, 1.0, 1.0],
        "resize": "stretch",
        "background": 0,
    },
    "classify": {
        "task": "classify",
        "labels": CLASSIFY_LABELS,
        "color_order": "rgb",
        "resize": "center_crop",
        "crop_from": 256,
    },
}


def build_demo_models(directory: Path | None = None) -> list[Path]:
    """Write both demo models and their cards into the repository ``directory`` (default: the
    built-in one), one folder each; returns the model paths."""
    root = builtin_root() if directory is None else directory
    written = []
    for task, proto in (("segment", build_segmenter()), ("classify", build_classifier())):
        folder = root / DEMO_NAMES[task]
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / MODEL_FILE
        path.write_bytes(proto.SerializeToString(deterministic=True))
        (folder / CARD_FILE).write_text(json.dumps(CARDS[task], indent=2) + "\n")
        written.append(path)
    return written
