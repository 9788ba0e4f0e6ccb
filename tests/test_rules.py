"""Watch rules and their events, without video: numbers in, transitions and records out.

Rules: the old ``LABEL>THRESHOLD@N`` keeps its meaning (start after N frames above, end on
the first frame not above); zones scope a rule; hysteresis debounces a flickering value:
start after S seconds above, end only after M seconds below, drop events shorter than
``min``, ``loiter`` before an event starts; an event's peak and its frame are tracked and the
peak frame's picture is what the snapshot shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from worker.ops.rules import Rule, Tracker, parse_rule, value_of
from worker.stages.events import EventLog


def seg(i: int, zone: str | None = None, **coverage: float) -> dict[str, Any]:
    if zone is not None:
        return {"frame": i, "coverage": {}, "zones": {zone: coverage}}
    return {"frame": i, "coverage": coverage}


def top(i: int, *scores: tuple[str, float]) -> dict[str, Any]:
    return {"frame": i, "top": [{"label": s, "index": k, "score": v} for k, (s, v) in
                                enumerate(scores)]}  # fmt: skip


def run(rule: str, values: list[float], dt: float = 1.0) -> list[tuple[str, int]]:
    tracker = Tracker([parse_rule(rule)])
    out: list[tuple[str, int]] = []
    for i, v in enumerate(values):
        trs = tracker.update(seg(i, person=v), i * dt)
        out += [(t.kind, i) for t in trs if t.kind != "peak"]
    out += [(t.kind, len(values)) for t in tracker.finish(len(values) * dt) if t.kind != "peak"]
    return out


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("person>0.2", Rule("person", 0.2, 1)),
        ("person>0.2@5", Rule("person", 0.2, 5)),
        ("  person > 0.2 @ 5 ", Rule("person", 0.2, 5)),
        ("traffic light>.5", Rule("traffic light", 0.5, 1)),
        ("car>1", Rule("car", 1.0, 1)),
        ("door:person>0.2@3", Rule("person", 0.2, 3, zone="door")),
        ("person>=0.2", Rule("person", 0.2, inclusive=True)),
        (
            "door:person>0.2 end=2s min=1 loiter=10s start=0.5",
            Rule("person", 0.2, 1, zone="door", start_s=0.5, end_s=2, min_s=1, loiter_s=10),
        ),
    ],
)
def test_parse_rule_valid(text: str, rule: Rule) -> None:
    assert parse_rule(text) == rule


@pytest.mark.parametrize("text", ["person", "person>", "person=>0.2", "person<0.2", "p>0.2@"])
def test_parse_rule_malformed_names_text_and_form(text: str) -> None:
    with pytest.raises(ValueError, match="expected \\[ZONE:\\]LABEL>THRESHOLD") as e:
        parse_rule(text)
    assert f"'{text}'" in str(e.value)


def test_parse_rule_checks_ranges_labels_zones_options() -> None:
    with pytest.raises(ValueError, match=r"'person>1\.5'.*outside 0\.\.1"):
        parse_rule("person>1.5")
    with pytest.raises(ValueError, match=r"'person>0\.2@0'.*at least 1"):
        parse_rule("person>0.2@0")
    with pytest.raises(ValueError, match=r"'dog>0\.2'.*'dog'.*person, car"):
        parse_rule("dog>0.2", ["person", "car"])
    with pytest.raises(ValueError, match=r"no zone 'gate'.*zones: door"):
        parse_rule("gate:person>0.2", ["person"], ["door"])
    with pytest.raises(ValueError, match=r"option 'after=2s' not understood"):
        parse_rule("person>0.2 after=2s")
    assert parse_rule("door:car>0.2", ["person", "car"], ["door"]).zone == "door"


# ----------------------------------------------------------------------------- the old rule


def test_start_after_n_frames_once_then_end_on_the_first_frame_below() -> None:
    assert run("person>0.5@3", [0.6, 0.6, 0.6, 0.7, 0.9, 0.2, 0.1]) == [("start", 2), ("end", 5)]


def test_a_short_streak_or_a_value_at_the_threshold_starts_nothing() -> None:
    assert run("person>0.5@3", [0.6, 0.6, 0.1, 0.6, 0.6, 0.5, 0.6]) == []


def test_a_restart_needs_n_frames_again() -> None:
    got = run("person>0.5@2", [0.9, 0.9, 0.0, 0.9, 0.9])
    assert got == [("start", 1), ("end", 2), ("start", 4), ("end", 5)]  # the last at the end


def test_classifier_scores_and_a_label_out_of_the_top_k() -> None:
    tracker = Tracker([parse_rule("cat>0.3")])
    assert [t.kind for t in tracker.update(top(0, ("dog", 0.5), ("cat", 0.4)), 0)] == [
        "peak", "start"]  # fmt: skip
    assert [t.kind for t in tracker.update(top(1, ("cat", 0.35)), 1)] == []
    ended = tracker.update(top(2, ("dog", 0.9)), 2)  # cat left the top-k: below threshold
    assert [(t.kind, t.value, t.end, t.peak, t.peak_frame) for t in ended] == [
        ("end", 0.0, 2, 0.4, 0)]  # fmt: skip


def test_rules_are_independent_and_zones_scope_them() -> None:
    rules = [parse_rule("door:person>0.5"), parse_rule("person>0.5")]
    tracker = Tracker(rules)
    record = {"frame": 0, "coverage": {"person": 0.1}, "zones": {"door": {"person": 0.9}}}
    starts = [t.rule.zone for t in tracker.update(record, 0) if t.kind == "start"]
    assert starts == ["door"]
    assert value_of(rules[0], record) == 0.9 and value_of(rules[1], record) == 0.1
    zone_top = {"frame": 0, "top": [], "zones": {"spot": {"top": [{"label": "car", "score": 0.8}]}}}
    assert value_of(parse_rule("spot:car>0.5"), zone_top) == 0.8


# ----------------------------------------------------------------------------- hysteresis


FLICKER = [0.9, 0.1, 0.9, 0.9, 0.1, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]


def test_without_hysteresis_a_flickering_mask_is_a_flurry_of_events() -> None:
    starts = [k for k, _ in run("person>0.5", FLICKER) if k == "start"]
    assert len(starts) == 3


def test_end_waits_out_the_inertia() -> None:
    # Below for less than end=3s does not end it: one event, ended 3 s after the last high.
    got = run("person>0.5 end=3s", FLICKER)
    assert got == [("start", 0), ("end", 9)]


def test_start_waits_for_seconds_above_and_loiter() -> None:
    values = [0.9] * 6 + [0.0]
    assert run("person>0.5 start=2s", values)[0] == ("start", 2)
    assert run("person>0.5 loiter=4s", values)[0] == ("start", 4)
    assert run("person>0.5@5 start=1s", values)[0] == ("start", 4)  # frames and seconds


def test_events_shorter_than_min_are_dropped() -> None:
    tracker = Tracker([parse_rule("person>0.5 min=2s")])
    for i, v in enumerate([0.9, 0.9, 0.0, 0.9, 0.9, 0.9, 0.9, 0.0]):
        kinds = [t.kind for t in tracker.update(seg(i, person=v), float(i))]
        if i == 5:  # 2 s after its start at frame 3: announced now, with the true start
            assert "start" in kinds
    assert tracker.dropped == 1


def test_peak_is_tracked() -> None:
    tracker = Tracker([parse_rule("person>0.5")])
    trs = []
    for i, v in enumerate([0.6, 0.8, 0.7, 0.95, 0.6, 0.1]):
        trs += tracker.update(seg(i, person=v), float(i))
    end = next(t for t in trs if t.kind == "end")
    assert (end.peak, end.peak_frame, end.peak_time, end.start, end.end) == (0.95, 3, 3.0, 0, 5)
    assert [t.frame for t in trs if t.kind == "peak"] == [0, 1, 3]


# ----------------------------------------------------------------------------- event records


def test_event_records_and_the_snapshot_of_the_peak(tmp_path: Path) -> None:
    events: list[dict[str, Any]] = []
    log = EventLog(
        "input", "clip.mp4", [parse_rule("door:person>0.5")], events.append,
        snapshots=tmp_path / "shots", locate=lambda t: {"file": "out.mp4", "offset_s": t},
    )  # fmt: skip
    asked = []

    def picture_of(i: int) -> Any:
        def picture() -> Any:
            asked.append(i)
            return np.full((24, 32, 3), i * 40, np.uint8)

        return picture

    for i, v in enumerate([0.2, 0.6, 0.9, 0.7, 0.1]):
        log.update(seg(i, "door", person=v), i * 0.5, picture_of(i))
    assert asked == [1, 2]  # pictures taken at new peaks only, never for the other frames
    start, end = events
    assert (start["event"], start["zone"], start["label"], start["start"]) == (
        "start", "door", "person", 0.5)  # fmt: skip
    assert start["recording"] == {"file": "out.mp4", "offset_s": 0.5}
    assert (end["end"], end["peak"], end["peak_frame"], end["duration_s"]) == (2.0, 0.9, 2, 1.5)
    shot = cv2.imread(end["snapshot"])
    assert shot is not None and shot.shape == (24, 32, 3) and abs(int(shot.mean()) - 80) <= 2
    assert log.started == log.ended == 1 and not list((tmp_path / "shots").glob(".*"))
