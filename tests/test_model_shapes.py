"""End to end: every model form the factory builds, run through ``run_file`` on real videos.

Each run is checked against an independent reference: the input decoded here with PyAV,
``worker.ops.preprocess`` for the model input, a plain ``onnxruntime.InferenceSession`` (not
the worker's Engine) and straightforward numpy for the answer. Only the geometry that maps a
model-resolution mask back onto the frame is taken from ``worker.ops`` (``restore``,
``geometry(...).then_scale(...)``), exactly as ``worker.stages.records.MaskMaps`` makes it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
import onnxruntime as ort
import pytest

from factory import Layout, Output, described, make_model
from worker.description import Look
from worker.models import Model, load_model
from worker.ops import Blender, geometry, preprocess, restore
from worker.stages import Answer, Frame, Recorder, RunSummary, painters_for, plan_for, run_file
from worker.testing import decode, make_video

Array = np.ndarray[Any, Any]
DType = Literal["float32", "float16", "uint8"]

FRAMES = 7  # with batch 3 the last batch is partial (3, 3, 1); with a fixed batch of 2 too
RUN_BATCH = 3


def scene(index: int, width: int, height: int) -> Array:
    """Colour gradients whose red channel changes per frame: a 1x1-conv model sees several
    classes per frame and the class boundaries move from frame to frame."""
    y, x = np.mgrid[0:height, 0:width]
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[..., 0] = x * 255 // max(width - 1, 1)
    img[..., 1] = y * 255 // max(height - 1, 1)
    img[..., 2] = (60 + index * 25) % 256
    return img


# ----------------------------------------------------------------------------- reference


def stored_frames(path: Path) -> list[tuple[float, Array]]:
    """(time, BGR image) of every frame as stored (no rotation applied), decoded here."""
    with av.open(str(path)) as c:
        out = []
        for f in c.decode(video=0):
            assert f.time is not None
            out.append((float(f.time), f.to_ndarray(format="bgr24")))
        return out


def plain_outputs(model_path: Path, model: Model, images: list[Array]) -> Array:
    """The raw first output for every image, from a plain CPU session."""
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    x = preprocess(images, plan_for(model))
    n = len(images)
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    if fixed is None:
        out: Array = session.run(None, {inp.name: x})[0]
        return out
    # A fixed batch: pad with zeros (the worker repeats the last frame; neither may matter).
    padded = -(-n // fixed) * fixed
    xs = np.concatenate([x, np.zeros((padded - n, *x.shape[1:]), dtype=x.dtype)])
    parts = [session.run(None, {inp.name: xs[i : i + fixed]})[0] for i in range(0, padded, fixed)]
    return np.concatenate(parts)[:n]


def np_sigmoid(x: Array) -> Array:
    out: Array = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    return out


def np_softmax(x: Array) -> Array:
    z = np.exp(x.astype(np.float64) - x.max(axis=1, keepdims=True))
    out: Array = z / z.sum(axis=1, keepdims=True)
    return out


@dataclass
class Expected:
    """The reference answer for every frame."""

    records: list[dict[str, Any]]  # "coverage" or "top", as the JSON lines should carry
    masks: list[Array] = field(default_factory=list)  # segment: class map at frame size


def to_frame(model: Model, small: Array, frame_hw: tuple[int, int], fill: int) -> Array:
    """A model-output-resolution mask mapped onto the frame, as the frame loop maps it."""
    sh, sw = small.shape
    ih, iw = model.input_hw
    g = geometry(frame_hw, model.input_hw, model.resize, model.crop_from).then_scale(
        sw / iw, sh / ih
    )
    full: Array = restore(small, g, frame_hw, fill=fill)
    return full


def expected_answers(
    form: Output,
    model_path: Path,
    model: Model,
    images: list[Array],
    labels: list[str],
    *,
    threshold: float = 0.5,
    top_k: int = 5,
) -> Expected:
    """What the worker should say for each image, worked out here from the raw output."""
    raw = plain_outputs(model_path, model, images)
    if form in ("classify", "classify_softmax"):
        scores = np_softmax(raw) if form == "classify" else raw.astype(np.float64)
        records = []
        for row in scores:
            order = sorted(range(len(row)), key=lambda i: -row[i])[:top_k]
            records.append(
                {"top": [{"label": labels[i], "index": i, "score": row[i]} for i in order]}
            )
        return Expected(records)

    hw = images[0].shape[:2]
    expected = Expected([])
    for k, image in enumerate(images):
        frame_hw = image.shape[:2]
        assert frame_hw == hw
        if form == "multilabel":
            active = np_sigmoid(raw[k]) > threshold  # (C, h, w)
            shown = np.full(active.shape[1:], 255, dtype=np.uint8)
            cov: dict[str, float] = {}
            for c in range(active.shape[0]):
                shown[active[c]] = c  # the highest active class is the one drawn
                on = to_frame(model, active[c].astype(np.uint8), frame_hw, fill=0)
                if on.any():
                    cov[labels[c]] = float(on.sum()) / on.size
            expected.masks.append(to_frame(model, shown, frame_hw, fill=255))
            expected.records.append({"coverage": cov})
            continue
        if form in ("logits", "probs"):
            small = raw[k].argmax(axis=0).astype(np.uint8)
        elif form == "single":
            small = (np_sigmoid(raw[k, 0]) > threshold).astype(np.uint8)
        elif form == "single_sigmoid":
            small = (raw[k, 0] > threshold).astype(np.uint8)
        elif form == "argmax":
            small = raw[k].astype(np.uint8)
        elif form == "argmax4d":
            small = raw[k, 0].astype(np.uint8)
        else:
            raise AssertionError(form)
        full = to_frame(model, small, frame_hw, fill=255)
        cov = {}
        for c, label in enumerate(labels):
            count = int(np.count_nonzero(full == c))
            if count:
                cov[label] = count / full.size
        expected.masks.append(full)
        expected.records.append({"coverage": cov})
    return expected


# ----------------------------------------------------------------------------- the run


@dataclass
class Run:
    summary: RunSummary
    model: Model
    records: list[dict[str, Any]]
    inputs: list[tuple[float, Array]]  # upright input frames, as the worker should see them
    outputs: list[tuple[float, Array]]
    expected: Expected


def run_and_check(
    video: Path,
    model_path: Path,
    form: Output,
    *,
    labels: list[str] | None = None,
    threshold: float = 0.5,
    batch: int = RUN_BATCH,
    max_frames: int | None = None,
    upright: Callable[[Array], Array] = lambda image: image,
    **run_kwargs: Any,
) -> Run:
    """Run the worker on ``video`` and check every JSON line, the video and the summary."""
    model = load_model(model_path, provider="cpu")
    if labels is None:
        labels = list(model.labels)
    stored = stored_frames(video)[:max_frames]
    inputs = [(t, upright(img)) for t, img in stored]
    images = [img for _, img in inputs]
    expected = expected_answers(form, model_path, model, images, labels, threshold=threshold)

    output, results = Path("out.mp4"), Path("out.jsonl")
    summary = run_file(
        video,
        model,
        described(batch=batch, picture=False, **run_kwargs),
        output=output,
        results=results,
        max_frames=max_frames,
    )
    records = [json.loads(line) for line in results.read_text().splitlines()]
    outputs = decode(output)
    n = len(inputs)

    # The video: every frame, at the input's (even) size and times.
    h, w = images[0].shape[:2]
    assert len(outputs) == n
    for (t_in, _), (t_out, img) in zip(inputs, outputs, strict=True):
        assert img.shape == (h + h % 2, w + w % 2, 3)
        assert abs(t_out - t_in) <= 1e-3

    # The JSON lines: one per frame, in order, matching the reference.
    assert len(records) == n
    task_key = "top" if form.startswith("classify") else "coverage"
    for i, (rec, exp, (t_in, _)) in enumerate(zip(records, expected.records, inputs, strict=True)):
        assert set(rec) == {"frame", "time", task_key}
        assert rec["frame"] == i
        assert abs(rec["time"] - t_in) <= 1e-6
        if task_key == "coverage":
            got, want = rec["coverage"], exp["coverage"]
            assert set(got) == set(want), (i, got, want)
            for label, value in want.items():
                assert abs(got[label] - value) <= 1e-6, (i, label, got, want)
        else:
            got_top, want_top = rec["top"], exp["top"]
            assert [(t["label"], t["index"]) for t in got_top] == [
                (t["label"], t["index"]) for t in want_top
            ], i
            for g, e in zip(got_top, want_top, strict=True):
                assert abs(g["score"] - e["score"]) <= 1e-4

    # The summary.
    assert summary.frames == n
    assert summary.task == ("classify" if task_key == "top" else "segment")
    assert summary.provider == "cpu"
    assert summary.batch == (model.batch or batch)
    assert set(summary.totals) <= set(labels)
    if task_key == "top":
        want_totals: dict[str, float] = dict(
            Counter(e["top"][0]["label"] for e in expected.records)
        )
        assert summary.totals == want_totals
    else:
        sums: dict[str, float] = {}
        for e in expected.records:
            for label, value in e["coverage"].items():
                sums[label] = sums.get(label, 0.0) + value
        assert set(summary.totals) == set(sums)
        for label, total in sums.items():
            assert abs(summary.totals[label] - total / n) <= 1e-6
    return Run(summary, model, records, inputs, outputs, expected)


def assert_not_trivial(expected: Expected) -> None:
    """The reference itself must tell frames (and, for masks, classes) apart, so that a
    constant or empty answer from the worker could not pass."""
    keys = {json.dumps(r, sort_keys=True) for r in expected.records}
    assert len(keys) > 1, "every frame has the same reference answer"
    if expected.masks:
        assert max(len(r["coverage"]) for r in expected.records) >= 2


def mean_abs(a: Array, b: Array) -> float:
    return float(np.abs(a.astype(np.int32) - b.astype(np.int32)).mean())


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven 64x48 H.264 frames of moving colour gradients, shared by the model-form tests."""
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=FRAMES, image=scene)


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain 3-class logits segmenter (32x32, NCHW, float32, dynamic batch)."""
    return make_model(tmp_path_factory.mktemp("seg") / "seg.onnx", classes=3)


# ----------------------------------------------------------------------------- model forms


@dataclass(frozen=True)
class Case:
    output: Output
    layout: Layout = "NCHW"
    dtype: DType = "float32"
    batch: int | None = None
    hw: tuple[int | None, int | None] = (32, 32)
    stride: int = 1
    classes: int = 3
    seed: int = 0
    card: dict[str, Any] = field(default_factory=dict)


KIND = {
    "logits": "multiclass",
    "probs": "multiclass",
    "multilabel": "multilabel",
    "single": "binary",
    "single_sigmoid": "binary",
    "argmax": "class_map",
    "argmax4d": "class_map",
    "classify": "scores",
    "classify_softmax": "scores",
}

CASES = [
    pytest.param(Case("logits"), id="logits-nchw-f32-dynbatch"),
    pytest.param(
        Case(
            "logits",
            "NHWC",
            "float16",
            batch=1,
            hw=(None, None),
            stride=2,
            seed=3,
            card={"input_size": [32, 48], "resize": "center_crop", "crop_from": 40},
        ),
        id="logits-nhwc-f16-b1-dynhw-s2-crop",
    ),
    pytest.param(
        Case(
            "logits",
            batch=2,
            classes=4,
            seed=5,
            card={
                "resize": "letterbox",
                "color_order": "bgr",
                "mean": [0.5, 0.5, 0.5],
                "std": [0.25, 0.25, 0.25],
            },
        ),
        id="logits-nchw-f32-b2-letterbox-bgr",
    ),
    pytest.param(Case("probs", "NHWC", "float16", batch=2), id="probs-nhwc-f16-b2"),
    pytest.param(
        Case("probs", "NCHW", "uint8", stride=2, classes=4, seed=1), id="probs-nchw-u8-s2"
    ),
    pytest.param(
        Case("multilabel", batch=1, stride=2, classes=4, card={"multi_label": True}),
        id="multilabel-nchw-f32-b1-s2",
    ),
    pytest.param(
        Case(
            "multilabel",
            "NHWC",
            "uint8",
            hw=(None, None),
            classes=3,
            seed=2,
            card={
                "multi_label": True,
                "input_size": [40, 40],
                "resize": "letterbox",
                "labels": ["sky", "road", "car"],
            },
        ),
        id="multilabel-nhwc-u8-dynhw-letterbox",
    ),
    pytest.param(Case("single", "NHWC", "uint8", seed=1), id="single-nhwc-u8-dynbatch"),
    pytest.param(
        Case("single", batch=2, seed=4, card={"threshold": 0.3}),
        id="single-nchw-f32-b2-threshold",
    ),
    pytest.param(
        Case(
            "single_sigmoid",
            "NCHW",
            "float16",
            hw=(None, None),
            seed=2,
            card={"input_size": [24, 40], "resize": "letterbox"},
        ),
        id="single_sigmoid-nchw-f16-dynhw-letterbox",
    ),
    pytest.param(
        Case(
            "argmax",
            "NHWC",
            batch=2,
            stride=2,
            card={"resize": "center_crop", "labels": ["a", "b", "c"]},
        ),
        id="argmax-nhwc-f32-b2-s2-crop",
    ),
    pytest.param(
        Case("argmax4d", "NCHW", "uint8", classes=4, seed=1, card={"resize": "letterbox"}),
        id="argmax4d-nchw-u8-letterbox",
    ),
    pytest.param(
        Case("classify", classes=7, card={"labels": [f"c{i}" for i in range(7)]}),
        id="classify-nchw-f32-dynbatch-top5of7",
    ),
    pytest.param(
        Case(
            "classify",
            "NCHW",
            "float16",
            batch=1,
            classes=4,
            seed=6,
            card={"resize": "center_crop"},
        ),
        id="classify-nchw-f16-b1-crop",
    ),
    pytest.param(
        Case(
            "classify_softmax",
            "NHWC",
            "uint8",
            batch=2,
            hw=(None, None),
            classes=5,
            seed=7,
            card={"input_size": [16, 24], "resize": "letterbox"},
        ),
        id="classify_softmax-nhwc-u8-b2-dynhw-letterbox",
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_model_form_matches_reference(case: Case, clip: Path, tmp_path: Path) -> None:
    path = make_model(
        tmp_path / "model.onnx",
        output=case.output,
        classes=case.classes,
        layout=case.layout,
        dtype=case.dtype,
        batch=case.batch,
        hw=case.hw,
        stride=case.stride,
        seed=case.seed,
        card=case.card or None,
    )
    model = load_model(path, provider="cpu")
    assert model.kind == KIND[case.output]
    assert model.batch == case.batch
    assert model.graph.layout == case.layout
    assert model.input_hw == tuple(case.card.get("input_size", case.hw))
    if "labels" in case.card:
        labels = list(case.card["labels"])
    elif case.output in ("argmax", "argmax4d"):
        labels = [f"class_{i}" for i in range(255)]  # a class map says nothing of its classes
    elif case.output in ("single", "single_sigmoid"):
        labels = ["class_0", "class_1"]
    else:
        labels = [f"class_{i}" for i in range(case.classes)]
    run = run_and_check(
        clip, path, case.output, labels=labels, threshold=case.card.get("threshold", 0.5)
    )
    assert_not_trivial(run.expected)
    if case.output.startswith("classify"):
        assert all(len(r["top"]) == min(5, case.classes) for r in run.records)
    if case.card.get("resize") == "center_crop" and not case.output.startswith("classify"):
        # The model saw only the middle of the frame: the rest is no class at all.
        assert all(sum(r["coverage"].values()) < 0.99 for r in run.records)


# ----------------------------------------------------------------------------- overlay


def test_overlay_pixels_match_blend_of_reference_mask(clip: Path, segmenter: Path) -> None:
    run = run_and_check(clip, segmenter, "logits", alpha=0.5, crf=0)
    painted = np.zeros(256, dtype=bool)
    painted[1:3] = True  # classes 1 and 2; 0 is the background, 255 is unseen
    blend = Blender.build(run.model.colors, 0.5, painted)
    for (_, src), (_, out), mask in zip(run.inputs, run.outputs, run.expected.masks, strict=True):
        assert np.isin(mask, [1, 2]).any()
        want = blend(src, mask)
        # crf 0 still loses chroma detail at class edges (4:2:0): about 2.5 levels on average.
        assert mean_abs(out, want) < 5
        assert mean_abs(out, src) > 20  # an un-annotated video would fail the line above


def test_multilabel_overlay_draws_the_highest_active_class(clip: Path, tmp_path: Path) -> None:
    path = make_model(
        tmp_path / "ml.onnx", output="multilabel", classes=4, card={"multi_label": True}
    )
    run = run_and_check(clip, path, "multilabel", alpha=0.6, crf=0)
    raw = plain_outputs(path, run.model, [img for _, img in run.inputs])
    # Labels overlap somewhere, so drawing the lowest active class instead would show.
    assert ((np_sigmoid(raw) > 0.5).sum(axis=1) >= 2).any()
    painted = np.zeros(256, dtype=bool)
    painted[:4] = True  # multi-label has no background class: every label is drawn
    blend = Blender.build(run.model.colors, 0.6, painted)
    for (_, src), (_, out), mask in zip(run.inputs, run.outputs, run.expected.masks, strict=True):
        assert mean_abs(out, blend(src, mask)) < 5
        assert mean_abs(out, src) > 20


@pytest.mark.parametrize("alpha", [0.5, 0.3, 1.0])
def test_annotator_blend_is_the_integer_formula(tmp_path: Path, alpha: float) -> None:
    colors = [[250, 10, 10], [10, 250, 10], [10, 10, 250], [200, 200, 0]]
    path = make_model(tmp_path / "m.onnx", classes=4, card={"background": 2, "colors": colors})
    model = load_model(path, provider="cpu")
    rng = np.random.default_rng(11)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    small = rng.choice(np.array([0, 1, 2, 3, 255], dtype=np.uint8), size=(32, 32))
    frame = Frame(index=4, pts=400, time=0.16, image=image.copy())
    recorder = Recorder(model, None)
    image_out = painters_for(model, Look(alpha=alpha), recorder).draw(
        frame, Answer(class_map=small)
    )
    record = recorder.record(frame, Answer(class_map=small))

    # A 32x32 stretch model on a 64x64 frame: each mask pixel covers a 2x2 block.
    full = small.repeat(2, axis=0).repeat(2, axis=1)
    a = round(alpha * 256)
    bgr = np.array(colors, dtype=np.int32)[:, ::-1]
    want = image.astype(np.int32)
    for c in (0, 1, 3):  # painted: every class but the background (2); 255 is left alone
        at = full == c
        want[at] = (want[at] * (256 - a) + bgr[c] * a + 128) >> 8
    assert image_out.dtype == np.uint8
    assert not np.array_equal(want, image)
    np.testing.assert_array_equal(image_out, want.astype(np.uint8))
    np.testing.assert_array_equal(image_out[full == 2], image[full == 2])
    np.testing.assert_array_equal(image_out[full == 255], image[full == 255])

    assert record["frame"] == 4
    assert record["time"] == 0.16
    want_cov = {f"class_{c}": np.count_nonzero(full == c) / full.size for c in range(4)}
    assert set(record["coverage"]) == set(want_cov)
    for k, v in want_cov.items():
        assert abs(record["coverage"][k] - v) <= 1e-6


# ----------------------------------------------------------------------------- inputs


def test_variable_frame_rate_keeps_every_timestamp(tmp_path: Path, segmenter: Path) -> None:
    pts = [0, 40, 50, 130, 300, 310, 500, 517]
    video = make_video(
        tmp_path / "vfr.mp4",
        frames=len(pts),
        pts=pts,
        time_base=Fraction(1, 1000),
        image=scene,
    )
    run = run_and_check(video, segmenter, "logits")
    want = [p / 1000 for p in pts]
    assert [t for t, _ in run.inputs] == pytest.approx(want, abs=1e-6)
    assert [r["time"] for r in run.records] == pytest.approx(want, abs=1e-6)
    assert [t for t, _ in run.outputs] == pytest.approx(want, abs=1e-3)


@pytest.mark.parametrize(
    ("rotation", "read_back", "k", "shape"),
    [(90, 90, 1, (64, 48, 3)), (180, -180, 2, (48, 64, 3)), (270, -90, 3, (64, 48, 3))],
)
def test_rotation_metadata_is_applied(
    tmp_path: Path,
    segmenter: Path,
    rotation: int,
    read_back: int,
    k: int,
    shape: tuple[int, int, int],
) -> None:
    video = make_video(tmp_path / "rot.mp4", frames=6, rotation=rotation, image=scene)
    with av.open(str(video)) as c:
        first = next(iter(c.decode(video=0)))
        assert first.rotation == read_back  # the display matrix, read back in (-180, 180]
        assert (first.width, first.height) == (64, 48)
    # The display matrix turns the picture counter-clockwise, like np.rot90 with k = angle/90.
    # alpha 0 draws nothing, so the output frames are the upright input itself.
    run = run_and_check(
        video, segmenter, "logits", upright=lambda img: np.rot90(img, k=k), alpha=0.0, crf=0
    )
    stored = stored_frames(video)
    for (_, out), (_, raw) in zip(run.outputs, stored, strict=True):
        assert out.shape == shape
        assert mean_abs(out, np.rot90(raw, k=k)) < 4  # colour conversion, 4:2:0 chroma
        assert mean_abs(out, np.rot90(raw, k=k + 2)) > 20  # the other way round is far off


def test_odd_size_input_is_padded_to_even(tmp_path: Path, segmenter: Path) -> None:
    # H.264 in yuv420p needs even sizes: the writer repeats the last row and column, so a
    # 63x47 input gives a 64x48 output. The JSON coverage is over the 63x47 frame itself.
    video = make_video(
        tmp_path / "odd.mp4", frames=6, width=63, height=47, pix_fmt="yuv444p", image=scene
    )
    run = run_and_check(video, segmenter, "logits", crf=0)
    assert run.inputs[0][1].shape == (47, 63, 3)
    for _, out in run.outputs:
        assert out.shape == (48, 64, 3)
        assert mean_abs(out[47, :63], out[46, :63]) < 6
        assert mean_abs(out[:47, 63], out[:47, 62]) < 6
    assert_not_trivial(run.expected)


def test_grayscale_input(tmp_path: Path, segmenter: Path) -> None:
    video = make_video(tmp_path / "gray.mkv", frames=6, codec="ffv1", pix_fmt="gray", image=scene)
    with av.open(str(video)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "gray"
    run = run_and_check(video, segmenter, "logits")
    img = run.inputs[0][1]
    assert np.array_equal(img[..., 0], img[..., 1]) and np.array_equal(img[..., 1], img[..., 2])
    assert_not_trivial(run.expected)


def test_ten_bit_input(tmp_path: Path, segmenter: Path) -> None:
    video = make_video(
        tmp_path / "ten.mkv", frames=6, codec="libx265", pix_fmt="yuv420p10le", image=scene
    )
    with av.open(str(video)) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
    run = run_and_check(video, segmenter, "logits")
    assert_not_trivial(run.expected)


def test_max_frames(tmp_path: Path, segmenter: Path) -> None:
    video = make_video(tmp_path / "long.mp4", frames=10, image=scene)
    run = run_and_check(video, segmenter, "logits", max_frames=3)
    assert run.summary.frames == 3
    assert len(run.records) == 3 and len(run.outputs) == 3
    assert [r["frame"] for r in run.records] == [0, 1, 2]
    assert [r["time"] for r in run.records] == pytest.approx([0.0, 0.04, 0.08], abs=1e-6)
