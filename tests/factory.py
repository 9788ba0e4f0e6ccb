"""Real test inputs, made here: ONNX models built with onnx.helper and odd or damaged videos
(the plain ones, shared with the benchmarks, are ``worker.testing.media``).

Nothing is downloaded or committed: every test builds the few kilobytes it needs.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from worker.description import RunDescription
from worker.testing.media import pattern

Array = np.ndarray[Any, Any]

# ----------------------------------------------------------------------------------- video


def described(**options: Any) -> RunDescription:
    """The default run description with ``options`` (flat setting names) laid over it."""
    return RunDescription().overlay(options)


# ----------------------------------------------------------------------------------- models

Layout = Literal["NCHW", "NHWC"]
Output = Literal[
    "logits",
    "probs",
    "multilabel",
    "single",
    "single_sigmoid",
    "argmax",
    "argmax4d",
    "classify",
    "classify_softmax",
]


def _dim(d: int | str | None) -> int | str:
    return "dyn" if d is None else d


def make_model(
    path: Path,
    *,
    output: Output = "logits",
    classes: int = 3,
    layout: Layout = "NCHW",
    dtype: Literal["float32", "float16", "uint8"] = "float32",
    batch: int | None = None,
    hw: tuple[int | None, int | None] = (32, 32),
    stride: int = 1,
    seed: int = 0,
    card: dict[str, Any] | None = None,
) -> Path:
    """A small model whose answers depend on the pixels: a 1x1 convolution over the channels.

    ``batch``/``hw`` None make those dims dynamic (symbolic). ``stride`` > 1 shrinks the
    output, like real segmenters. The output takes one of the forms the worker supports.
    """
    rng = np.random.default_rng(seed)
    elem = {
        "float32": TensorProto.FLOAT,
        "float16": TensorProto.FLOAT16,
        "uint8": TensorProto.UINT8,
    }[dtype]
    n, (h, w) = _dim(batch), (_dim(hw[0]), _dim(hw[1]))
    in_shape = [n, 3, h, w] if layout == "NCHW" else [n, h, w, 3]
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    x = "image"
    if dtype != "float32":
        nodes.append(helper.make_node("Cast", [x], ["x32"], to=TensorProto.FLOAT))
        x = "x32"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    if stride > 1:
        nodes.append(
            helper.make_node(
                "AveragePool", [x], ["pooled"], kernel_shape=[stride] * 2, strides=[stride] * 2
            )
        )
        x = "pooled"
    channels = 1 if output in ("single", "single_sigmoid") else classes
    weight = rng.normal(0, 1, (channels, 3, 1, 1)).astype(np.float32)
    if dtype == "uint8":
        weight /= 64  # raw pixels instead of normalised ones: keep logits in a sane range
    inits += [
        numpy_helper.from_array(weight, "W"),
        numpy_helper.from_array(rng.normal(0, 0.5, channels).astype(np.float32), "B"),
    ]
    nodes.append(helper.make_node("Conv", [x, "W", "B"], ["logits"], kernel_shape=[1, 1]))
    y, y_type = "logits", TensorProto.FLOAT
    if output == "probs":
        nodes.append(helper.make_node("Softmax", [y], ["probs"], axis=1))
        y = "probs"
    elif output == "single_sigmoid":
        nodes.append(helper.make_node("Sigmoid", [y], ["prob"]))
        y = "prob"
    elif output in ("argmax", "argmax4d"):
        nodes.append(
            helper.make_node(
                "ArgMax", [y], ["classes"], axis=1, keepdims=1 if output == "argmax4d" else 0
            )
        )
        y, y_type = "classes", TensorProto.INT64
    elif output in ("classify", "classify_softmax"):
        nodes += [
            helper.make_node("GlobalAveragePool", [y], ["gap"]),
            helper.make_node("Flatten", ["gap"], ["scores"], axis=1),
        ]
        y = "scores"
        if output == "classify_softmax":
            nodes.append(helper.make_node("Softmax", [y], ["probs"], axis=1))
            y = "probs"
    rank = 2 if output.startswith("classify") else 3 if output == "argmax" else 4
    graph = helper.make_graph(
        nodes,
        "test_model",
        [helper.make_tensor_value_info("image", elem, in_shape)],
        # Output dims left symbolic on purpose: the worker learns them from a probe run.
        [helper.make_tensor_value_info(y, y_type, [f"o{i}" for i in range(rank)])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString())
    if card is not None:
        import json

        path.with_suffix(".json").write_text(json.dumps(card))
    return path


def make_bright_model(path: Path) -> Path:
    """A 2-class segmenter, ``dark`` and ``bright``: a pixel is ``bright`` when its channels'
    sum passes a threshold, whatever the input normalisation (0..1 or ImageNet's). On the
    RTSP test camera's moving ball, zone coverage rises and falls as the ball comes and goes."""
    w = np.zeros((2, 3, 1, 1), np.float32)
    w[1] = 1.0
    b = np.array([0.0, -0.75], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "W", "B"], ["logits"], kernel_shape=[1, 1])],
        "bright",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2, 64, 64])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString())
    path.with_suffix(".json").write_text('{"labels": ["dark", "bright"]}')
    return path


