"""The inference stage's loop: micro-batches from a queue, one model run each, answers out.

One batcher for files and cameras. A file is lossless: a batch waits until it is full (or the
file ends), so every model call gets the batch size it is fastest at. A camera is not: a
frame that waits for three more is late, so after the first frame of a batch we wait at most
``wait_s`` for the rest and run with what came.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from worker.ops.zones import FrameZones
from worker.stages.channels import END
from worker.stages.frames import Answer, Item
from worker.stages.infer import Inferencer, infer_frames
from worker.stages.threads import name_os_thread

__all__ = ["collect", "run_inference"]

#: How often a lane waiting for the first frame of a batch looks for another lane's failure.
_POLL_S = 0.1


def collect(
    get: Callable[[float | None], Any],
    size: int,
    wait_s: float | None,
    *,
    clock: Callable[[], float] = time.monotonic,
    weigh: Callable[[Any], int] | None = None,
    limit: int | None = None,
) -> tuple[list[Any], bool]:
    """One batch: ``(items, ended)``. ``items`` may be empty only when ``ended``.

    ``get(timeout)`` returns the next item, ``END`` at the end of the stream, or raises
    ``queue.Empty`` when ``timeout`` (seconds; None: no limit) passes first. The first item is
    waited for without limit; the rest until ``wait_s`` after it (None: until the batch is
    full). ``weigh``: how much an item counts toward ``size`` (default 1: frames a model
    skips count 0); ``limit``: the most items held, whatever they weigh.
    """
    first = get(None)
    if first is END:
        return [], True
    items = [first]
    weight = weigh(first) if weigh else 1
    deadline = None if wait_s is None else clock() + wait_s
    while weight < size and (limit is None or len(items) < limit):
        timeout = None
        if deadline is not None:
            timeout = deadline - clock()
            if timeout <= 0:
                break
        try:
            item = get(timeout)
        except queue.Empty:
            break
        if item is END:
            return items, True
        items.append(item)
        weight += weigh(item) if weigh else 1
    return items, False


def _runs(item: Item) -> int:
    return 0 if item.skip else 1


class _Broken(Exception):
    """Another lane failed: this one stops where it is."""


class _Lanes:
    """The lanes of one inference stage: batches are taken one lane at a time and numbered,
    and delivered in that order whichever lane's model run ends first. A lane whose run ends
    out of turn leaves its answers and takes the next batch (waiting for its turn instead
    left a core idle at every uneven pair of runs); the lane that completes the turn
    delivers, its own and those left after it. The first failure stops every lane and is
    raised by ``run``."""

    def __init__(
        self,
        get: Callable[[float | None], Any],
        infer: Inferencer,
        deliver: Callable[[Item, Answer | None], None],
        lanes: int,
        collect_batch: Callable[[Callable[[float | None], Any]], tuple[list[Item], bool]],
        zones: Callable[[Item], FrameZones | None] | None,
    ) -> None:
        self.get, self.infer, self.deliver, self.lanes = get, infer, deliver, lanes
        self.collect_batch, self.zones = collect_batch, zones
        self.take = threading.Lock()
        self.turn = threading.Condition()
        self.taken = 0  # batches numbered so far
        self.next = 0  # the number of the batch whose answers go next
        # Answered batches waiting for their turn, by number; at most ``lanes`` (each holds
        # its frames), and one lane at a time delivers.
        self.done: dict[int, tuple[list[Item], list[Answer]]] = {}
        self.delivering = False
        self.ended = False
        self.failure: BaseException | None = None
        self.calls = 0

    def run(self) -> int:
        helpers = []
        for k in range(1, self.lanes):
            name = f"worker-lane-{k}"
            helpers.append(
                threading.Thread(target=self._lane, args=(name,), name=name, daemon=True)
            )
        for t in helpers:
            t.start()
        self._lane(None)  # this thread is a lane too
        for t in helpers:
            t.join()
        if self.failure is not None:
            raise self.failure
        return self.calls

    def _patient(self, timeout: float | None) -> Any:
        """``get``, waiting for the first frame of a batch in slices, so that a lane blocked
        on an empty queue notices another lane's failure."""
        while True:
            if self.failure is not None:
                raise _Broken
            try:
                return self.get(_POLL_S if timeout is None else timeout)
            except queue.Empty:
                if timeout is not None:
                    raise

    def _lane(self, name: str | None) -> None:
        if name is not None:
            name_os_thread(name)
        try:
            while self._step():
                pass
        except _Broken:
            return
        except BaseException as e:
            with self.turn:
                if self.failure is None:
                    self.failure = e
                self.turn.notify_all()

    def _step(self) -> bool:
        """Take a batch, run it, leave its answers for their turn and deliver what is due;
        False when there is no more."""
        with self.turn:
            # Ahead of the turn by at most ``lanes`` batches: their frames are held here.
            self.turn.wait_for(lambda: len(self.done) < self.lanes or self.failure is not None)
        with self.take:
            if self.ended or self.failure is not None:
                return False
            items, ended = self.collect_batch(self._patient if self.lanes > 1 else self.get)
            number = self.taken
            self.taken += 1
            self.ended = ended
            run = [i for i in items if not i.skip]
            crops = [self.zones(i) for i in run] if self.zones is not None and run else None
        answers = infer_frames(self.infer, [i.frame.image for i in run], crops) if run else []
        with self.turn:
            self.done[number] = (items, answers)
            self.calls += 1 if run else 0
            if self.delivering:
                return not ended  # the lane delivering now takes these in their turn
            self.delivering = True
        self._deliver_due()
        return not ended

    def _deliver_due(self) -> None:
        """Deliver the answered batches from the turn on, in order, until one is not back
        yet; outside the lock, so that lanes ending meanwhile leave theirs and go on."""
        while True:
            with self.turn:
                due = self.done.pop(self.next, None) if self.failure is None else None
                if due is None:
                    self.delivering = False
                    self.turn.notify_all()
                    return
                self.turn.notify_all()  # room for a lane waiting to run ahead
            items, answers = due
            it = iter(answers)
            try:
                for item in items:  # in order: a skipped frame goes where it came
                    self.deliver(item, None if item.skip else next(it))
            except BaseException:
                with self.turn:
                    self.delivering = False
                raise
            with self.turn:
                self.next += 1


def run_inference(
    get: Callable[[float | None], Any],
    infer: Inferencer,
    deliver: Callable[[Item, Answer | None], None],
    *,
    batch: int,
    wait_s: float | None,
    zones: Callable[[Item], FrameZones | None] | None = None,
    limit: int | None = None,
) -> int:
    """Run the model on the items ``get`` gives until ``END``, ``batch`` frames a call, and
    ``deliver`` every item in order with its answer (None: skipped on purpose). ``zones``: a
    classifier's zones of an item, each cropped and classified in the same calls. As many
    model runs are in flight at once as ``infer`` was made for (``Inferencer.lanes``: its
    sessions share the cores among them); this thread is one lane, the others are started
    here and ended before it returns. Returns how many model calls were made."""

    def batch_from(source: Callable[[float | None], Any]) -> tuple[list[Item], bool]:
        return collect(source, batch, wait_s, weigh=_runs, limit=limit)

    return _Lanes(get, infer, deliver, max(1, infer.lanes), batch_from, zones).run()
