"""Micro-batches from a stream of frames, without holding a frame too long.

A file is lossless: the batch waits until it is full (or the file ends), so every model call
gets the batch size it is fastest at. A live source is not: a frame that waits for three more
is late, so after the first frame of a batch we wait at most ``wait_s`` for the rest and run
with what came.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

__all__ = ["END", "collect"]

#: What ``get`` returns at the end of the stream.
END: Any = object()


def collect(
    get: Callable[[float | None], Any],
    size: int,
    wait_s: float | None,
    *,
    end: Any = END,
    clock: Callable[[], float] = time.monotonic,
    weigh: Callable[[Any], int] | None = None,
    limit: int | None = None,
) -> tuple[list[Any], bool]:
    """One batch: ``(items, ended)``. ``items`` may be empty only when ``ended``.

    ``get(timeout)`` returns the next item, ``end`` at the end of the stream, or raises
    ``queue.Empty`` when ``timeout`` (seconds; None: no limit) passes first. The first item is
    waited for without limit; the rest until ``wait_s`` after it (None: until the batch is
    full). ``weigh``: how much an item counts toward ``size`` (default 1: frames a model
    skips count 0); ``limit``: the most items held, whatever they weigh.
    """
    first = get(None)
    if first is end:
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
        if item is end:
            return items, True
        items.append(item)
        weight += weigh(item) if weigh else 1
    return items, False
