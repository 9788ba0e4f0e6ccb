"""Pure pre/post-processing and drawing maths, checked with numpy alone (no video, no model)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from worker.ops import (
    NO_CLASS,
    Blender,
    InputPlan,
    classify,
    coverage,
    coverage_bits,
    draw_top,
    geometry,
    pad_even,
    preprocess,
    restore,
    segment,
    sigmoid,
    softmax,
    warp_matrix,
)
from worker.ops.overlay import _Captions, draw_boxes
from worker.ops.postprocess import MaskMap, shown_from_bits
from worker.ops.preprocess import planar, warp

Array = np.ndarray[Any, Any]
rng = np.random.default_rng(7)


def plan(**kw: Any) -> InputPlan:
    base: dict[str, Any] = dict(
        hw=(4, 6),
        layout="NCHW",
        dtype=np.dtype(np.float32),
        rgb=True,
        scale=1 / 255,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        resize="stretch",
    )
    base.update(kw)
    return InputPlan(**base)


# ------------------------------------------------------------------------------ preprocess


def test_normalisation_matches_the_textbook_formula_in_rgb_order() -> None:
    frame = np.zeros((4, 6, 3), np.uint8)
    frame[..., 0], frame[..., 1], frame[..., 2] = 10, 100, 250  # B, G, R
    x = preprocess([frame], plan())
    rgb = np.array([250, 100, 10]) / 255
    expect = (rgb - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert x.shape == (1, 3, 4, 6) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 2, 3], expect, rtol=1e-5)


def test_bgr_order_nhwc_layout_and_dtypes() -> None:
    frame = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    x = preprocess([frame, frame], plan(layout="NHWC", rgb=False, dtype=np.dtype(np.float16)))
    assert x.shape == (2, 4, 6, 3) and x.dtype == np.float16
    raw = preprocess([frame], plan(layout="NCHW", rgb=True, dtype=np.dtype(np.uint8)))
    # uint8 models get the pixels themselves, only reordered: no scale, mean or std.
    np.testing.assert_array_equal(raw[0], frame[..., ::-1].transpose(2, 0, 1))


@pytest.mark.parametrize("rgb", [True, False])
def test_planar_is_the_transpose_in_the_models_colour_order(rgb: bool) -> None:
    batch = np.random.default_rng(5).integers(0, 256, (2, 7, 9, 3), dtype=np.uint8)
    out = np.full((2, 3, 7, 9), 77, np.uint8)
    got = planar(batch, out, rgb)
    want = (batch[..., ::-1] if rgb else batch).transpose(0, 3, 1, 2)
    assert got is out
    np.testing.assert_array_equal(got, want)


def test_stretch_geometry_is_the_half_pixel_resize() -> None:
    frame = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    g = geometry((40, 60), (20, 30), "stretch")
    warped = cv2.warpAffine(frame, warp_matrix(g), (30, 20), flags=cv2.INTER_LINEAR)
    resized = cv2.resize(frame, (30, 20), interpolation=cv2.INTER_LINEAR)
    assert np.abs(warped.astype(int) - resized).max() <= 1


def test_letterbox_keeps_aspect_and_pads_symmetrically() -> None:
    frame = np.full((50, 100, 3), 200, np.uint8)
    g = geometry((50, 100), (64, 64), "letterbox")
    assert (g.sx, g.sy, g.tx, g.ty) == (0.64, 0.64, 0.0, 16.0)
    x = preprocess([frame], plan(hw=(64, 64), resize="letterbox", dtype=np.dtype(np.uint8)))
    assert (x[0, :, :15] == 0).all() and (x[0, :, 49:] == 0).all()  # pad bands
    assert (x[0, :, 17:47] == 200).all()  # content


def test_center_crop_scales_the_shorter_side_to_crop_from() -> None:
    g = geometry((100, 200), (50, 50), "center_crop", crop_from=60)
    assert g.sx == g.sy == 0.6
    assert (g.tx, g.ty) == ((50 - 120) / 2, (50 - 60) / 2)


# ------------------------------------------------------------------------------ postprocess


def test_softmax_and_sigmoid() -> None:
    x = rng.normal(0, 3, (5, 7)).astype(np.float32)
    p = softmax(x, axis=1)
    np.testing.assert_allclose(p.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(p, np.exp(x) / np.exp(x).sum(1, keepdims=True), rtol=1e-5)
    np.testing.assert_allclose(sigmoid(x), 1 / (1 + np.exp(-x)), rtol=1e-6)


def test_multiclass_is_argmax_over_channels() -> None:
    out = rng.normal(0, 1, (2, 5, 3, 4)).astype(np.float32)
    maps, bits = segment(out, "multiclass", "softmax", 0.5)
    assert bits is None and maps.dtype == np.uint8
    np.testing.assert_array_equal(maps, out.argmax(1))


@pytest.mark.parametrize("shape", [(2, 1, 3, 4), (2, 3, 4)])
def test_binary_thresholds_the_sigmoid(shape: tuple[int, ...]) -> None:
    out = rng.normal(0, 2, shape).astype(np.float32)
    maps, _ = segment(out, "binary", "sigmoid", 0.7)
    expect = (1 / (1 + np.exp(-out.reshape(2, 3, 4))) > 0.7).astype(np.uint8)
    np.testing.assert_array_equal(maps, expect)
    assert 0 < maps.sum() < maps.size  # both classes present: the check can fail
    probs, _ = segment(1 / (1 + np.exp(-out)), "binary", "none", 0.7)
    np.testing.assert_array_equal(probs, expect)


def test_class_map_passes_values_and_marks_impossible_ones() -> None:
    out = np.array([[[0, 3, -1, 300]]], np.int64)
    maps, _ = segment(out, "class_map", "none", 0.5)
    np.testing.assert_array_equal(maps, [[[0, 3, NO_CLASS, NO_CLASS]]])


def test_multilabel_bits_and_shown_class() -> None:
    p = np.zeros((1, 3, 1, 4), np.float32)
    p[0, 0, 0] = [0.9, 0.9, 0.1, 0.1]
    p[0, 2, 0] = [0.1, 0.9, 0.1, 0.8]
    shown, bits = segment(p, "multilabel", "none", 0.5)
    assert bits is not None
    np.testing.assert_array_equal(bits[0, 0], [0b001, 0b101, 0, 0b100])
    np.testing.assert_array_equal(shown[0, 0], [0, 2, NO_CLASS, 2])  # the highest class shows


def test_classify_top_k_best_first() -> None:
    out = np.array([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]], np.float32)
    top = classify(out, "softmax", k=2)
    assert [i for i, _ in top[0]] == [1, 2] and [i for i, _ in top[1]] == [2, 0]
    e = np.exp([1.0, 3.0, 2.0])
    assert top[0][0][1] == pytest.approx(e[1] / e.sum(), rel=1e-6)
    assert classify(out, "none", k=9)[1][0] == (2, 5.0)  # k capped at C, raw scores kept


def test_restore_identity_upscale_and_crop() -> None:
    small = rng.integers(0, 4, (3, 5), dtype=np.uint8)
    same = restore(small, geometry((3, 5), (3, 5), "stretch"), (3, 5))
    np.testing.assert_array_equal(same, small)
    up = restore(small, geometry((6, 10), (3, 5), "stretch"), (6, 10))
    np.testing.assert_array_equal(up, small.repeat(2, 0).repeat(2, 1))
    # Centre crop of a wide frame: the model never saw the left and right bands.
    g = geometry((4, 8), (4, 4), "center_crop", crop_from=4)
    full = restore(np.ones((4, 4), np.uint8), g, (4, 8))
    np.testing.assert_array_equal(full[:, :2], NO_CLASS)
    np.testing.assert_array_equal(full[:, 2:6], 1)
    np.testing.assert_array_equal(full[:, 6:], NO_CLASS)


def test_restore_letterbox_drops_the_padding() -> None:
    # A 2:1 frame letterboxed into a square: rows 0 and 3 of the model input are padding.
    small = np.array([[9, 9], [1, 2], [3, 4], [9, 9]], np.uint8)
    full = restore(small, geometry((2, 4), (4, 4), "letterbox").then_scale(0.5, 1.0), (2, 4))
    np.testing.assert_array_equal(full, [[1, 1, 2, 2], [3, 3, 4, 4]])


def test_coverage_fractions() -> None:
    m = np.array([[0, 0, 1, NO_CLASS]], np.uint8)
    assert coverage(m, ("bg", "fg", "other")) == {"bg": 0.5, "fg": 0.25}
    bits = np.array([[0b11, 0b01, 0, 0b10]], np.uint32)
    assert coverage_bits(bits, ("a", "b", "c")) == {"a": 0.5, "b": 0.5}


# ------------------------------------------------------------------------------ overlay


def _blend_reference(
    frame: Array, mask: Array, colors_rgb: Array, alpha: float, painted: Array
) -> Array:
    a = np.where(painted[mask], round(alpha * 256), 0)[..., None].astype(np.int64)
    col = colors_rgb[mask][..., ::-1].astype(np.int64)
    return ((frame.astype(np.int64) * (256 - a) + col * a + 128) >> 8).astype(np.uint8)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_blend_is_the_integer_formula(alpha: float) -> None:
    frame = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    mask = rng.integers(0, 4, (9, 11), dtype=np.uint8)
    mask[0, 0] = NO_CLASS
    colors = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    painted = np.zeros(256, bool)
    painted[1:4] = True
    out = Blender.build(colors, alpha, painted)(frame, mask)
    np.testing.assert_array_equal(out, _blend_reference(frame, mask, colors, alpha, painted))
    unpainted = ~painted[mask]
    np.testing.assert_array_equal(out[unpainted], frame[unpainted])  # background untouched
    if alpha == 1.0:
        np.testing.assert_array_equal(out[~unpainted], colors[mask][~unpainted][:, ::-1])


def test_pad_even_repeats_the_edge() -> None:
    f = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    p = pad_even(f)
    assert p.shape == (6, 8, 3)
    np.testing.assert_array_equal(p[:5, :7], f)
    np.testing.assert_array_equal(p[5, :7], f[4])
    assert pad_even(p) is p


def test_draw_top_writes_only_in_its_box() -> None:
    f = np.full((120, 200, 3), 200, np.uint8)
    out = draw_top(f, ["cat 0.90", "dog 0.05"])
    changed = np.argwhere((out != f).any(axis=2))
    assert len(changed) > 100
    assert changed[:, 0].max() < 60 and changed[:, 1].max() < 120
    np.testing.assert_array_equal(draw_top(f, []), f)


def _boxes_drawn_in_place(image: Array, boxes: list[Any]) -> Array:
    """``draw_boxes`` as it was before captions were cached: every caption drawn in place."""
    h = image.shape[0]
    thick, scale = max(1, round(h / 360)), max(0.35, h / 1000)
    for (x1, y1, x2, y2), text, color in boxes:
        cv2.rectangle(image, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), color, thick)
        if not text:
            continue
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        top = y1 - th - base - 2 if y1 >= th + base + 2 else y1
        cv2.rectangle(image, (x1, top), (x1 + tw + 4, top + th + base + 2), color, -1)
        ink = (0, 0, 0) if sum(color) > 380 else (255, 255, 255)
        cv2.putText(image, text, (x1 + 2, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, ink,
                    thick, cv2.LINE_AA)  # fmt: skip
    return image


@pytest.mark.parametrize("hw", [(31, 40), (240, 320), (720, 1280), (2160, 3840)])
def test_cached_captions_are_the_pixels_drawing_them_in_place_gives(hw: tuple[int, int]) -> None:
    h, w = hw
    r = np.random.default_rng(11)
    boxes: list[tuple[tuple[int, int, int, int], str, tuple[int, int, int]]] = []
    for _ in range(40):  # some at the top edge, some partly outside the frame
        x, y = int(r.integers(-40, w + 10)), int(r.integers(-40, h + 10))
        bw, bh = int(r.integers(1, w // 3 + 2)), int(r.integers(1, h // 3 + 2))
        text = "" if r.random() < 0.1 else f"{r.choice(['person', 'car', 'W'])} {r.random():.2f}"
        b, g, red = (int(c) for c in r.integers(0, 256, 3))
        boxes.append(((x, y, x + bw, y + bh), text, (b, g, red)))
    frame = r.integers(0, 256, (h, w, 3), dtype=np.uint8)
    want = _boxes_drawn_in_place(frame.copy(), boxes)
    for _ in range(2):  # the second time from the cache
        np.testing.assert_array_equal(draw_boxes(frame.copy(), boxes), want)


def test_the_caption_cache_keeps_to_its_byte_budget_oldest_out_first() -> None:
    captions = _Captions(budget=64 << 10)
    first = captions("car 0.50", 0.72, 2, (0, 0, 255), (255, 255, 255))
    assert captions("car 0.50", 0.72, 2, (0, 0, 255), (255, 255, 255)) is first
    for k in range(200):  # ids make every caption new
        captions(f"car #{k} 0.50", 0.72, 2, (0, 0, 255), (255, 255, 255))
        assert captions.held <= 64 << 10
    assert captions.held == sum(p.nbytes for p in captions.kept.values())
    assert 0 < len(captions.kept) < 200
    assert ("car 0.50", 0.72, 2, (0, 0, 255), (255, 255, 255)) not in captions.kept


GEOMETRIES = [
    ((47, 63), (32, 32), "stretch", None, (16, 16)),
    ((48, 64), (40, 40), "letterbox", None, (20, 20)),
    ((60, 90), (32, 48), "center_crop", 40, (16, 24)),
    ((33, 17), (24, 24), "letterbox", None, (24, 24)),
]


@pytest.mark.parametrize(("frame_hw", "model_hw", "mode", "crop", "small_hw"), GEOMETRIES)
def test_coverage_counted_on_the_small_mask_equals_the_full_one(
    frame_hw: tuple[int, int],
    model_hw: tuple[int, int],
    mode: Any,
    crop: int | None,
    small_hw: tuple[int, int],
) -> None:
    g = geometry(frame_hw, model_hw, mode, crop).then_scale(
        small_hw[1] / model_hw[1], small_hw[0] / model_hw[0]
    )
    where = MaskMap.build(g, small_hw, frame_hw)
    labels = tuple(f"c{i}" for i in range(6))
    small = rng.integers(0, 7, small_hw).astype(np.uint8)  # 6 is not a label: not counted
    small[0, 0] = 255
    full = restore(small, g, frame_hw)
    np.testing.assert_array_equal(where.restore(small), full)
    assert where.coverage(small, labels) == coverage(full, labels)  # exactly, floats and all
    bits = rng.integers(0, 64, small_hw).astype(np.uint8)
    assert where.coverage_bits(bits, labels) == coverage_bits(
        restore(bits.astype(np.uint32), g, frame_hw, fill=0), labels
    )


def test_shown_class_from_bits_is_the_highest_on() -> None:
    p = rng.random((2, 10, 5, 6)).astype(np.float32)
    shown, bits = segment(p, "multilabel", "none", 0.9)
    assert bits is not None
    np.testing.assert_array_equal(shown_from_bits(bits.astype(np.uint16), 10), shown)
    assert (shown == 255).any() and (shown < 10).any()


def test_stretch_warp_is_the_resize_at_pixel_centres() -> None:
    frame = rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)
    out = warp([frame, frame], (32, 40), "stretch")
    affine = warp_matrix(geometry((45, 70), (32, 40), "stretch"))
    import cv2

    general = cv2.warpAffine(frame, affine, (40, 32), flags=cv2.INTER_LINEAR)
    assert out.shape == (2, 32, 40, 3) and out.dtype == np.uint8
    assert np.abs(out[0].astype(int) - general).max() <= 1  # fixed-point rounding only
    same = warp([frame], (45, 70), "stretch")
    np.testing.assert_array_equal(same[0], frame)


@pytest.mark.parametrize(("frame_hw", "model_hw", "mode", "crop", "small_hw"), GEOMETRIES)
@pytest.mark.parametrize("alpha", [0.0, 0.4, 0.5, 1.0])
def test_blending_over_the_small_mask_equals_blending_the_restored_one(
    frame_hw: tuple[int, int],
    model_hw: tuple[int, int],
    mode: Any,
    crop: int | None,
    small_hw: tuple[int, int],
    alpha: float,
) -> None:
    # The packed path never builds the full-size class map; it must not change one pixel,
    # unseen ones (crop, letterbox bands) and NO_CLASS ones included.
    g = geometry(frame_hw, model_hw, mode, crop).then_scale(
        small_hw[1] / model_hw[1], small_hw[0] / model_hw[0]
    )
    where = MaskMap.build(g, small_hw, frame_hw)
    colors = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    painted = np.zeros(256, bool)
    painted[1:5] = True
    blend = Blender.build(colors, alpha, painted)
    frame = rng.integers(0, 256, (*frame_hw, 3), dtype=np.uint8)
    small = rng.choice(np.array([0, 1, 2, 3, 4, 9, 255], np.uint8), size=small_hw)
    want = blend(frame, where.restore(small))
    got = blend.over(frame, small, where.restore)
    np.testing.assert_array_equal(got, want)
    if alpha > 0:
        assert not np.array_equal(got, frame)
