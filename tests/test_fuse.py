"""The fused graph (uint8 frames in, uint8 masks / top-k out) against the plain path.

The reference is independent of the fused code: ``worker.ops.preprocess`` (numpy + cv2) feeds a
plain ``onnxruntime.InferenceSession`` of the user's model, and straightforward numpy turns its
raw output into masks and scores. Masks must be equal except where the raw output is a tie
(or sits on the threshold); scores within 1e-4.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from factory import Output, make_model
from worker.description import RunDescription, Speed
from worker.models import Model, load_model
from worker.models.fuse import FuseSpec, pre_graph
from worker.ops.preprocess import planar, preprocess
from worker.stages.infer import Inferencer, fuse_spec, plan_for
from worker.stages.runner import run_file
from worker.testing import make_video

Array = np.ndarray[Any, Any]
TIE = 1e-5


@dataclass(frozen=True)
class Form:
    output: Output
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    dtype: Literal["float32", "float16", "uint8"] = "float32"
    batch: int | None = None
    hw: tuple[int | None, int | None] = (32, 32)
    stride: int = 1
    classes: int = 3
    seed: int = 0
    card: dict[str, Any] = field(default_factory=dict)
    f16_output: bool = False  # cast the model's output to float16


FORMS = [
    pytest.param(Form("logits", stride=2, seed=1), id="logits-nchw-f32-s2"),
    pytest.param(
        Form(
            "logits",
            "NHWC",
            "float16",
            batch=1,
            hw=(None, None),
            seed=3,
            card={"input_size": [24, 40], "resize": "center_crop", "crop_from": 30},
        ),
        id="logits-nhwc-f16-b1-dynhw-crop",
    ),
    pytest.param(
        Form(
            "logits",
            batch=2,
            classes=5,
            seed=5,
            card={"resize": "letterbox", "color_order": "bgr", "mean": [0.5] * 3, "std": [0.2] * 3},
        ),
        id="logits-b2-letterbox-bgr",
    ),
    pytest.param(Form("logits", classes=6, f16_output=True, seed=8), id="logits-f16-output"),
    pytest.param(Form("probs", "NHWC", "float16", seed=2), id="probs-nhwc-f16"),
    pytest.param(Form("probs", "NCHW", "uint8", stride=2, classes=4), id="probs-u8-s2"),
    pytest.param(
        Form("multilabel", classes=4, card={"multi_label": True}), id="multilabel-4-uint8-bits"
    ),
    pytest.param(
        Form("multilabel", "NHWC", classes=11, seed=4, card={"multi_label": True}),
        id="multilabel-11-uint16-bits",
    ),
    pytest.param(Form("single", "NHWC", "uint8", seed=1), id="single-nhwc-u8"),
    pytest.param(Form("single", seed=4, card={"threshold": 0.3}), id="single-threshold"),
    pytest.param(
        Form("single_sigmoid", seed=6, f16_output=True, card={"threshold": 0.3}),
        id="single_sigmoid-f16-output-threshold",
    ),
    pytest.param(
        Form("argmax", "NHWC", batch=2, stride=2, card={"resize": "center_crop"}),
        id="argmax-nhwc-b2-crop",
    ),
    pytest.param(Form("argmax4d", dtype="uint8", classes=4), id="argmax4d-u8"),
    pytest.param(Form("classify", classes=7), id="classify-7"),
    pytest.param(
        Form("classify", "NCHW", "float16", batch=1, classes=4, f16_output=True, seed=6),
        id="classify-f16-b1-f16-output",
    ),
    pytest.param(
        Form("classify_softmax", "NHWC", "uint8", batch=2, classes=5, seed=7),
        id="classify_softmax-nhwc-u8-b2",
    ),
    pytest.param(
        Form("logits", seed=9, card={"interpolation": "antialias"}), id="logits-antialias"
    ),
    pytest.param(
        Form("logits", seed=10, card={"resize": "letterbox", "interpolation": "area"}),
        id="logits-letterbox-area",
    ),
]


def cast_output_to_f16(path: Path) -> None:
    """Append a Cast to float16 after the model's output (the factory's outputs are float32)."""
    m = onnx.load(str(path))
    out = m.graph.output[0]
    m.graph.node.append(helper.make_node("Cast", [out.name], ["out16"], to=TensorProto.FLOAT16))
    dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    m.graph.output.pop()
    m.graph.output.append(helper.make_tensor_value_info("out16", TensorProto.FLOAT16, dims))
    onnx.checker.check_model(m, full_check=True)
    path.write_bytes(m.SerializeToString())


def build(form: Form, tmp: Path) -> tuple[Path, Model]:
    path = make_model(
        tmp / "m.onnx",
        output=form.output,
        classes=form.classes,
        layout=form.layout,
        dtype=form.dtype,
        batch=form.batch,
        hw=form.hw,
        stride=form.stride,
        seed=form.seed,
        card=form.card or None,
    )
    if form.f16_output:
        cast_output_to_f16(path)
    return path, load_model(path, provider="cpu")


def noise(n: int, hw: tuple[int, int], seed: int) -> list[Array]:
    """Noise over colour gradients: every pixel value occurs, and a 1x1-conv model still
    sees regions of different classes (noise alone averages out to one class)."""
    rng = np.random.default_rng(seed)
    h, w = hw
    y, x = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(n):
        base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), x * 0 + 40 * i], -1)
        jitter = rng.normal(0, 40, (h, w, 3))
        frames.append(np.clip(base + jitter, 0, 255).astype(np.uint8))
    return frames


def raw_outputs(path: Path, model: Model, images: list[Array]) -> Array:
    """The model's raw first output per image from a plain session, batch by batch."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    step = model.batch or len(images)
    parts = []
    for s in range(0, len(images), step):
        chunk = images[s : s + step]
        real = len(chunk)
        chunk = chunk + [chunk[-1]] * (step - real)
        parts.append(session.run(None, {name: preprocess(chunk, plan_for(model))})[0][:real])
    out: Array = np.concatenate(parts)
    return out


