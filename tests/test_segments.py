"""``worker.live.segments``: recording names and what a recorder keeps, on numpy frames (no
camera)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np

from worker.description import Encode
from worker.live.segments import SegmentRecorder, segment_name
from worker.stages.frames import Frame, Item


def test_segment_name_is_utc_with_ms() -> None:
    assert segment_name("door", 0.0) == "door-19700101T000000.000Z.mp4"
    assert segment_name("door", 1_700_000_000.25) == "door-20231114T221320.250Z.mp4"
    assert segment_name("door", 1_700_000_000.999) == "door-20231114T221320.999Z.mp4"


def test_segment_names_sort_by_time() -> None:
    # Segment file names of one camera sort in start-time order.
    walls = [1_700_000_000 + d for d in (0.0, 0.001, 0.5, 0.999, 1.0, 59.9, 3600.0, 86_400.01)]
    names = [segment_name("cam1", w) for w in walls]
    assert len(set(names)) == len(names)
    shuffled = names[::-1]
    random.Random(3).shuffle(shuffled)
    assert sorted(shuffled) == names


def test_segment_recorder_keeps_a_count_and_the_last_paths(tmp_path: Path) -> None:
    # A recorder runs for months: it counts its segments and keeps the newest five paths, not
    # a list that grows by one per segment (~525,000 a year at 60 s).
    rec = SegmentRecorder(tmp_path, "door", seconds=1.0, encode=Encode(crf=40, encoder="libx264"))
    for i in range(40):  # each frame a second after the last: a segment each
        image = np.full((16, 16, 3), i * 6, dtype=np.uint8)
        frame = Frame(index=i, pts=i, time=float(i), image=image)
        rec.write(Item("door", frame, float(i), 1_700_000_000.0 + i, 1), image)
    rec.close()
    files = sorted((tmp_path / "door").iterdir())
    assert len(files) == rec.written == 40
    assert list(rec.last) == files[-5:]


def test_an_event_s_parts_are_every_segment_it_spans(tmp_path: Path) -> None:
    # Issue 19 item 14. Before: the events page played only the segment an event started in:
    # an event near a segment's end played for a fraction of a second.
    rec = SegmentRecorder(tmp_path, "door", seconds=2.0, encode=Encode(crf=40, encoder="libx264"))
    t0 = 1_700_000_000.0
    for i in range(50):  # 10 fps for 5 s: segments from t0, t0 + 2, t0 + 4 (open)
        image = np.full((16, 16, 3), i * 4, dtype=np.uint8)
        frame = Frame(index=i, pts=i, time=i / 10, image=image)
        rec.write(Item("door", frame, i / 10, t0 + i / 10, 1), image)
    assert rec.written == 2 and rec.is_open  # the third is still being written
    parts = rec.parts(t0 + 1.5, t0 + 4.5)
    names = [segment_name("door", t0 + d) for d in (0, 2, 4)]
    assert [Path(p["file"]).name for p in parts] == names
    assert [(p["from_s"], p["until_s"], p["ready"]) for p in parts] == [
        (1.5, None, True), (0.0, None, True), (0.0, 0.5, False)]  # fmt: skip
    # In progress (no end yet): from its start to the newest frame.
    assert len(rec.parts(t0 + 3.0, None)) == 2
    # Within one segment: that one, to the event's end.
    assert [(p["from_s"], p["until_s"]) for p in rec.parts(t0 + 0.2, t0 + 0.7)] == [(0.2, 0.7)]
    rec.close()
