"""``worker.stages.channels``: the queues between stages, checked without threads or video
(numpy frames, injected clocks)."""

from __future__ import annotations

import queue
import threading
from typing import Any

import numpy as np
import pytest

from worker.stages.channels import END, DropOldest, Lossless, Stopped
from worker.stages.frames import Frame, Item


def live(camera: str, index: int, received_at: float = 0.0) -> Item:
    image = np.full((2, 3, 3), index % 256, dtype=np.uint8)
    frame = Frame(index=index, pts=index * 40, time=index * 0.04, image=image)
    return Item(camera, frame, received_at, 1_700_000_000.0 + index, 1)


class Drops:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int, str]] = []

    def __call__(self, item: Item, reason: str) -> None:
        self.seen.append((item.stream, item.frame.index, reason))


def ingress(maxlen: int, drops: Drops, max_age_s: float | None = None, now: float = 0.0) -> Any:
    """The monitor's ingress: one queue for every camera, oldest dropped, late ones too."""
    return DropOldest(
        maxlen, drops, stream=lambda i: i.stream, max_age_s=max_age_s,
        age=lambda i: i.received_at, clock=lambda: now,
    )  # fmt: skip


def take(q: DropOldest, n: int) -> list[tuple[str, int]]:
    out = []
    for _ in range(n):
        try:
            item = q.get(0.0)
        except queue.Empty:
            break
        out.append((item.stream, item.frame.index))
    return out


def test_a_full_queue_drops_its_oldest_without_blocking() -> None:
    # A full queue makes room by dropping its oldest item, reported to on_drop.
    dropped: list[tuple[Any, str]] = []
    q = DropOldest(2, lambda item, why: dropped.append((item, why)), full="writer_behind")
    for i in range(5):
        q.put(i)
    assert dropped == [(0, "writer_behind"), (1, "writer_behind"), (2, "writer_behind")]
    assert len(q) == 2
    assert [q.get(0.01), q.get(0.01)] == [3, 4]
    with pytest.raises(queue.Empty):
        q.get(0.01)


def test_a_full_camera_drops_its_oldest_only() -> None:
    # A full camera queue drops that camera's oldest frame ("queue_full"), no other camera's.
    drops = Drops()
    q = ingress(2, drops)
    for i in range(3):
        q.put(live("a", i))
    q.put(live("b", 0))
    assert drops.seen == [("a", 0, "queue_full")]
    assert len(q) == 3
    assert sorted(take(q, 10)) == [("a", 1), ("a", 2), ("b", 0)]


def test_cameras_are_taken_in_turn_a_busy_one_cannot_starve_a_quiet_one() -> None:
    q = ingress(10, Drops())
    for i in range(6):
        q.put(live("busy", i))
    for i in range(2):
        q.put(live("quiet", i))
    got = take(q, 4)
    assert [cam for cam, _ in got] == ["busy", "quiet", "busy", "quiet"]
    assert [i for cam, i in got if cam == "busy"] == [0, 1]  # oldest first
    assert len(q) == 4


def test_late_frames_are_dropped_by_the_injected_clock() -> None:
    # Frames older than max_age_s (by the injected clock) are dropped as "late", not taken.
    drops = Drops()
    q = ingress(10, drops, max_age_s=1.0, now=100.0)
    q.put(live("a", 0, received_at=98.5))  # 1.5 s old: late
    q.put(live("a", 1, received_at=99.5))  # 0.5 s old: in time
    q.put(live("b", 0, received_at=90.0))
    assert take(q, 4) == [("a", 1)]
    assert sorted(drops.seen) == [("a", 0, "late"), ("b", 0, "late")]
    assert len(q) == 0


def test_close_ends_the_stream_after_what_it_holds_or_at_once() -> None:
    q = DropOldest(4, lambda item, why: None)
    q.put(1)
    q.close()
    assert q.get(None) == 1
    assert q.get(None) is END
    q = DropOldest(4, lambda item, why: None)
    q.put(1)
    q.put(2)
    assert q.close(drain=False) == [1, 2]  # handed back for the caller to count
    assert q.get(None) is END


def test_waits_are_bounded_and_a_close_wakes_a_waiter() -> None:
    q = DropOldest(4, lambda item, why: None)
    with pytest.raises(queue.Empty):
        q.get(0.01)
    got: list[Any] = []
    waiter = threading.Thread(target=lambda: got.append(q.get(None)))
    waiter.start()
    q.close()
    waiter.join(5)
    assert got == [END]


def test_lossless_waits_for_room_and_gives_up_when_the_run_stops() -> None:
    stop = threading.Event()
    with pytest.raises(queue.Empty):
        Lossless(1, stop).get(0.01)
    q = Lossless(1, stop)
    q.put("a")
    putter = threading.Thread(target=lambda: q.put("b"))  # waits: the queue is full
    putter.start()
    assert q.get(1.0) == "a"
    putter.join(5)
    assert q.get(1.0) == "b"
    stop.set()
    with pytest.raises(Stopped):
        q.get(None)
    with pytest.raises(Stopped):
        q.put("c")