def logit(t: float) -> float:
    return float(np.log(t / (1 - t)))


def check_masks(model: Model, raw: Array, got: list[Any]) -> None:
    """Fused masks vs numpy on the raw output; a difference must sit on a tie or threshold."""
    raw32 = raw.astype(np.float32) if raw.dtype.kind == "f" else raw
    for k, answer in enumerate(got):
        r = raw32[k]
        if model.kind == "multiclass":
            want = r.argmax(axis=0).astype(np.uint8)
            top2 = np.sort(r, axis=0)[-2:]
            edge = (top2[1] - top2[0]) <= TIE * np.maximum(1.0, np.abs(top2[1]))
        elif model.kind in ("binary", "multilabel"):
            t = logit(model.threshold) if model.activation == "sigmoid" else model.threshold
            x = r[0] if (model.kind == "binary" and r.ndim == 3) else r
            on = x > t
            edge = np.abs(x - t) <= TIE
            if model.kind == "binary":
                want = on.astype(np.uint8)
            else:
                bits = sum(on[c].astype(np.uint32) << c for c in range(on.shape[0]))
                assert answer.bits is not None
                bad = answer.bits.astype(np.uint32) != bits
                assert not (bad & ~edge.any(axis=0)).any(), (k, np.argwhere(bad)[:5])
                shown = np.full(bits.shape, 255, np.uint8)
                for c in range(on.shape[0]):
                    shown[on[c]] = c
                want, edge = shown, edge.any(axis=0)
        else:  # class_map
            x = r[0] if r.ndim == 3 else r
            want = np.where((x < 0) | (x >= 255), 255, x).astype(np.uint8)
            edge = np.zeros(want.shape, bool)
        assert answer.class_map is not None and answer.class_map.dtype == np.uint8
        assert answer.class_map.shape == want.shape
        bad = answer.class_map != want
        assert not (bad & ~edge).any(), (k, np.argwhere(bad & ~edge)[:5])


def check_scores(model: Model, raw: Array, got: list[Any], k: int) -> None:
    scores = raw.astype(np.float64)
    if model.activation == "softmax":
        e = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores = e / e.sum(axis=1, keepdims=True)
    elif model.activation == "sigmoid":
        scores = 1 / (1 + np.exp(-scores))
    for row, answer in zip(scores, got, strict=True):
        want = sorted(range(len(row)), key=lambda i: -row[i])[: min(k, len(row))]
        assert len(answer.top) == len(want)
        for (i, s), j in zip(answer.top, want, strict=True):
            assert abs(s - row[i]) <= 1e-4
            assert i == j or abs(row[i] - row[j]) <= TIE  # only a tie may swap places


