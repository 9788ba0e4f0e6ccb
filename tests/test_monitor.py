"""``worker.live.monitor`` against real RTSP servers (GStreamer, killed and restarted by the
tests), real ONNX models and real Redis: outages, reconnects, overload, segments, events."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from factory import described, make_model, make_yolo_detector
from worker.constants import Keys
from worker.live.camera import Camera
from worker.live.metrics import MonitorMetrics
from worker.live.monitor import Monitor
from worker.models import Model, demo_model_path, load_model
from worker.sinks import RedisEvents
from worker.testing import RedisServer, RtspServer, SilentServer, decode, make_slow_model, wait_for

pytestmark = pytest.mark.timeout(180)

#: Paths of the newest segments that /healthz and the summary list (with a count of all).
LAST_SEGMENTS = 5

#: Quick reconnects: the tests wait for them.
FAST = {"open_timeout_s": 3.0, "read_timeout_s": 2.0, "reconnect_base_s": 0.2,
        "reconnect_max_s": 1.0}  # fmt: skip
READ_TIMEOUT_S = FAST["read_timeout_s"]


@pytest.fixture(scope="module")
def demo() -> Model:
    return load_model(demo_model_path("segment"), provider="cpu")


@pytest.fixture
def monitors() -> Iterator[list[Monitor]]:
    """Monitors a test started; stopped at the end even when the test failed."""
    started: list[Monitor] = []
    yield started
    for m in started:
        if not m.stopping:
            with contextlib.suppress(Exception):
                m.stop()


def start(monitors: list[Monitor], *args: Any, **kwargs: Any) -> Monitor:
    m = Monitor(*args, **kwargs)
    monitors.append(m)
    m.start()
    return m


def stat(m: Monitor, camera: str, key: str) -> Any:
    return m.stats()[camera][key]


def recordings(folder: Path) -> list[Path]:
    """The camera folder's recordings: everything but ``events/`` (the events' snapshots,
    each a JPEG)."""
    shots = folder / "events"
    if shots.exists():
        assert all(p.suffix == ".jpg" for p in shots.iterdir())
    return sorted(p for p in folder.iterdir() if p != shots)


def add_up(summary: dict[str, Any]) -> None:
    for name, c in summary["cameras"].items():
        assert c["received"] == c["processed"] + c["skipped"] + c["dropped"], (name, c)


def test_outage_of_one_camera_leaves_the_other_running_and_it_reconnects(
    demo: Model, monitors: list[Monitor], tmp_path: Path
) -> None:
    seen: list[dict[str, Any]] = []
    with RtspServer() as a, RtspServer() as b:
        m = start(
            monitors,
            [Camera("a", a.url), Camera("b", b.url)],
            demo,
            described(**FAST, record=tmp_path / "rec", segment_seconds=60),
            on_event=seen.append,
        )
        wait_for(lambda: stat(m, "a", "processed") >= 10, "camera a frames")
        wait_for(lambda: stat(m, "b", "processed") >= 10, "camera b frames")

        a.kill()
        wait_for(lambda: stat(m, "a", "state") in ("backoff", "connecting"), "a to notice")
        # b during a's outage, across several of a's failed reconnects (what could hold b up):
        # frames keep coming, none of its gaps near a read timeout.
        b_before = stat(m, "b", "received")
        a_backoffs = len([e for e in seen if e["camera"] == "a" and e["state"] == "backoff"])
        worst_gap = 0.0

        def b_went_on_through_a_reconnecting() -> bool:
            nonlocal worst_gap
            worst_gap = max(worst_gap, stat(m, "b", "last_frame_age_s") or 0.0)
            tries = [e for e in seen if e["camera"] == "a" and e["state"] == "backoff"]
            return len(tries) >= a_backoffs + 2 and stat(m, "b", "received") >= b_before + 20

        wait_for(b_went_on_through_a_reconnecting, "b's frames while a reconnects twice")
        assert stat(m, "b", "state") == "live"
        assert worst_gap < 1.0, f"camera b stalled {worst_gap:.2f} s while a was down"
        # a's last segment was finished while it was down, not left open.
        wait_for(lambda: stat(m, "a", "segments_written") == 1, "a's segment to be closed")

        # The camera comes back at another resolution (a setting changed while it was down).
        a_before = stat(m, "a", "received")
        with RtspServer(a.port, size="480x360"):
            back = time.monotonic()
            wait_for(lambda: stat(m, "a", "received") > a_before + 5, "a to resume")
            reconnect_s = time.monotonic() - back
            print(f"\nreconnect after the server came back: {reconnect_s:.2f} s (cap 1 s)")
            assert stat(m, "a", "connections") == 2
            summary = m.stop()
    add_up(summary)
    a_segments = summary["cameras"]["a"]["last_segments"]
    assert summary["cameras"]["a"]["segments_written"] == len(a_segments) == 2  # per connection
    first, second = (decode(Path(p)) for p in a_segments)
    assert first[0][1].shape[:2] == (240, 320) and second[0][1].shape[:2] == (360, 480)
    assert len(first) + len(second) == summary["cameras"]["a"]["processed"]


def test_a_camera_that_never_answers_does_not_hold_up_start(
    demo: Model, monitors: list[Monitor]
) -> None:
    with RtspServer() as live, SilentServer() as silent:
        m = start(
            monitors,
            [Camera("silent", silent.url), Camera("live", live.url)],
            demo,
            described(open_timeout_s=6.0, read_timeout_s=2.0),
        )
        began = time.monotonic()
        wait_for(lambda: stat(m, "live", "processed") >= 5, "the live camera", timeout=30)
        assert stat(m, "silent", "state") == "connecting"
        assert time.monotonic() - began < 6.0  # the open timeout
        wait_for(lambda: stat(m, "silent", "state") == "backoff", "the open timeout", timeout=30)
        assert "cannot open" in stat(m, "silent", "detail")
        summary = m.stop()
    add_up(summary)


def test_overload_drops_oldest_frames_counts_them_and_keeps_latency_bounded(
    monitors: list[Monitor], tmp_path: Path
) -> None:
    model = load_model(make_slow_model(tmp_path / "slow.onnx"), provider="cpu")
    started = time.perf_counter()
    for _ in range(3):
        model.engine.run_all(np.zeros((1, 3, 32, 32), np.float32))
    per_frame = (time.perf_counter() - started) / 3
    max_latency = 0.3
    with RtspServer(fps=25) as cam:
        m = start(
            monitors,
            [Camera("cam", cam.url)],
            model,
            described(**FAST, max_latency_ms=max_latency * 1000),
        )
        wait_for(lambda: stat(m, "cam", "processed") >= 20, "20 frames through the slow model")
        summary = m.stop()
    c = summary["cameras"]["cam"]
    print(
        f"\noverload: model {per_frame * 1000:.0f} ms/frame vs 40 ms between frames; "
        f"received {c['received']}, processed {c['processed']}, dropped {c['dropped']} "
        f"{c['dropped_by_reason']}; latency {c['latency_ms']}"
    )
    add_up(summary)
    assert c["dropped"] > 0
    assert c["processed"] >= 20
    # Without dropping, latency would grow with every frame; with it, it stays near one
    # queue wait plus one model run.
    bound_ms = (max_latency + 3 * per_frame + 0.5) * 1000
    assert c["latency_ms"]["max"] < bound_ms, (c["latency_ms"], bound_ms)


def test_segments_split_without_losing_frames_and_events_reach_redis(
    demo: Model, monitors: list[Monitor], tmp_path: Path
) -> None:
    redis_server = RedisServer(tmp_path / "redis")
    redis_server.start()
    sink = RedisEvents(redis_server.url, "mon")
    try:
        with RtspServer() as cam:
            m = start(
                monitors,
                [Camera("door", cam.url)],
                demo,
                # Queues deep enough and no latency limit: nothing may be dropped, so every
                # received frame must be in exactly one of the files.
                described(
                    **FAST,
                    record=tmp_path / "rec",
                    segment_seconds=1.0,
                    live_queue=64,
                    writer_queue=64,
                    max_latency_ms=1e9,
                    watch=["background>0@2"],
                ),
                on_event=sink.write,
            )
            wait_for(lambda: stat(m, "door", "segments_written") >= 2, "two segments")
            summary = m.stop()
        sink.close()
        stream: list[tuple[str, dict[str, str]]] = redis_server.client().xrange(  # type: ignore[assignment]
            Keys("mon").monitor_events
        )
    finally:
        redis_server.kill()
    add_up(summary)
    c = summary["cameras"]["door"]
    files = recordings(tmp_path / "rec" / "door")
    assert c["segments_written"] == len(files)
    assert c["last_segments"] == [str(f) for f in files[-LAST_SEGMENTS:]]
    assert not [f for f in files if f.suffix != ".mp4"]  # no .part left behind
    frames = [decode(f) for f in files]
    assert all(len(f) > 0 for f in frames)
    assert c["dropped"] == 0
    assert sum(len(f) for f in frames) == c["processed"] == c["received"]
    assert summary["inference"]["frames"] == c["processed"]
    events = [json.loads(fields["event"]) for _id, fields in stream]
    states = [e["state"] for e in events if e["type"] == "camera"]
    assert states[:2] == ["connecting", "live"] and states[-1] == "stopped"
    watch = [e for e in events if e["type"] == "watch"]
    assert watch and watch[0]["event"] == "start" and watch[0]["camera"] == "door"


def test_classifier_scores_raise_watch_events(monitors: list[Monitor], tmp_path: Path) -> None:
    # The classify path through the monitor: top-k answers become score events.
    path = make_model(tmp_path / "cls.onnx", output="classify_softmax", classes=3)
    model = load_model(path, provider="cpu")
    seen: list[dict[str, Any]] = []
    with RtspServer() as cam:
        m = start(
            monitors,
            [Camera("c", cam.url)],
            model,
            described(**FAST, watch=[f"{model.labels[0]}>0@1"]),
            on_event=seen.append,
        )
        wait_for(lambda: stat(m, "c", "processed") >= 5, "frames")
        summary = m.stop()
    add_up(summary)
    assert any(e["type"] == "watch" and e["event"] == "start" for e in seen)


def test_a_camera_whose_recording_fails_stops_alone(
    demo: Model, monitors: list[Monitor], tmp_path: Path
) -> None:
    # One camera's broken output must not stop the others: a file where its folder should be.
    (tmp_path / "rec").mkdir()
    (tmp_path / "rec" / "bad").write_text("not a folder")
    with RtspServer() as bad, RtspServer() as good:
        m = start(
            monitors,
            [Camera("bad", bad.url), Camera("good", good.url)],
            demo,
            described(**FAST, record=tmp_path / "rec", segment_seconds=60),
        )
        wait_for(lambda: stat(m, "bad", "state") == "failed", "the bad camera to fail")
        assert "recording" in stat(m, "bad", "detail")
        before = stat(m, "good", "processed")
        wait_for(lambda: stat(m, "good", "processed") >= before + 15, "the good camera to go on")
        assert not m.failed.is_set()
        summary = m.stop()
    add_up(summary)
    bad_stats = summary["cameras"]["bad"]
    assert bad_stats["state"] == "failed"
    assert bad_stats["dropped_by_reason"].get("camera_failed", 0) >= 1
    assert summary["cameras"]["good"]["segments_written"] == 1


def test_a_zone_that_does_not_fit_one_camera_stops_that_camera_alone(
    monitors: list[Monitor], tmp_path: Path
) -> None:
    # Issue 19 item 7. A zone in pixels that fits the 320x240 camera but not the 160x120 one:
    # its error came up in the inference stage all cameras share, so every camera stopped.
    model = load_model(make_model(tmp_path / "c.onnx", output="classify_softmax"), provider="cpu")
    zone = {"name": "gate", "points": [[200, 0], [300, 0], [300, 100]], "units": "px"}
    with RtspServer(size="320x240") as big, RtspServer(size="160x120") as small:
        m = start(
            monitors,
            [Camera("big", big.url), Camera("small", small.url)],
            model,
            described(**FAST, zones=[zone]),
        )
        wait_for(lambda: stat(m, "small", "state") == "failed", "the small camera to fail")
        assert "zone 'gate'" in stat(m, "small", "detail")
        before = stat(m, "big", "processed")
        wait_for(lambda: stat(m, "big", "processed") >= before + 15, "the big camera to go on")
        assert not m.failed.is_set()
        summary = m.stop()
    add_up(summary)
    assert summary["cameras"]["big"]["state"] != "failed"


def test_a_frozen_camera_is_stalled_within_the_read_timeout_and_counts_no_stale_frame(
    demo: Model, monitors: list[Monitor], caplog: pytest.LogCaptureFixture
) -> None:
    # A camera that stays connected but sends nothing (its server SIGSTOPped) is `stalled`
    # within its read timeout, with no frame counted after the freeze, and reconnecting to it
    # while it stays frozen fails saying that it timed out. (FFmpeg returned the frame its
    # parser held when the first timeout fired and waited a second one; a socket timeout
    # equal to the read timeout raced ours and called the silence "Invalid data found".)
    caplog.set_level(logging.INFO, logger="worker.live")
    seen: list[dict[str, Any]] = []
    at_stall: dict[str, Any] = {}
    monitor: list[Monitor] = []

    def on_event(e: dict[str, Any]) -> None:
        if e.get("state") == "stalled" and not at_stall:
            # Taken here, in the camera's thread as it reports the stall: no poll delay.
            at_stall.update(monitor[0].stats()["c"], at=time.monotonic())
        seen.append(e)

    with RtspServer() as cam:
        m = start(monitors, [Camera("c", cam.url)], demo, described(**FAST),
                  on_event=on_event)  # fmt: skip
        monitor.append(m)
        wait_for(lambda: stat(m, "c", "processed") >= 5, "frames")
        assert cam.proc is not None
        frozen = time.monotonic()
        cam.proc.send_signal(signal.SIGSTOP)  # connected, but no more data: a hung camera
        try:
            wait_for(lambda: at_stall, "a stall", timeout=4 * READ_TIMEOUT_S)
            stalled_after = at_stall["at"] - frozen
            last_frame_after = at_stall["at"] - at_stall["last_frame_age_s"] - frozen
            # While it stays frozen: reconnecting fails, and says why.
            wait_for(
                lambda: (
                    stat(m, "c", "state") == "backoff" and "cannot open" in stat(m, "c", "detail")
                ),
                "a reconnect to the frozen camera to fail",
                timeout=30,
            )
            frozen_detail = stat(m, "c", "detail")
            received_while_frozen = stat(m, "c", "received")
        finally:
            cam.proc.send_signal(signal.SIGCONT)
        wait_for(lambda: stat(m, "c", "connections") == 2, "a reconnect")
        before = stat(m, "c", "received")
        wait_for(lambda: stat(m, "c", "received") > before + 5, "frames again")
        summary = m.stop()
    add_up(summary)
    print(
        f"\nstall reported {stalled_after:.2f} s after the freeze (read timeout "
        f"{READ_TIMEOUT_S:g} s); last frame {last_frame_after:+.3f} s from the freeze"
    )
    # FFmpeg checks the interrupt between 100 ms socket polls: the timeout is seen up to
    # 0.1 s late. Beyond that, the 10 % the issue allows.
    assert stalled_after <= READ_TIMEOUT_S * 1.1 + 0.1
    # The last frame counted came at the freeze (one on its way then, 67 ms apart at 15 fps,
    # plus decoding), not a read timeout later.
    assert last_frame_after < 0.25
    assert received_while_frozen == at_stall["received"]
    stall = next(e for e in seen if e.get("state") == "stalled")
    assert stall["detail"] == f"no data for {READ_TIMEOUT_S:g} s"
    assert "timeout" in frozen_detail and "Invalid data" not in frozen_detail, frozen_detail
    logged = [r.getMessage() for r in caplog.records if "backoff (cannot open" in r.getMessage()]
    assert logged and all("open timeout" in line for line in logged), logged


def test_a_detector_s_objects_and_crossings_reach_the_stats_and_metrics(
    monitors: list[Monitor], tmp_path: Path
) -> None:
    # The test camera's white ball: the factory's cell detector sees it as red and blue
    # cells. Per camera: the objects of the newest frame and the crossings of a line, in
    # /api/cameras's facts (the camera card) and in /metrics.
    model = load_model(make_yolo_detector(tmp_path / "det.onnx"), provider="cpu")
    with RtspServer() as cam:
        m = start(
            monitors,
            [Camera("c", cam.url)],
            model,
            described(**FAST, lines=[{"name": "mid", "points": [[0.5, 0], [0.5, 1]]}]),
        )
        wait_for(lambda: stat(m, "c", "objects").get("red"), "the ball's boxes")
        assert set(stat(m, "c", "lines")) == {"mid"}
        text = MonitorMetrics(m).exposition().decode()
        summary = m.stop()
    assert 'video_worker_camera_objects{camera="c",label="red"}' in text
    assert summary["cameras"]["c"]["objects"].keys() <= {"red", "blue"}


def test_health_and_summary_keep_a_count_and_the_last_segments_not_every_path(
    demo: Model, monitors: list[Monitor], tmp_path: Path
) -> None:
    # Every segment path ever written used to be listed in /healthz and the summary: one
    # entry more per segment, forever (~525,000 a year per camera at 60 s). Many short
    # segments: the health answer holds a bounded number of paths while the count grows.
    folder = tmp_path / "rec" / "door"

    def on_disk() -> int:
        return len(list(folder.glob("*.mp4")))

    with RtspServer() as cam:
        m = start(
            monitors,
            [Camera("door", cam.url)],
            demo,
            described(**FAST, record=tmp_path / "rec", segment_seconds=0.2),
        )
        health = MonitorMetrics(m).health
        # Segments close one after another: once one more is on disk, the count includes these.
        wait_for(lambda: on_disk() > 3 * LAST_SEGMENTS, f"{3 * LAST_SEGMENTS} segments")
        _ok, answer = health()
        summary = m.stop()
    files = sorted(folder.glob("*.mp4"))
    assert json.dumps(answer).count(".mp4") <= LAST_SEGMENTS
    assert json.dumps(summary).count(".mp4") == LAST_SEGMENTS
    c = summary["cameras"]["door"]
    assert answer["cameras"]["door"]["segments_written"] >= 3 * LAST_SEGMENTS
    assert c["segments_written"] == len(files) > 3 * LAST_SEGMENTS
    assert c["last_segments"] == [str(f) for f in files[-LAST_SEGMENTS:]]
    add_up(summary)
