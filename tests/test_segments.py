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