@pytest.mark.parametrize("form", FORMS)
def test_fused_graph_answers_like_the_plain_model_with_numpy(form: Form, tmp_path: Path) -> None:
    path, model = build(form, tmp_path)
    frames = noise(5, (48, 64), form.seed)
    fused = Inferencer(model, top_k=3, speed=Speed(fuse=True), batch=3)
    assert fused.fused is not None, fused.why_unfused
    got = fused(frames[:3]) + fused(frames[3:])  # a full and a partial batch
    raw = raw_outputs(path, model, frames)
    if model.kind == "scores":
        check_scores(model, raw, got, 3)
    else:
        check_masks(model, raw, got)
        labels_seen = {
            int(v) for a in got if a.class_map is not None for v in np.unique(a.class_map)
        }
        assert len(labels_seen) >= 2, "a constant mask would make this check empty"


@pytest.mark.parametrize("form", FORMS[:1] + FORMS[6:7] + FORMS[13:14])
def test_only_uint8_frames_and_small_answers_cross(form: Form, tmp_path: Path) -> None:
    # The promise of the fused graph: per frame, a model-sized uint8 image goes to the device
    # and a uint8 mask (or k scores and indices) comes back; the float tensors stay there.
    _, model = build(form, tmp_path)
    inf = Inferencer(model, top_k=3, speed=Speed(fuse=True), batch=2)
    inf(noise(4, (48, 64), 0))
    h, w = model.input_hw
    sent = inf.describe()["device_bytes_per_frame"]
    assert sent["in"] == h * w * 3
    if model.kind == "scores":
        assert sent["out"] == 3 * (4 + 8)  # float32 scores + int64 indices
    else:
        oh, ow = model.output_shape[2:]
        assert sent["out"] == oh * ow  # one uint8 per mask pixel (<= 8 labels: bits in uint8)
    plain = Inferencer(model, top_k=3, speed=Speed(fuse=False), batch=2)
    plain(noise(4, (48, 64), 0))
    assert plain.describe()["device_bytes_per_frame"]["in"] > 4 * sent["in"] - 1


# ----------------------------------------------------------------------------- preprocessing


PRE_CASES = [
    ("NCHW", np.float32, True, "stretch"),
    ("NHWC", np.float16, True, "letterbox"),
    ("NCHW", np.uint8, False, "center_crop"),
    ("NHWC", np.float32, False, "stretch"),
]


def spec_for(layout: str, dtype: Any, rgb: bool, resize: str, in_graph: bool) -> FuseSpec:
    from worker.ops.preprocess import InputPlan

    plan = InputPlan(
        hw=(32, 40),
        layout=layout,  # type: ignore[arg-type]
        dtype=np.dtype(dtype),
        rgb=rgb,
        scale=1 / 255,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        resize=resize,  # type: ignore[arg-type]
    )
    a, b = plan.normaliser()
    return FuseSpec(
        layout=plan.layout,
        dtype=plan.dtype,
        hw=plan.hw,
        batch=None,
        rgb=rgb,
        a=(float(a[0]), float(a[1]), float(a[2])),
        b=(float(b[0]), float(b[1]), float(b[2])),
        kind="multiclass",
        activation="softmax",
        threshold=0.5,
        output_dtype=np.dtype(np.float32),
        output_shape=(1, 3, 32, 40),
        resize_in_graph=in_graph,
    )


