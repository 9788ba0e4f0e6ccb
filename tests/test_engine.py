"""``worker.models.engine``: the ONNX Runtime session with IO binding, buffers bound once per
shape, provider lists and CUDA options."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from factory import make_model
from worker.devices import no_nvidia_device
from worker.errors import ProviderError
from worker.models.engine import Engine, EngineOptions, providers_for

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


def together(work: Callable[[int], None], seeds: Sequence[int]) -> None:
    """``work(seed)`` in a thread per seed, all at once; each must end within a minute."""
    threads = [threading.Thread(target=work, args=(s,)) for s in seeds]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)


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

    together(work, (1, 2))
    assert failures == []


def _sessions_made(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """ONNX Runtime's sessions as the engine makes them: (intra-op threads, arena) each."""
    made: list[tuple[int, bool]] = []
    real = ort.InferenceSession

    def spy(model: Any, sess_options: ort.SessionOptions, **kw: Any) -> ort.InferenceSession:
        made.append((sess_options.intra_op_num_threads, sess_options.enable_cpu_mem_arena))
        return real(model, sess_options=sess_options, **kw)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    return made


@pytest.mark.parametrize("io_binding", [True, False])
def test_the_first_run_has_every_core_then_the_lanes_share_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, io_binding: bool
) -> None:
    # With lanes each run got one lane's share of the cores, the first one too, while the
    # other lanes had nothing to run yet: the first answer took twice as long on two cores.
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    path = make_model(tmp_path / "m.onnx", classes=3, stride=2)
    want = Engine(path.read_bytes(), provider="cpu", threads=1).load()
    made = _sessions_made(monkeypatch)
    options = EngineOptions(io_binding=io_binding)
    lanes = Engine(path.read_bytes(), provider="cpu", lanes=2, options=options).load()
    assert made == [(4, False)]  # made to run first: every core, no arena of its own
    made.clear()
    start = threading.Barrier(2)
    got: dict[int, list[Array]] = {1: [], 2: []}

    def work(seed: int) -> None:  # two lanes' first runs at once: one waits for the other
        start.wait()
        for i in range(3):
            got[seed].append(lanes.run(inputs(1, seed * 10 + i)))

    together(work, (1, 2))
    for seed, outs in got.items():
        for i, out in enumerate(outs):
            np.testing.assert_array_equal(out, want.run(inputs(1, seed * 10 + i)))
    assert made == [(2, True)]  # the lanes' session, made once the first run was done
    assert lanes.runs == 6 and lanes.session.get_session_options().intra_op_num_threads == 2


def test_a_first_run_on_every_core_only_where_lanes_share_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    path = make_model(tmp_path / "m.onnx", classes=3, stride=2)
    made = _sessions_made(monkeypatch)
    x = inputs(1, 3)
    for kw in ({"lanes": 1}, {"lanes": 2, "threads": 1}, {"lanes": 4, "threads": 3}):
        engine = Engine(path.read_bytes(), provider="cpu", **kw)  # type: ignore[arg-type]
        engine.run(x)
        engine.run(x)
    # One lane has every core already; threads set are the threads asked for.
    assert made == [(4, True), (1, True), (3, True)]
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    made.clear()
    Engine(path.read_bytes(), provider="cpu", lanes=2).run(x)
    assert made == [(1, True)]


def test_without_io_binding_the_answers_are_the_same(tmp_path: Path) -> None:
    path = make_model(tmp_path / "m.onnx", classes=3)
    bound = Engine(path.read_bytes(), provider="cpu", threads=1)
    plain = Engine(
        path.read_bytes(), provider="cpu", threads=1, options=EngineOptions(io_binding=False)
    )
    x = inputs(3, 9)
    np.testing.assert_array_equal(bound.run(x), plain.run(x))
    assert plain.bound_shapes() == {}


def test_no_cuda_session_is_tried_where_no_nvidia_device_can_exist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime-gpu lists the CUDA provider wherever it is installed; where CUDA does not
    load, a session asked for it is built all the same, on the CPU. With no NVIDIA device
    node that try is skipped: the model's one session is the CPU one, made when first used.
    """
    made: list[Any] = []
    real = ort.InferenceSession

    def counted(*args: Any, **kwargs: Any) -> Any:
        made.append(kwargs.get("providers"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", counted)
    path = make_model(tmp_path / "m.onnx", classes=3)
    engine = Engine(path.read_bytes(), provider="auto", threads=1)
    assert engine.device == "cpu"
    if no_nvidia_device() is None:  # a GPU may be here: the try is made, and may succeed
        return
    assert made == []
    assert engine.run(inputs(1, 5)).shape == (1, 3, 32, 32)
    assert made == [["CPUExecutionProvider"]]
    with pytest.raises(ProviderError, match="did not load"):
        Engine(path.read_bytes(), provider="cuda")
    assert len(made) == 1


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


# ----------------------------------------------------------------------------- mask maths
