"""The inference stage's loop: micro-batches from a queue, one model run each, answers out.

One batcher for files and cameras. A file is lossless: a batch waits until it is full (or the
file ends), so every model call gets the batch size it is fastest at. A camera is not: a
frame that waits for three more is late, so after the first frame of a batch we wait at most
``wait_s`` for the rest and run with what came.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

from worker.ops.zones import FrameZones
from worker.stages.channels import END
from worker.stages.frames import Answer, Item
from worker.stages.infer import Inferencer, infer_frames

__all__ = ["collect", "run_inference"]


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
    classifier's zones of an item, each cropped and classified in the same calls. Returns how
    many model calls were made."""
    calls = 0
    while True:
        items, ended = collect(get, batch, wait_s, weigh=_runs, limit=limit)
        run = [i for i in items if not i.skip]
        if run:
            crops = [zones(i) for i in run] if zones is not None else None
            answers = iter(infer_frames(infer, [i.frame.image for i in run], crops))
            calls += 1
        for item in items:  # in order: a skipped frame goes where it came
            deliver(item, None if item.skip else next(answers))
        if ended:
            return calls