def run_pre(spec: FuseSpec, frames: Array) -> Array:
    session = ort.InferenceSession(
        pre_graph(spec).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    out: Array = session.run(None, {"frames": frames})[0]
    return out


@pytest.mark.parametrize(("layout", "dtype", "rgb", "resize"), PRE_CASES)
def test_in_graph_preprocessing_is_bit_equal_to_numpy(
    layout: str, dtype: Any, rgb: bool, resize: str
) -> None:
    from worker.ops.preprocess import InputPlan, warp

    spec = spec_for(layout, dtype, rgb, resize, in_graph=False)
    plan = InputPlan(
        hw=spec.hw,
        layout=spec.layout,
        dtype=spec.dtype,
        rgb=rgb,
        scale=1 / 255,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        resize=resize,  # type: ignore[arg-type]
    )
    frames = noise(2, (48, 64), 1)
    want = preprocess(frames, plan)
    warped = warp(frames, spec.hw, plan.resize)
    if spec.planar:  # what the Inferencer sends: planes in the model's colour order
        warped = planar(warped, np.empty((2, 3, *spec.hw), np.uint8), rgb)
    got = run_pre(spec, warped)
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("scale", "left_out"), [(1 / 255, {"Add"}), (1.0, {"Mul", "Add"})])
def test_a_scale_of_one_or_no_mean_leaves_its_pass_out_with_the_same_numbers(
    scale: float, left_out: set[str]
) -> None:
    from dataclasses import replace

    from worker.ops.preprocess import InputPlan, warp

    # YOLO's pixel / 255 (no mean, std 1), and a model that takes 0..255 as floats.
    plan = InputPlan(
        hw=(32, 40), layout="NCHW", dtype=np.dtype(np.float32), rgb=True, scale=scale,
        mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), resize="letterbox",
    )  # fmt: skip
    a, b = plan.normaliser()
    spec = replace(
        spec_for("NCHW", np.float32, True, "letterbox", in_graph=False),
        a=(float(a[0]), float(a[1]), float(a[2])),
        b=(float(b[0]), float(b[1]), float(b[2])),
    )
    ops = {n.op_type for n in pre_graph(spec).graph.node}
    assert "Cast" in ops and not ops & left_out, ops
    frames = noise(2, (48, 64), 3)
    warped = planar(warp(frames, spec.hw, "letterbox"), np.empty((2, 3, 32, 40), np.uint8), True)
    np.testing.assert_array_equal(run_pre(spec, warped), preprocess(frames, plan))


@pytest.mark.parametrize("frame_hw", [(48, 64), (20, 30), (32, 40)])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_in_graph_resize_is_the_stretch_warp_within_one_level(
    frame_hw: tuple[int, int], layout: str
) -> None:
    # The Resize computes in float where cv2 uses fixed-point weights: after rounding to
    # whole pixel values the two differ by at most one level, on a few pixels.
    spec = spec_for(layout, np.float32, True, "stretch", in_graph=True)
    host = spec_for(layout, np.float32, True, "stretch", in_graph=False)
    frames = noise(2, frame_hw, 2)
    got = run_pre(spec, np.stack(frames))
    from worker.ops.preprocess import warp

    warped = warp(frames, spec.hw, "stretch")
    if host.planar:
        warped = planar(warped, np.empty((2, 3, *spec.hw), np.uint8), rgb=True)
    want = run_pre(host, warped)
    step = max(abs(v) for v in spec.a)
    diff = np.abs(got.astype(np.float64) - want)
    assert diff.max() <= step * 1.0001
    assert (diff > 1e-6).mean() < 0.2


# ----------------------------------------------------------------------------- fallback


