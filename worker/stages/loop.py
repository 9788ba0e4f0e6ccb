"""The frame loop: what happens to each frame of a stream once the model has answered.

One ``FrameLoop`` per stream (a file, a camera), shared by ``worker run``, queued jobs and
``worker monitor``; they differ only in their outputs. For a frame the model ran on: record
it (``Recorder``), hand the record and the annotated picture to each output in order, then
to the watch rules (``EventLog``). For a frame skipped on purpose (``--every``, ``--fps``):
the outputs that write every frame (a video, a recording) get it drawn with the latest
answer. The picture is drawn at most once per frame, and only if something asks for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from worker.stages.events import EventLog
from worker.stages.frames import Answer, Item
from worker.stages.painters import Painters
from worker.stages.records import Recorder

__all__ = ["FrameLoop", "Output", "Picture", "Record"]

Array = np.ndarray[Any, Any]
#: A frame's JSON record: what the results file gets, one line per processed frame.
Record = dict[str, Any]


class Picture:
    """A frame's annotated picture, drawn on the first call and kept."""

    __slots__ = ("_draw", "_image")

    def __init__(self, draw: Callable[[], Array]) -> None:
        self._draw = draw
        self._image: Array | None = None

    def __call__(self) -> Array:
        if self._image is None:
            self._image = self._draw()
        return self._image


class Output:
    """Something a stream's frames go to, in order: the JSON lines, a video, a recording, the
    live view, mask files. Each method does nothing unless overridden."""

    def processed(self, item: Item, answer: Answer, record: Record, picture: Picture) -> None:
        """A frame the model ran on. ``record`` may still be added to (it is written by an
        output after this one)."""

    def skipped(self, item: Item, picture: Picture) -> None:
        """A frame skipped on purpose; ``picture`` draws it with the latest answer."""


class FrameLoop:
    def __init__(
        self,
        recorder: Recorder,
        painters: Painters,
        outputs: Sequence[Output],
        events: EventLog | None = None,
        when: Callable[[Item], float] = lambda item: item.frame.time,
    ) -> None:
        """``when``: an item's time for the watch rules (video seconds for a file, wall-clock
        seconds for a camera)."""
        self.recorder = recorder
        self.painters = painters
        self.outputs = list(outputs)
        self.events = events if events else None
        self.when = when
        self.last: Answer | None = None  # what frames skipped on purpose are drawn with

    def take(self, item: Item, answer: Answer | None) -> None:
        """One frame, with its answer (None: skipped on purpose)."""
        frame = item.frame
        if answer is None:
            last = self.last
            skipped = Picture(
                (lambda: self.painters.draw(frame, last)) if last else (lambda: frame.image)
            )
            for out in self.outputs:
                out.skipped(item, skipped)
            return
        self.last = answer
        record = self.recorder.record(frame, answer)
        picture = Picture(lambda: self.painters.draw(frame, answer))
        for out in self.outputs:
            out.processed(item, answer, record, picture)
        if self.events is not None:
            self.events.update(record, self.when(item), picture, frame.image)
