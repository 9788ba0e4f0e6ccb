"""``worker.stages.batching``: one batcher for files (full batches) and cameras (a frame waits
at most ``wait_s`` for the rest of its batch), checked with injected clocks; lanes (model
runs in flight at once) with a real model."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from factory import make_bright_model
from worker.description import Speed
from worker.models import Model, load_model
from worker.stages.batching import collect, run_inference
from worker.stages.channels import END
from worker.stages.frames import Frame, Item
from worker.stages.infer import Inferencer


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


# ---------------------------------------------------------------------------------- lanes


def bright_model(tmp_path: Path, lanes: int = 1) -> Model:
    return load_model(make_bright_model(tmp_path / "bright.onnx"), provider="cpu", lanes=lanes)


def bright_inferencer(tmp_path: Path, lanes: int) -> Inferencer:
    return Inferencer(bright_model(tmp_path, lanes), speed=Speed(lanes=lanes), batch=1)


def item(index: int, bright: bool, big: bool) -> Item:
    h, w = (2160, 3840) if big else (48, 64)
    image = np.full((h, w, 3), 250 if bright else 5, np.uint8)
    return Item("clip", Frame(index, index, index / 25, image))


def test_lanes_deliver_in_order_whichever_run_ends_first(tmp_path: Path) -> None:
    # A 4K frame takes each lane far longer to stage than a tiny one, so the lane holding
    # frame 0 finishes after the one holding frame 1: answers must still go out in order,
    # each with its own frame.
    frames = [item(i, bright=i % 3 == 0, big=i % 2 == 0) for i in range(12)]
    got: list[tuple[int, int]] = []
    infer = bright_inferencer(tmp_path, lanes=3)
    assert infer.lanes == 3
    calls = run_inference(
        getter(feed([*frames, END])),
        infer,
        lambda it, answer: got.append((it.frame.index, int(answer.class_map.max()))),  # type: ignore[union-attr]
        batch=1,
        wait_s=None,
    )
    assert calls == 12
    assert got == [(i, 1 if i % 3 == 0 else 0) for i in range(12)]


def test_lanes_run_ahead_while_an_answer_waits_to_be_delivered(tmp_path: Path) -> None:
    # The writer's queue is full: delivering frame 0 waits. The other lane must go on to the
    # next frames meanwhile (up to one batch per lane held back) instead of waiting for its
    # turn, which left a core idle whenever runs ended out of turn or the writer lagged.
    frames = [item(i, bright=i % 2 == 0, big=False) for i in range(6)]
    taken: list[int] = []
    q = feed([*frames, END])

    def get(timeout: float | None) -> Any:
        got = q.get(timeout=timeout)
        if got is not END:
            taken.append(got.frame.index)
        return got

    got: list[int] = []
    meanwhile: list[int] = []

    def deliver(it: Item, answer: Any) -> None:
        if it.frame.index == 0:
            deadline = time.monotonic() + 20
            while 2 not in taken and time.monotonic() < deadline:
                time.sleep(0.01)  # the writer, busy: nothing to wait for but time
            meanwhile.extend(taken)
        got.append(it.frame.index)

    run_inference(get, bright_inferencer(tmp_path, lanes=2), deliver, batch=1, wait_s=None)
    assert meanwhile == [0, 1, 2]  # frame 1's lane took frame 2, and no more (one per lane)
    assert got == list(range(6))


def test_a_failing_lane_stops_the_others_and_its_error_reaches_the_caller(
    tmp_path: Path,
) -> None:
    # Frame 0 cannot be staged (no pixels); the other lanes wait on a queue that never ends.
    q = feed([Item("clip", Frame(0, 0, 0.0, np.zeros((0, 0, 3), np.uint8)))])
    infer = bright_inferencer(tmp_path, lanes=2)
    with pytest.raises(cv2.error):
        run_inference(getter(q), infer, lambda it, a: None, batch=1, wait_s=None)
    assert [t.name for t in threading.enumerate() if t.name.startswith("worker-lane")] == []


@pytest.mark.parametrize("fuse", [True, False])
def test_each_lane_gets_its_share_of_the_cores_whatever_the_model_was_loaded_for(
    tmp_path: Path, fuse: bool
) -> None:
    model = bright_model(tmp_path)  # loaded for one lane
    infer = Inferencer(model, speed=Speed(lanes=2, fuse=fuse), batch=1)
    infer([np.zeros((48, 64, 3), np.uint8)])  # the first run has every core (engine.py)
    opts = infer.engine.session.get_session_options()
    assert (infer.lanes, opts.intra_op_num_threads) == (2, max(1, (os.cpu_count() or 1) // 2))
    # No block planned per run in flight: each lane would hold a whole one (engine.py).
    assert not opts.enable_mem_pattern
    alone = Inferencer(model, speed=Speed(lanes=1, fuse=fuse), batch=1)
    assert alone.engine.session.get_session_options().intra_op_num_threads == (os.cpu_count() or 1)


def test_files_run_a_lane_per_core_and_cameras_one_unless_told(tmp_path: Path) -> None:
    model = bright_model(tmp_path)
    cores = os.cpu_count() or 1
    assert Inferencer(model, speed=Speed()).lanes == cores
    # A camera's frame waits for its answer: one run on every core is quicker than one each.
    assert Inferencer(model, speed=Speed(), live=True).lanes == 1
    assert Inferencer(model, speed=Speed(lanes=2), live=True).lanes == 2
