"""The machinery around the fused graph: IO-bound buffers, provider options, micro-batching,
and the mask maths that lets coverage be counted at model resolution.

Real ONNX Runtime sessions on small ``onnx.helper`` models; pure functions with numpy alone.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from factory import make_model
from worker.models.engine import Engine, EngineOptions, providers_for
from worker.ops.overlay import Blender
from worker.ops.postprocess import (
    MaskMap,
    coverage,
    coverage_bits,
    restore,
    segment,
    shown_from_bits,
)
from worker.ops.preprocess import geometry, warp, warp_matrix
from worker.stages.batching import collect
from worker.stages.channels import END

Array = np.ndarray[Any, Any]
rng = np.random.default_rng(17)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    path = make_model(tmp_path / "m.onnx", classes=3, stride=2)
    return Engine(path.read_bytes(), provider="cpu", threads=1)


def inputs(n: int, seed: int) -> Array:
    return np.random.default_rng(seed).normal(0, 1, (n, 3, 32, 32)).astype(np.float32)


def reference(engine: Engine, x: Array) -> Array:
    out: Array = engine.session.run(None, {engine.input_name: x})[0]
    return out


# ----------------------------------------------------------------------------- engine


def test_buffers_are_bound_once_per_shape_and_results_are_copies(engine: Engine) -> None:
    a, b = inputs(2, 1), inputs(2, 2)
    out_a = engine.run(a)
    # After the first run of a shape its outputs are written into buffers bound to it.
    assert engine.bound_shapes() == {(2, 3, 32, 32): [(2, 3, 16, 16)]}
    out_b = engine.run(b)
    # The same buffers serve the next run; what the caller holds must not change under it.
    np.testing.assert_array_equal(out_a, reference(engine, a))
    np.testing.assert_array_equal(out_b, reference(engine, b))
    assert not np.array_equal(out_a, out_b)
    engine.run(inputs(1, 3))
    assert set(engine.bound_shapes()) == {(2, 3, 32, 32), (1, 3, 32, 32)}
    assert engine.bytes_in == (2 + 2 + 1) * 3 * 32 * 32 * 4
    assert engine.bytes_out == (2 + 2 + 1) * 3 * 16 * 16 * 4


def test_known_output_shapes_are_bound_before_the_first_run(engine: Engine) -> None:
    # CUDA graphs capture buffer addresses on the first run: they must exist before it.
    x = inputs(2, 4)
    spec = [((2, 3, 16, 16), np.dtype(np.float32))]
    out = engine.run_all(x, spec)[0]
    np.testing.assert_array_equal(out, reference(engine, x))
    assert engine.bound_shapes() == {(2, 3, 32, 32): [(2, 3, 16, 16)]}


def test_a_wrong_output_shape_falls_back_to_allocating(engine: Engine) -> None:
    x = inputs(2, 5)
    out = engine.run_all(x, [((2, 3, 32, 32), np.dtype(np.float32))])[0]
    np.testing.assert_array_equal(out, reference(engine, x))
    assert engine.bound_shapes() == {(2, 3, 32, 32): [(2, 3, 16, 16)]}


def test_buffers_stay_bounded_when_shapes_keep_changing(engine: Engine) -> None:
    for n in range(1, 8):
        engine.run(inputs(n, n))
    assert len(engine.bound_shapes()) == 4
    assert (7, 3, 32, 32) in engine.bound_shapes()


def test_threads_share_a_session_but_not_buffers(engine: Engine) -> None:
    # Each thread binds its own buffers: with one shared binding, one thread's input could be
    # overwritten by the other's before the run and answers would cross over.
    failures: list[str] = []
    start = threading.Barrier(2)

    def work(seed: int) -> None:
        start.wait()
        for i in range(30):
            x = inputs(2, seed * 1000 + i)
            if not np.array_equal(engine.run(x), reference(engine, x)):
                failures.append(f"thread {seed} run {i}")

    threads = [threading.Thread(target=work, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert failures == []


def test_without_io_binding_the_answers_are_the_same(tmp_path: Path) -> None:
    path = make_model(tmp_path / "m.onnx", classes=3)
    bound = Engine(path.read_bytes(), provider="cpu", threads=1)
    plain = Engine(
        path.read_bytes(), provider="cpu", threads=1, options=EngineOptions(io_binding=False)
    )
    x = inputs(3, 9)
    np.testing.assert_array_equal(bound.run(x), plain.run(x))
    assert plain.bound_shapes() == {}


def test_provider_lists_and_cuda_options() -> None:
    assert providers_for("cpu", EngineOptions(tensorrt=True)) == ["CPUExecutionProvider"]
    chain = providers_for("cuda", EngineOptions())
    assert [p if isinstance(p, str) else p[0] for p in chain] == [
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    cuda = dict(chain[0][1])
    assert cuda["cudnn_conv_algo_search"] == "HEURISTIC" and "enable_cuda_graph" not in cuda
    opts = EngineOptions(
        cudnn_conv_algo_search="EXHAUSTIVE",
        gpu_mem_limit=2 << 30,
        cuda_graph=True,
        tensorrt=True,
        trt_fp16=True,
        trt_cache="/cache",
        trt_profile=("x:1x8x8x3", "x:4x8x8x3", "x:4x8x8x3"),
    )
    trt, gpu, cpu = providers_for("cuda", opts)
    assert trt[0] == "TensorrtExecutionProvider" and cpu == "CPUExecutionProvider"
    assert trt[1]["trt_fp16_enable"] == "1" and trt[1]["trt_engine_cache_path"] == "/cache"
    assert trt[1]["trt_profile_opt_shapes"] == "x:4x8x8x3"
    assert gpu[1]["gpu_mem_limit"] == str(2 << 30) and gpu[1]["enable_cuda_graph"] == "1"
    assert gpu[1]["cudnn_conv_algo_search"] == "EXHAUSTIVE"


# ----------------------------------------------------------------------------- batching


def feed(items: list[Any]) -> queue.Queue[Any]:
    q: queue.Queue[Any] = queue.Queue()
    for item in items:
        q.put(item)
    return q


def getter(q: queue.Queue[Any]) -> Any:
    def get(timeout: float | None) -> Any:
        return q.get(timeout=timeout)

    return get


def test_files_get_full_batches_then_the_rest() -> None:
    get = getter(feed([1, 2, 3, 4, 5, END]))
    assert collect(get, 4, None) == ([1, 2, 3, 4], False)
    assert collect(get, 4, None) == ([5], True)


def test_end_right_after_a_full_batch() -> None:
    get = getter(feed([1, 2, END]))
    assert collect(get, 2, None) == ([1, 2], False)
    assert collect(get, 2, None) == ([], True)


class FakeClock:
    """Time that moves only when a wait on an empty queue uses it up."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float | None] = []

    def __call__(self) -> float:
        return self.now