# ------------------------------------------------------------------------- damaged and odd


def detailed(index: int, width: int, height: int) -> Array:
    """``pattern`` with noise in its top half: frames of several kB, each spread over many
    MPEG-TS packets, so that a file cut at a random byte ends inside a picture."""
    img = pattern(index, width, height)
    rng = np.random.default_rng(index)
    img[: height // 2] = rng.integers(0, 256, (height // 2, width, 3), dtype=np.uint8)
    return img


def _vop_type(data: bytes) -> int:
    """MPEG-4 part 2 VOP coding type of a packet's first picture: 0 I, 1 P, 2 B."""
    start = data.index(b"\x00\x00\x01\xb6")
    return data[start + 4] >> 6


def _n_vop(time_increment_bits: int) -> bytes:
    """A VOP that codes nothing ("N-VOP"): what DivX writes after each packed pair."""
    bits = "01" + "0" + "1" + "0" * time_increment_bits + "1" + "0"  # P, time, not coded
    bits += "0" + "1" * (-(len(bits) + 1) % 8)  # stuffing to the byte boundary
    return b"\x00\x00\x01\xb6" + int(bits, 2).to_bytes(len(bits) // 8, "big")


def make_packed_avi(
    path: Path,
    *,
    frames: int = 30,
    width: int = 64,
    height: int = 48,
    fps: int = 25,
    doubled: bool = False,
) -> Path:
    """MPEG-4 part 2 with B-frames in AVI, as DivX and Xvid wrote it ("packed bitstream"):
    each P-frame shares its AVI chunk with the B-frame that follows it in decode order, an
    N-VOP chunk keeps the count of chunks equal to the count of frames, and the user data says
    ``DivX503b1393p``. AVI keeps one timestamp per chunk, in decode order, so the frames come
    out of FFmpeg's decoder in display order with timestamps that go back and forth.

    ``doubled``: as some cameras wrote it, an N-VOP after every chunk and the header at twice
    the rate (``frames`` pictures in 2 x ``frames`` chunks at 2 x ``fps``)."""
    cc: Any = av.CodecContext.create("mpeg4", "w")
    cc.width, cc.height, cc.pix_fmt = width, height, "yuv420p"
    cc.time_base = Fraction(1, fps)
    cc.framerate = Fraction(fps)
    cc.max_b_frames, cc.gop_size = 1, 12
    cc.open()
    coded: list[bytes] = []
    for i in range(frames):
        vf = av.VideoFrame.from_ndarray(pattern(i, width, height), format="bgr24")
        vf = vf.reformat(format="yuv420p")
        vf.pts = i
        coded += [bytes(p) for p in cc.encode(vf)]
    coded += [bytes(p) for p in cc.encode(None)]
    # The VOL header's vop_time_increment_resolution is the rate: its bit count sizes N-VOPs.
    nvop = _n_vop(max(fps - 1, 1).bit_length())
    chunks: list[bytes] = []
    i = 0
    while i < len(coded):
        if _vop_type(coded[i]) != 2 and i + 1 < len(coded) and _vop_type(coded[i + 1]) == 2:
            chunks += [coded[i] + coded[i + 1], nvop]
            i += 2
        else:
            chunks.append(coded[i])
            i += 1
    first = chunks[0].index(b"\x00\x00\x01\xb6")
    chunks[0] = chunks[0][:first] + b"\x00\x00\x01\xb2DivX503b1393p" + chunks[0][first:]
    if doubled:
        chunks = [c for chunk in chunks for c in (chunk, nvop)]
    rate = 2 * fps if doubled else fps
    with av.open(str(path), mode="w", format="avi") as c:
        s: Any = c.add_stream("mpeg4", rate=Fraction(rate))
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.time_base = Fraction(1, rate)
        for k, data in enumerate(chunks):
            packet = av.Packet(data)
            packet.stream = s
            packet.pts = packet.dts = k
            packet.time_base = Fraction(1, rate)
            packet.is_keyframe = _vop_type(data) == 0
            c.mux(packet)
    return path


def raw_frames(path: Path) -> list[tuple[int | None, int | None, bool]]:
    """(pts, dts, is_corrupt) of every frame PyAV's decoder hands out, in its order."""
    with av.open(str(path)) as c:
        return [(f.pts, f.dts, f.is_corrupt) for f in c.decode(video=0)]


# ------------------------------------------------------------------------------ detectors


def _yolo_boxes(size: int) -> Array:
    """The fixed anchor boxes (cx, cy, w, h) of a YOLOv8 head at ``size``: one per cell of
    the stride-8, -16 and -32 grids, as big as its cell, in the head's anchor order."""
    out = []
    for stride in (8, 16, 32):
        n = size // stride
        for i in range(n):
            for j in range(n):
                out.append(((j + 0.5) * stride, (i + 0.5) * stride, stride, stride))
    return np.array(out, np.float32).T


def make_yolo_detector(
    path: Path,
    *,
    size: int = 64,
    metadata: bool = True,
    dynamic: bool = False,
    form: Literal["v8", "v5"] = "v8",
) -> Path:
    """A YOLO detector's graph (output [1, 4 + 2, A], or v5's [1, A, 5 + 2]) that really
    detects: on the stride-8 grid, a cell's box scores ``red`` by how red the cell is on
    average and ``blue`` by how blue (sigmoid of 20 x (mean - 0.6): Ultralytics' grey 114
    borders score nothing); the coarser grids' boxes
    score nothing. Ultralytics' metadata (names, imgsz, task, stride) unless ``metadata`` is
    False; ``dynamic``: height and width symbolic, as some exports have them."""
    cells = (size // 8) ** 2
    anchors = cells + (size // 16) ** 2 + (size // 32) ** 2
    pick = np.zeros((2, 3, 1, 1), np.float32)
    pick[0, 0], pick[1, 2] = 20.0, 20.0  # RGB input: R -> red, B -> blue
    inits = [
        numpy_helper.from_array(pick, "pick"),
        numpy_helper.from_array(np.full(2, -12.0, np.float32), "bias"),
        numpy_helper.from_array(np.array([1, 2, cells], np.int64), "flat"),
        numpy_helper.from_array(np.zeros((1, 2, anchors - cells), np.float32), "coarse"),
        numpy_helper.from_array(_yolo_boxes(size)[None], "boxes"),
    ]
    nodes = [
        helper.make_node("AveragePool", ["image"], ["cells"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Conv", ["cells", "pick", "bias"], ["logit"], kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["logit"], ["fine"]),
        helper.make_node("Reshape", ["fine", "flat"], ["fine_flat"]),
        helper.make_node("Concat", ["fine_flat", "coarse"], ["scores"], axis=2),
    ]
    if form == "v8":
        nodes.append(helper.make_node("Concat", ["boxes", "scores"], ["output0"], axis=1))
        out_shape: list[int | str] = [1, 6, anchors]
    else:  # three anchor boxes per cell (here the same three): NMS keeps one
        inits.append(numpy_helper.from_array(np.ones((1, 1, anchors), np.float32), "obj"))
        nodes += [
            helper.make_node("Concat", ["boxes", "obj", "scores"], ["one"], axis=1),
            helper.make_node("Concat", ["one", "one", "one"], ["head"], axis=2),
            helper.make_node("Transpose", ["head"], ["output0"], perm=[0, 2, 1]),
        ]
        out_shape = [1, 3 * anchors, 7]
    hw: list[int | str] = ["height", "width"] if dynamic else [size, size]
    graph = helper.make_graph(
        nodes, "yolo",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *hw])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
        initializer=inits,
    )  # fmt: skip
    graph.node[0].input[0] = "images"
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    if metadata:
        said = {
            "author": "Ultralytics",
            "task": "detect",
            "stride": "32",
            "imgsz": f"[{size}, {size}]",
            "names": "{0: 'red', 1: 'blue'}",
        }
        for k, v in said.items():
            model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def make_moments_detector(path: Path, *, size: int = 64, instances: bool = False) -> Path:
    """A YOLOv8-form detector ([1, 4 + 2, A], Ultralytics metadata) that finds one red and one
    blue object per frame and boxes each where it is: a soft mask per colour, its centroid
    and spread (a rectangle W wide has variance W^2 / 12) give the box, its mass the score.
    Anchor 0 holds the red object, anchor 1 the blue one; the rest score nothing. What a
    tracker or a line counter needs: one box per object that moves with it.

    ``instances``: a YOLOv8-seg instance segmenter instead ([1, 4 + 2 + 32, A] and prototypes
    [1, 32, S/4, S/4]): prototype 0 is the red mask at a quarter of the size (as -1..1),
    prototype 1 the blue one, and anchor c's coefficients pick prototype c (times 10)."""
    anchors = sum((size // s) ** 2 for s in (8, 16, 32))
    pick = np.array([[1, -1, -1], [-1, -1, 1]], np.float32).reshape(2, 3, 1, 1)
    xs = (np.arange(size, dtype=np.float32) + 0.5)[None, None, None, :].repeat(size, 2)
    ys = (np.arange(size, dtype=np.float32) + 0.5)[None, None, :, None].repeat(size, 3)
    consts = {
        "pick": pick, "bias": np.full(2, -0.5, np.float32), "twenty": np.array(20, np.float32),
        "xs": xs, "ys": ys, "eps": np.array(1e-3, np.float32), "twelve": np.array(12, np.float32),
        "zero": np.array(0, np.float32), "mass0": np.array(-30, np.float32),
        "eye": np.eye(2, dtype=np.float32)[None], "axes_hw": np.array([2, 3], np.int64),
        "one": np.array([1], np.int64), "rest": np.zeros((1, 6, anchors - 2), np.float32),
    }  # fmt: skip
    n = helper.make_node
    nodes = [
        n("Conv", ["images", "pick", "bias"], ["logit"], kernel_shape=[1, 1]),
        n("Mul", ["logit", "twenty"], ["sharp"]),
        n("Sigmoid", ["sharp"], ["mask"]),  # [1, 2, S, S]: red, blue
        n("ReduceSum", ["mask", "axes_hw"], ["mass"], keepdims=0),  # [1, 2]
        n("Add", ["mass", "eps"], ["mass_e"]),
    ]
    for c in ("x", "y"):
        nodes += [
            n("Mul", ["mask", f"{c}s"], [f"m{c}"]),
            n("ReduceSum", [f"m{c}", "axes_hw"], [f"s{c}"], keepdims=0),
            n("Div", [f"s{c}", "mass_e"], [f"c{c}"]),  # centroid
            n("Mul", [f"m{c}", f"{c}s"], [f"m{c}2"]),
            n("ReduceSum", [f"m{c}2", "axes_hw"], [f"s{c}2"], keepdims=0),
            n("Div", [f"s{c}2", "mass_e"], [f"e{c}2"]),
            n("Mul", [f"c{c}", f"c{c}"], [f"c{c}sq"]),
            n("Sub", [f"e{c}2", f"c{c}sq"], [f"v{c}"]),
            n("Max", [f"v{c}", "zero"], [f"v{c}p"]),
            n("Mul", [f"v{c}p", "twelve"], [f"v{c}12"]),
            n("Sqrt", [f"v{c}12"], [f"size{c}"]),
        ]
    for name in ("cx", "cy", "sizex", "sizey"):
        nodes.append(n("Unsqueeze", [name, "one"], [f"{name}_u"]))  # [1, 1, 2]
    nodes += [
        n("Concat", ["cx_u", "cy_u", "sizex_u", "sizey_u"], ["boxes"], axis=1),  # [1, 4, 2]
        n("Add", ["mass", "mass0"], ["score_logit"]),
        n("Sigmoid", ["score_logit"], ["score"]),  # [1, 2]
        n("Unsqueeze", ["score", "axes_last"], ["score_u"]),  # [1, 2, 1]
        n("Mul", ["score_u", "eye"], ["scores"]),  # [1, 2, 2]: class c on anchor c
        n("Concat", ["boxes", "scores"], ["found"], axis=1),  # [1, 6, 2]
        n("Concat", ["found", "rest"], ["head" if instances else "output0"], axis=2),
    ]
    consts["axes_last"] = np.array([2], np.int64)
    outputs = [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, anchors])]
    if instances:
        coefs = np.zeros((1, 32, anchors), np.float32)
        coefs[0, 0, 0] = coefs[0, 1, 1] = 10.0
        consts |= {"coefs": coefs, "two": np.array(2, np.float32),
                   "protos_rest": np.zeros((1, 30, size // 4, size // 4), np.float32)}  # fmt: skip
        nodes += [
            n("Concat", ["head", "coefs"], ["output0"], axis=1),
            n("AveragePool", ["mask"], ["small"], kernel_shape=[4, 4], strides=[4, 4]),
            n("Mul", ["small", "two"], ["small2"]),
            n("Sub", ["small2", "one_f"], ["signed"]),
            n("Concat", ["signed", "protos_rest"], ["output1"], axis=1),
        ]
        consts["one_f"] = np.array(1, np.float32)
        outputs = [
            helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 38, anchors]),
            helper.make_tensor_value_info(
                "output1", TensorProto.FLOAT, [1, 32, size // 4, size // 4]
            ),
        ]
    graph = helper.make_graph(
        nodes, "moments",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        outputs, initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    said = {
        "author": "Ultralytics",
        "task": "segment" if instances else "detect",
        "stride": "32",
        "imgsz": f"[{size}, {size}]",
        "names": "{0: 'red', 1: 'blue'}",
    }
    for k, v in said.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString())
    return path
