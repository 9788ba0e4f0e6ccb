"""``worker.models.forms``: YOLO detector and instance segmenter heads told by their shapes;
the object models the worker does not read yet (pose, oriented boxes, boxes/labels/scores
detectors) refused by name when they load, never read as a segmentation map.

Before (issue 20): a YOLOv8n-seg export, ``output0 [1,116,8400]`` and ``output1
[1,32,160,160]``, was taken as a 116 x 8400 binary map, and every frame of a real video got
the same coverage (``class_0: 0.116, class_1: 0.884``), without a word. The graphs here are
built with ``onnx.helper`` with the shapes and metadata Ultralytics' exports have.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from factory import make_model
from worker.errors import ModelError
from worker.models import load_model
from worker.models.forms import detect_form, object_form, yolo_anchors
from worker.testing import clean_env, make_video, one_error, worker_cli

#: What Ultralytics writes into an export's metadata_props (abridged).
ULTRALYTICS = {
    "author": "Ultralytics",
    "stride": "32",
    "imgsz": "[640, 640]",
    "names": "{0: 'person', 1: 'bicycle'}",
}


def graph(
    path: Path,
    outputs: Sequence[tuple[str, Sequence[int | str]]],
    *,
    size: tuple[int | str, int | str] = (640, 640),
    metadata: dict[str, str] | None = None,
) -> Path:
    """An image input [1,3,H,W] and ``outputs`` of these shapes (zeros, made from the image so
    that nothing is folded away), with ``metadata`` as metadata_props."""
    nodes = [helper.make_node("ReduceMean", ["image"], ["m"], keepdims=0)]
    inits = []
    value_outputs = []
    for i, (name, shape) in enumerate(outputs):
        fixed = [d if isinstance(d, int) else 1 for d in shape]
        inits.append(numpy_helper.from_array(np.array(fixed, dtype=np.int64), f"s{i}"))
        nodes += [
            helper.make_node("ConstantOfShape", [f"s{i}"], [f"z{i}"]),
            helper.make_node("Mul", [f"z{i}", "m"], [name]),
        ]
        value_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
    g = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, *size])],
        value_outputs, initializer=inits,
    )  # fmt: skip
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


V8_SEG = [("output0", [1, 116, 8400]), ("output1", [1, 32, 160, 160])]


@pytest.mark.parametrize(
    ("outputs", "size", "metadata", "said"),
    [
        # Head and prototypes beside a third output: which is which would be a guess.
        (
            [*V8_SEG, ("extra", [1, 10])], (640, 640), None,
            "outputs besides its head and prototypes",
        ),
        ([("output0", [1, 56, 8400])], (640, 640), {**ULTRALYTICS, "task": "pose"}, "pose"),
        (
            [("boxes", [1, 100, 4]), ("scores", [1, 100]), ("labels", [1, 100])], (512, 512),
            None, "boxes, labels and scores",
        ),
    ],
)  # fmt: skip
def test_object_models_are_refused_by_name_with_the_shapes_seen(
    tmp_path: Path,
    outputs: list[tuple[str, list[int | str]]],
    size: tuple[int | str, int | str],
    metadata: dict[str, str] | None,
    said: str,
) -> None:
    path = graph(tmp_path / "m.onnx", outputs, size=size, metadata=metadata)
    with pytest.raises(ModelError) as e:
        load_model(path, provider="cpu")
    message = str(e.value)
    assert said in message and "not supported yet" in message
    assert all(name in message for name, _ in outputs)  # the shapes it saw


def test_the_command_says_so_in_one_line(tmp_path: Path) -> None:
    pose = [("output0", [1, 56, 8400])]
    graph(tmp_path / "yolo.onnx", pose, metadata={**ULTRALYTICS, "task": "pose"})
    make_video(tmp_path / "clip.mp4", frames=2)
    proc = worker_cli(
        tmp_path, "run", "--input", "clip.mp4", "--model", "yolo.onnx", env=clean_env()
    )
    one_error(proc, "'yolo.onnx'", "pose model", "output0[1,56,8400]")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "yolo.onnx"]


def test_a_yolo_instance_segmenter_loads_as_one(tmp_path: Path) -> None:
    # Before: its [1, 116, 8400] head read as a 116 x 8400 binary map.
    names = "{" + ", ".join(f"{i}: 'c{i}'" for i in range(80)) + "}"
    for meta in ({**ULTRALYTICS, "task": "segment", "names": names}, None):
        path = graph(tmp_path / "seg.onnx", V8_SEG, metadata=meta)
        model = load_model(path, provider="cpu")
        assert (model.task, model.kind, len(model.labels)) == ("detect", "boxes_v8seg", 80)


def test_segmenters_and_classifiers_still_load(tmp_path: Path) -> None:
    # A [N,H,W] map, [N,C,H,W] scores, [N,C] scores, an Ultralytics classifier: as before.
    load_model(make_model(tmp_path / "seg.onnx", classes=3), provider="cpu")
    load_model(make_model(tmp_path / "bin.onnx", output="single"), provider="cpu")
    load_model(make_model(tmp_path / "cls.onnx", output="classify"), provider="cpu")
    cls = graph(
        tmp_path / "ucls.onnx", [("output0", [1, 2])], size=(224, 224),
        metadata={**ULTRALYTICS, "task": "classify", "imgsz": "[224, 224]"},
    )  # fmt: skip
    assert load_model(cls, provider="cpu").task == "classify"


def test_detector_heads_are_told_by_their_anchors() -> None:
    assert yolo_anchors(640, 640) == 8400 and yolo_anchors(320, 320) == 2100
    assert yolo_anchors(384, 640) == 5040
    assert detect_form((1, 84, 8400), (640, 640), {}) == "v8"
    assert detect_form((1, 84, 5040), (384, 640), {}) == "v8"
    assert detect_form((1, 25200, 85), (640, 640), {}) == "v5"
    assert detect_form((1, 300, 6), (640, 640), {"task": "detect"}) == "e2e"
    # A segmenter's [N,H,W] map, [N,C,H,W] scores, an unlabelled [N,K,6]: not detectors.
    assert detect_form((1, 640, 640), (640, 640), {}) is None
    assert detect_form((1, 21, 160, 160), (640, 640), {}) is None
    assert detect_form((1, 300, 6), (640, 640), {}) is None
    assert object_form({}, [("out", (1, 84, None))]) is None
