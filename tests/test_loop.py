"""``worker.stages.loop`` and ``worker.stages.painters``: what happens to an answered frame,
checked on numpy frames with a real model's card (no video, no threads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from factory import make_model
from worker.description import Look
from worker.models import Model, load_model
from worker.ops.zones import Zone, ZoneSet
from worker.stages import Answer, Frame, FrameLoop, Item, Output, Painters, Recorder, painters_for
from worker.stages.loop import Picture

Array = np.ndarray[Any, Any]
ZONE = Zone("door", ((0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75)))


def model(tmp_path: Path) -> Model:
    return load_model(make_model(tmp_path / "m.onnx", classes=3), provider="cpu")


def frame(index: int, value: int = 40) -> Frame:
    return Frame(
        index=index, pts=index, time=index / 25, image=np.full((64, 64, 3), value, np.uint8)
    )


def answer(cls: int) -> Answer:
    return Answer(class_map=np.full((32, 32), cls, np.uint8))


class Tape(Output):
    """Remembers what it was given, in order; asks for the picture as a video would."""

    def __init__(self, log: list[tuple[str, int]], name: str) -> None:
        self.log, self.name = log, name
        self.pictures: list[Array] = []

    def processed(
        self, item: Item, answer: Answer, record: dict[str, Any], picture: Picture
    ) -> None:
        record.setdefault("seen_by", []).append(self.name)
        self.log.append((self.name, item.frame.index))
        self.pictures.append(picture())

    def skipped(self, item: Item, picture: Picture) -> None:
        self.log.append((f"{self.name}-skipped", item.frame.index))
        self.pictures.append(picture())


def test_the_decoded_frame_is_never_painted_on(tmp_path: Path) -> None:
    m = model(tmp_path)
    recorder = Recorder(m, ZoneSet([ZONE]))
    f = frame(0)
    before = f.image.copy()
    # Zones alone paint in place: they get a copy, the decoded frame stays as it came.
    zones_only = painters_for(m, Look(alpha=0.0, draw_zones=True), recorder)
    zones_only.painters = zones_only.painters[1:]
    drawn = zones_only.draw(f, answer(1))
    assert np.array_equal(f.image, before) and not np.array_equal(drawn, before)
    drawn = painters_for(m, Look(alpha=0.5), recorder).draw(f, answer(1))
    assert np.array_equal(f.image, before) and not np.array_equal(drawn, before)


def test_line_width_sets_the_zone_outline(tmp_path: Path) -> None:
    m = model(tmp_path)
    recorder = Recorder(m, ZoneSet([ZONE]))

    def outline_pixels(width: int) -> int:
        look = Look(alpha=0.0, line_width=width)
        image = painters_for(m, look, recorder).draw(frame(0, value=0), answer(0))
        return int(np.count_nonzero(image.any(axis=2)))

    thin, thick = outline_pixels(1), outline_pixels(6)
    assert thin > 0 and thick > 2 * thin  # the outline widens; the name is drawn alike


def test_the_loop_records_draws_once_and_hands_frames_on_in_order(tmp_path: Path) -> None:
    m = model(tmp_path)
    recorder = Recorder(m, None)
    drawn: list[int] = []

    class Counted(Painters):
        def draw(self, frame: Frame, answer: Answer) -> Array:
            drawn.append(frame.index)
            return super().draw(frame, answer)

    painters = Counted(painters_for(m, Look(alpha=1.0), recorder).painters)
    log: list[tuple[str, int]] = []
    first, second = Tape(log, "results"), Tape(log, "video")
    loop = FrameLoop(recorder, painters, [first, second])
    loop.take(Item("s", frame(0)), answer(1))
    loop.take(Item("s", frame(1), skip=True), None)  # skipped: drawn with the latest answer
    assert log == [("results", 0), ("video", 0), ("results-skipped", 1), ("video-skipped", 1)]
    assert drawn == [0, 1]  # once per frame, though two outputs asked
    assert np.array_equal(first.pictures[1], second.pictures[1])
    assert np.array_equal(first.pictures[1], first.pictures[0])  # same answer, same picture
    assert recorder.summary() == {"class_1": 1.0}
    # Nothing answered yet: a skipped frame goes out as it came.
    fresh = FrameLoop(Recorder(m, None), painters, [Tape([], "video")])
    raw = frame(0, value=7)
    fresh.take(Item("s", raw, skip=True), None)
    assert fresh.outputs[0].pictures[0] is raw.image  # type: ignore[attr-defined]
