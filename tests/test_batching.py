"""``worker.stages.batching``: one batcher for files (full batches) and cameras (a frame waits
at most ``wait_s`` for the rest of its batch), checked with injected clocks."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from typing import Any

import pytest

from worker.stages.batching import collect
from worker.stages.channels import END


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
