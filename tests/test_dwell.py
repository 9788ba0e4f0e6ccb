"""``worker.ops.dwell`` (anchors, dwell time per track per zone, per-object loiter rules) with
numpy alone, and end to end: a generated video where one object stays in a zone and another
passes through (``factory.make_moments_detector``), with events, their snapshots and crops,
and an instance segmenter's masks as pictures of instance ids."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from factory import make_model, make_moments_detector
from worker.ops.dwell import Dwell, Loiter, Seen, anchor_of
from worker.ops.masks import instance_ids, instance_png
from worker.ops.rules import Tracker, parse_rule, value_of
from worker.stages.events import EventLog
from worker.testing import clean_env, make_video, worker_cli

Array = np.ndarray[Any, Any]
BOX = (10.0, 20.0, 50.0, 100.0)


@pytest.mark.parametrize(
    ("where", "point"),
    [
        ("bottom_center", (30, 100)), ("center", (30, 60)), ("top_center", (30, 20)),
        ("center_left", (10, 60)), ("center_right", (50, 60)), ("bottom_left", (10, 100)),
        ("bottom_right", (50, 100)), ("top_left", (10, 20)), ("top_right", (50, 20)),
    ],
)  # fmt: skip
def test_anchor_points(where: Any, point: tuple[float, float]) -> None:
    assert anchor_of(BOX, where) == point


def seen(oid: int, *zones: str, label: str = "person") -> Seen:
    return Seen(oid, label, BOX, zones)


def test_dwell_counts_from_the_first_frame_inside_and_survives_a_short_absence() -> None:
    d = Dwell(grace_s=1.0)
    assert d.update([seen(1, "door")], 0.0, [1]) == []
    d.update([seen(1, "door", "hall")], 2.0, [1])
    assert d.of(1) == {"door": 2.0, "hall": 0.0}
    d.update([seen(1)], 2.5, [1])  # outside for half a second: still staying
    d.update([seen(1, "door")], 3.0, [1])
    assert d.of(1) == {"door": 3.0, "hall": 0.0}
    ended = d.update([seen(1)], 3.8, [1])  # hall: last inside at 2.0, 1.8 s ago
    assert [(s.zone, s.seconds) for s in ended] == [("hall", 0.0)]
    ended = d.update([], 3.9, [])  # the tracker dropped it
    assert [(s.zone, s.seconds) for s in ended] == [("door", 3.0)] and d.stays == {}


def test_objects_without_an_id_have_no_dwell() -> None:
    d = Dwell()
    d.update([seen(0, "door")], 0.0, [])
    assert d.stays == {}


def test_loiter_starts_per_object_after_its_own_time_and_ends_when_it_leaves() -> None:
    lo = Loiter([("door", "person", 2.0, 0.5)])
    events = []
    # Person 1 from t=0, person 2 from t=1; a car in the door and person 3 elsewhere never count.
    for step in range(9):
        t = step * 0.5
        frame = [seen(1, "door"), seen(4, "door", label="car"), seen(3, "hall")]
        if t >= 1.0:
            frame.append(seen(2, "door"))
        if t >= 3.5:
            frame[0] = seen(1)  # person 1 walks out at 3.5
        events += [(t, e.kind, e.stay.id) for e in lo.update(frame, t)]
    assert events == [(2.0, "start", 1), (3.0, "start", 2), (4.0, "end", 1)]
    ends = lo.finish()
    assert [(e.kind, e.stay.id, e.end) for e in ends] == [("end", 2, 4.0)]


def test_a_short_visit_makes_no_event() -> None:
    lo = Loiter([("door", "person", 2.0, 0.5)])
    out = []
    for step, zones in enumerate([("door",), ("door",), (), (), ("door",), ("door",)]):
        out += lo.update([seen(1, *zones)], step * 0.5, None)
    assert out == [] and lo.finish() == []


def test_rule_forms_per_object_and_at_least() -> None:
    each = parse_rule("door:person loiter=30s end=2s", ["person"], ["door"], counts=True)
    assert each.each and each.loiter_s == 30 and each.end_s == 2
    assert each.text == "door:person end=2s loiter=30s"
    at_least = parse_rule("door:person>=3", ["person"], ["door"], counts=True)
    assert at_least.inclusive and at_least.text == "door:person>=3@1"
    t = Tracker([at_least, each])
    record = {"zones": {"door": {"counts": {"person": 3}}}}
    assert [tr.kind for tr in t.update(record, 0.0)] == ["peak", "start"]  # 3 >= 3
    for text, said in [
        ("door:person", "is not a watch rule"),
        ("person loiter=3s", "needs a zone and loiter=S"),
        ("door:person loiter=3s min=1", "takes only loiter= and end="),
    ]:
        with pytest.raises(ValueError, match=said):
            parse_rule(text, ["person"], ["door"], counts=True)


def test_a_coverage_rule_reads_coverage_where_regions_also_count() -> None:
    # A segmenter run with --regions records both; the rule's threshold is a fraction of the
    # frame. Before: the count (1 region) was read and 1 > 0.5 started an event.
    record = {"coverage": {"crack": 0.3}, "counts": {"crack": 1}}
    assert value_of(parse_rule("crack>0.5"), record) == 0.3


def test_per_object_events_carry_the_track_a_snapshot_and_the_crop(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    log = EventLog(
        "input", "clip.mp4", [parse_rule("door:person loiter=1s")], events.append,
        snapshots=tmp_path / "shots",
    )  # fmt: skip
    image = np.zeros((120, 160, 3), np.uint8)
    image[20:100, 10:50] = (0, 0, 255)  # the person, where BOX is
    annotated = np.full((120, 160, 3), 128, np.uint8)
    objects = [{"id": 7, "label": "person", "box": list(BOX), "zones": ["door"]}]
    for step in range(4):
        log.update({"objects": objects}, step * 0.5, lambda: annotated, image)
    log.finish(2.0)
    start, end = events
    assert (start["event"], start["id"], start["start"], start["dwell_s"]) == ("start", 7, 0, 1)
    assert (end["event"], end["end"], end["duration_s"]) == ("end", 1.5, 1.5)
    assert start["snapshot"] == end["snapshot"] and start["crop"] == end["crop"]
    crop = cv2.imread(start["crop"])
    # The box and a tenth of its size around it: 40x80 -> 48x96, red inside.
    assert crop is not None and crop.shape == (96, 48, 3)
    assert crop[48, 24].tolist() == pytest.approx([0, 0, 255], abs=12)
    shot = cv2.imread(start["snapshot"])
    assert shot is not None and shot.shape == (120, 160, 3)


def test_instance_ids_first_listed_wins_and_png_round_trips() -> None:
    a = np.ones((4, 4), bool)
    b = np.ones((4, 6), bool)
    ids = instance_ids([((0, 0, 4, 4), a), ((2, 2, 8, 6), b)], (10, 10))
    assert ids.dtype == np.uint16 and ids[1, 1] == 1 and ids[3, 3] == 1 and ids[5, 7] == 2
    assert (ids == 2).sum() == 24 - 4 and ids[9, 9] == 0
    back = cv2.imdecode(np.frombuffer(instance_png(ids), np.uint8), cv2.IMREAD_UNCHANGED)
    assert back is not None and back.dtype == np.uint16 and np.array_equal(back, ids)


# ------------------------------------------------------------------------ through a whole run


def visitors(index: int, width: int, height: int) -> Array:
    """A red square that comes into the dock (the right half) and stays, and a blue one that
    passes through it in a few frames (BGR, 160x120, 25 fps)."""
    img = np.zeros((height, width, 3), np.uint8)
    x = min(20 + 6 * index, 110)  # in from frame ~12 (its bottom centre past x 80), then stays
    img[50:74, x : x + 24] = (0, 0, 255)
    bx = -30 + 14 * index  # blue crosses the dock between frames ~7 and ~14
    if 0 <= bx < width - 24:
        img[90:114, bx : bx + 24] = (255, 0, 0)
    return img


def test_loiter_events_dwell_and_instance_pictures_end_to_end(tmp_path: Path) -> None:
    make_moments_detector(tmp_path / "seg.onnx", size=96, instances=True)
    make_video(tmp_path / "dock.mp4", frames=50, width=160, height=120, image=visitors, crf=4)
    proc = worker_cli(
        tmp_path, "run", "--input", "dock.mp4", "--model", "seg.onnx", "--output", "none",
        "--results", "r.jsonl", "--zone", "dock=0.5,0 1,0 1,1 0.5,1",
        "--watch", "dock:red loiter=0.5s", "--watch", "dock:blue loiter=0.5s",
        "--masks", "png", env=clean_env(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    events = [json.loads(x) for x in (tmp_path / "r.events.jsonl").read_text().splitlines()]
    # Red stays (one event, to the end of the video); blue passes in well under 0.5 s.
    assert [(e["event"], e["label"]) for e in events] == [("start", "red"), ("end", "red")]
    start, end = events
    assert start["dwell_s"] == pytest.approx(0.5, abs=0.041) and end["end"] == 1.96
    crop = cv2.imread(start["crop"])
    assert crop is not None and crop[crop.shape[0] // 2, crop.shape[1] // 2].tolist() == (
        pytest.approx([0, 0, 255], abs=40)
    )
    assert summary["events"]["started"] == 1
    records = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    last = records[-1]
    red = next(o for o in last["objects"] if o["label"] == "red")
    assert red["zones"] == ["dock"] and red["dwell"]["dock"] == pytest.approx(
        end["end"] - start["start"], abs=1e-6
    )
    # One 16-bit picture of instance ids per frame: object k's pixels hold k (its area).
    ids = cv2.imread(str(tmp_path / "r.masks" / "000049.png"), cv2.IMREAD_UNCHANGED)
    assert ids is not None and ids.dtype == np.uint16 and ids.shape == (120, 160)
    for k, o in enumerate(last["objects"], start=1):
        assert int((ids == k).sum()) == o["area"]
    assert ids[62, 122] == 1 + [o["label"] for o in last["objects"]].index("red")


def test_the_anchor_decides_which_zone_holds_a_box(tmp_path: Path) -> None:
    make_moments_detector(tmp_path / "det.onnx", size=96)
    make_video(tmp_path / "dock.mp4", frames=2, width=160, height=120, image=visitors, crf=4)
    counts = {}
    for anchor in ("bottom_center", "top_center"):
        proc = worker_cli(
            tmp_path, "run", "--input", "dock.mp4", "--model", "det.onnx", "--output", "none",
            "--results", f"{anchor}.jsonl", "--zone", "top=0,0 1,0 1,0.5 0,0.5",
            "--anchor", anchor, env=clean_env(),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        first = json.loads((tmp_path / f"{anchor}.jsonl").read_text().splitlines()[0])
        counts[anchor] = first["zones"]["top"]["counts"]
    # Red spans y 50..74 across the zone's edge (y 60): its top is inside, its bottom not.
    assert counts == {"bottom_center": {}, "top_center": {"red": 1}}


def test_a_per_object_rule_without_objects_is_refused(tmp_path: Path) -> None:
    make_model(tmp_path / "seg.onnx")
    make_video(tmp_path / "v.mp4", frames=2)
    proc = worker_cli(
        tmp_path, "run", "--input", "v.mp4", "--model", "seg.onnx", "--output", "none",
        "--zone", "door=0,0 1,0 1,1", "--watch", "door:class_1 loiter=3s", env=clean_env(),
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "loiter" in proc.stderr and "finds no objects" in proc.stderr
    assert "Traceback" not in proc.stderr