def opset10_model(path: Path) -> Path:
    """A 1x1-conv segmenter at opset 10: too old for the wrapper (Resize/TopK need 11)."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.normal(0, 1, (3, 3, 1, 1)).astype(np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "W"], ["logits"], kernel_shape=[1, 1])],
        "old",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3, 16, 16])],
        initializer=[w],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 10)])
    m.ir_version = 5
    onnx.checker.check_model(m, full_check=True)
    path.write_bytes(m.SerializeToString())
    return path


def test_a_model_that_cannot_be_fused_runs_plain_and_says_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = opset10_model(tmp_path / "old.onnx")
    model = load_model(path, provider="cpu")
    with caplog.at_level(logging.WARNING, logger="pipelines.infer"):
        inf = Inferencer(model, speed=Speed(fuse=True), batch=2)
    assert inf.fused is None and inf.why_unfused is not None
    assert "opset 10" in inf.why_unfused
    lines = [r.getMessage() for r in caplog.records if "running unfused" in r.getMessage()]
    assert len(lines) == 1 and "opset 10" in lines[0] and str(path) in lines[0]
    frames = noise(3, (40, 30), 4)
    check_masks(model, raw_outputs(path, model, frames), inf(frames))

    video = make_video(tmp_path / "clip.mp4", frames=5)
    summary = run_file(video, model, output=tmp_path / "o.mp4", results=tmp_path / "o.jsonl")
    assert summary.frames == 5
    assert summary.pipeline["fused"] is False
    assert "opset 10" in summary.pipeline["unfused_because"]


def test_fused_and_plain_runs_write_the_same_results(tmp_path: Path) -> None:
    path = make_model(tmp_path / "m.onnx", classes=4, stride=2, seed=9)
    model = load_model(path, provider="cpu")
    video = make_video(tmp_path / "clip.mp4", frames=7, width=80, height=60)
    records = {}
    for name, speed in {
        "fused": Speed(fuse=True),
        "plain": Speed(fuse=False),
        "graph-resize": Speed(fuse=True, resize_in_graph=True),
    }.items():
        results = tmp_path / f"{name}.jsonl"
        run = RunDescription(speed=speed.model_copy(update={"batch": 3}))
        summary = run_file(video, model, run, output=tmp_path / f"{name}.mp4", results=results)
        assert summary.pipeline["fused"] is (name != "plain")
        assert summary.pipeline["resize_in_graph"] is (name == "graph-resize")
        records[name] = results.read_text().splitlines()
    assert len(records["fused"]) == 7
    assert records["fused"] == records["plain"]
    # Resizing in the graph rounds a few pixels differently from cv2: near, not equal.
    import json

    for a, b in zip(records["fused"], records["graph-resize"], strict=True):
        ca, cb = json.loads(a)["coverage"], json.loads(b)["coverage"]
        for label in set(ca) | set(cb):
            assert abs(ca.get(label, 0) - cb.get(label, 0)) < 0.05


def test_the_fused_session_is_built_once_per_model_and_options(tmp_path: Path) -> None:
    # A queue worker runs many jobs on one loaded model: the wrapper is not rebuilt per job.
    model = load_model(make_model(tmp_path / "m.onnx"), provider="cpu")
    a = Inferencer(model, speed=Speed(fuse=True), batch=2)
    b = Inferencer(model, speed=Speed(fuse=True), batch=2)
    c = Inferencer(model, speed=Speed(fuse=True), top_k=2, batch=2)
    assert a.engine is b.engine
    assert a.engine is not model.engine
    assert fuse_spec(model).kind == "multiclass"
    assert c.engine is a.engine  # top_k does not shape a segmenter's graph: one session
    clf = load_model(make_model(tmp_path / "c.onnx", output="classify"), provider="cpu")
    two = Inferencer(clf, speed=Speed(fuse=True), top_k=2, batch=2)
    three = Inferencer(clf, speed=Speed(fuse=True), top_k=3, batch=2)
    assert two.engine is not three.engine  # a classifier's TopK has k in the graph
    assert two.engine is Inferencer(clf, speed=Speed(fuse=True), top_k=2, batch=2).engine


@pytest.mark.parametrize("resize", ["stretch", "letterbox", "center_crop"])
@pytest.mark.parametrize("speed", ["fused", "plain", "graph-resize"])
def test_a_batch_of_frames_of_different_sizes_answers_each_by_its_own(
    tmp_path: Path, resize: str, speed: str
) -> None:
    # Cameras of different resolutions share one batch (and a classifier's zone crops share
    # their frame's): before, every frame was mapped with the first frame's geometry.
    model = load_model(
        make_model(tmp_path / "m.onnx", output="classify", card={"resize": resize}),
        provider="cpu",
    )
    s = {
        "fused": Speed(fuse=True),
        "plain": Speed(fuse=False),
        "graph-resize": Speed(fuse=True, resize_in_graph=True),
    }[speed]
    rng = np.random.default_rng(5)
    frames = [
        rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for h, w in ((48, 64), (90, 40), (48, 64), (33, 33))
    ]
    infer = Inferencer(model, speed=s, batch=4, top_k=3)
    together = infer(frames)
    for frame, answer in zip(frames, together, strict=True):
        alone = infer([frame])[0]
        assert [i for i, _ in alone.top] == [i for i, _ in answer.top]
        assert np.allclose([v for _, v in alone.top], [v for _, v in answer.top], atol=1e-5)
