"""Live-stream logic checked without a camera: counters, latency, URL redaction, segment
names and what a recorder keeps (numpy images only, no network)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from worker.description import Encode
from worker.live.camera import Camera, redact
from worker.live.counters import LATENCY_BUCKETS_S, Counters, LatencyStats
from worker.live.segments import SegmentRecorder, segment_name
from worker.stages.frames import Frame, Item

URL = "rtsp://admin:hunter2@10.0.0.5:554/Streaming/101?token=abc"


def test_counters_snapshot_sums_drops_by_reason() -> None:
    c = Counters()
    for _ in range(5):
        c.receive()
    for _ in range(2):
        c.process()
    c.drop("late")
    c.drop("queue_full", 2)
    snap = c.snapshot()
    want = {"late": 1, "queue_full": 2}
    assert snap == {
        "received": 5, "processed": 2, "skipped": 0, "dropped": 3, "dropped_by_reason": want
    }  # fmt: skip
    # The snapshot is a copy: changing it does not change the counters.
    snap["dropped_by_reason"]["late"] = 99
    assert c.snapshot()["dropped_by_reason"] == {"late": 1, "queue_full": 2}


def test_latency_cumulative_buckets_end_with_inf() -> None:
    s = LatencyStats()
    for v in (0.01, 0.05, 0.2, 20.0):  # 0.05 sits on a bound: le is inclusive
        s.observe(v)
    buckets, count, total = s.cumulative()
    assert [le for le, _ in buckets] == [repr(b) for b in LATENCY_BUCKETS_S] + ["+Inf"]
    # Cumulative counts; 20 s is above every finite bucket and only in +Inf.
    assert [n for _, n in buckets] == [1, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 4]
    assert count == 4
    assert total == pytest.approx(20.26)


def test_latency_percentiles_in_ms() -> None:
    s = LatencyStats()
    assert s.percentiles_ms() == {}
    for ms in range(1, 101):
        s.observe(ms / 1000)
    p = s.percentiles_ms()
    assert p == {"p50": 50.5, "p90": 90.1, "p99": 99.0, "max": 100.0}


def test_latency_percentiles_use_recent_window() -> None:
    s = LatencyStats(recent=3)
    for v in (5.0, 0.1, 0.2, 0.3):
        s.observe(v)
    p = s.percentiles_ms((50,))
    assert p["p50"] == 200.0  # 5 s has left the window
    assert p["max"] == 5000.0  # max is over all frames


def test_redact_hides_credentials_and_query_values() -> None:
    # No user, password or query value of a camera URL reaches logs, metrics or errors.
    shown = redact(URL)
    assert "hunter2" not in shown
    assert "admin" not in shown
    assert "abc" not in shown
    assert shown.startswith("rtsp://***@10.0.0.5:554/Streaming/101?token=")
    assert redact("rtsp://10.0.0.5/live") == "rtsp://10.0.0.5/live"


def test_redact_query_values_read_as_stars() -> None:
    # Query values are shown as literal *** (as the docstring says).
    assert redact(URL).endswith("?token=***")


def test_redact_hides_bare_query_token() -> None:
    # A query without '=' (rtsp://host/s?SECRET) is a token too and must not be shown.
    assert "hunter2" not in redact("rtsp://10.0.0.5/s?hunter2")


@pytest.mark.parametrize("password", ["pa#ss", "pa/ss", "pa?ss", "p@ss", "pa:ss"])
def test_redact_hides_passwords_with_unescaped_url_characters(password: str) -> None:
    # Camera passwords hold '#', '/', '?', '@' unescaped; none may survive redaction.
    shown = redact(f"rtsp://admin:{password}@10.0.0.5:554/live")
    assert "ss" not in shown and "admin" not in shown
    assert shown == "rtsp://***@10.0.0.5:554/live"


def test_camera_shown_and_repr_hide_password() -> None:
    # A Camera printed or logged by repr never shows its URL's password.
    cam = Camera("door", URL)
    assert cam.shown == redact(URL)
    assert "hunter2" not in repr(cam)
    assert "door" in repr(cam)


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