def test_live_batches_wait_at_most_the_limit_after_the_first_frame() -> None:
    clock = FakeClock()
    arrivals: Iterator[tuple[float, Any]] = iter([(0.0, "a"), (0.01, "b"), (0.5, "c")])
    pending = next(arrivals)

    def get(timeout: float | None) -> Any:
        # The next frame arrives at its time; a wait shorter than that ends empty-handed.
        nonlocal pending
        clock.waits.append(timeout)
        at, item = pending
        if timeout is not None and clock.now + timeout < 100.0 + at:
            clock.now += timeout
            raise queue.Empty
        clock.now = max(clock.now, 100.0 + at)
        pending = next(arrivals, (1e9, END))
        return item

    assert collect(get, 4, 0.04, clock=clock) == (["a", "b"], False)
    assert clock.waits[0] is None  # the first frame of a batch is waited for without limit
    assert all(w is not None and w <= 0.04 + 1e-9 for w in clock.waits[1:])
    assert clock.now == pytest.approx(100.04)  # gave up at first frame + 0.04 s
    assert collect(get, 4, 0.04, clock=clock)[0] == ["c"]


def test_live_batches_with_a_real_queue_do_not_wait_forever() -> None:
    q = feed(["a", "b"])
    items, ended = collect(getter(q), 8, 0.01)
    assert (items, ended) == (["a", "b"], False)


# ----------------------------------------------------------------------------- mask maths


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
