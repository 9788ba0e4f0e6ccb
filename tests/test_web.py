"""The web server's promises without a browser: no URL reaches outside its folder (raw
request bytes, as an attacker sends them, not a client's normalised URL), files answer range
requests, credentials stay out, the live view encodes only for viewers and once for all of
them, and the chart series stay small."""

from __future__ import annotations

import http.client
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from worker.description import RunDescription
from worker.live import Camera, Monitor
from worker.live.pages import camera_condition, event_links, monitor_routes, zone_outlines
from worker.models import demo_model_path, load_model
from worker.ops.zones import Zone, ZoneSet
from worker.queue.client import Queue
from worker.queue.dashboard import dashboard_routes
from worker.settings import Settings
from worker.testing import RedisServer, free_port, make_video, wait_for, worker_env
from worker.web import WebServer
from worker.web.mjpeg import Broadcast
from worker.web.series import label_series
from worker.web.server import MAX_BUSY, MAX_CONNECTIONS

SECRET = "hunter2-s3cret"


def raw_get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    """A GET with the path sent byte for byte (``http.client`` does not normalise it)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.putrequest("GET", path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        return r.status, r.read(), r.headers
    finally:
        c.close()


# ----------------------------------------------------------------------------- monitor files


@pytest.fixture
def monitor_site(tmp_path: Path) -> Iterator[tuple[int, Path, bytes]]:
    """The monitor's pages over a recording folder with a real segment and snapshot, and
    things an attacker would like to reach: a secret beside the folder, symlinks out of it."""
    rec = tmp_path / "rec"
    (rec / "yard" / "events").mkdir(parents=True)
    (rec / "gate").mkdir()
    segment = make_video(rec / "yard" / "yard-20261129T070000.000Z.mp4", frames=30)
    (rec / "yard" / "events" / "yard-shot.jpg").write_bytes(b"\xff\xd8jpeg\xff\xd9")
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"SECRET-BYTES")
    (rec / "gate" / "gate-secret.mp4").write_bytes(b"SECRET-BYTES")  # another camera's folder
    os.symlink(secret, rec / "yard" / "evil.mp4")
    os.symlink("/etc/hostname", rec / "yard" / "events" / "evil.jpg")
    os.symlink(secret.parent, rec / "yard" / "up")
    (rec / "yard" / ".hidden.mp4").write_bytes(b"SECRET-BYTES")
    (rec / "yard" / "yard-open.mp4.part").write_bytes(b"SECRET-BYTES")
    model = load_model(demo_model_path("segment"), provider="cpu")
    cams = [Camera("yard", f"rtsp://admin:{SECRET}@10.0.0.9/live?token={SECRET}")]
    door = {"name": "door", "points": [(10, 10), (100, 10), (100, 80)], "units": "px"}
    monitor = Monitor(cams, model, RunDescription().overlay({"record": rec, "zones": [door]}))
    server = WebServer(monitor_routes(monitor), 0, "127.0.0.1")
    try:
        yield server.port, segment, secret.read_bytes()
    finally:
        server.close()


@pytest.mark.parametrize(
    "path",
    [
        "/recordings/yard/../../secret.mp4",
        "/recordings/yard/..%2F..%2Fsecret.mp4",
        "/recordings/yard/%2e%2e%2f%2e%2e%2fsecret.mp4",
        "/recordings/..%2Fsecret.mp4/x",
        "/recordings/%2e%2e/secret.mp4",
        "/recordings/yard/..%5C..%5Csecret.mp4",
        "/recordings/yard/evil.mp4",  # a symlink out of the folder
        "/recordings/yard/up/secret.mp4",  # through a symlinked folder
        "/recordings/yard/up%2Fsecret.mp4",
        "/recordings/yard/.hidden.mp4",
        "/recordings/yard/yard-open.mp4.part",  # not finished: not served
        "/recordings/gate/gate-secret.mp4",  # not one of the monitor's cameras
        "/recordings/yard/%00secret.mp4",
        "/recordings/yard//secret.mp4",
        "/recordings/yard/" + "%2F" * 3 + "etc%2Fhostname",
        "/snapshots/yard/evil.jpg",
        "/snapshots/yard/..%2F..%2F..%2Fsecret.mp4",
        "/snapshots/yard/%2e%2e/evil.jpg",
        "/assets/..%2F..%2F__init__.py",
        "/assets/../server.py",
        "/cameras/..%2Fyard/live.mjpg",
    ],
)
def test_no_url_reaches_outside_the_recording_folder(
    monitor_site: tuple[int, Path, bytes], path: str
) -> None:
    port, _, secret = monitor_site
    status, body, _ = raw_get(port, path)
    assert status == 404, (path, status, body[:80])
    assert secret not in body and b"import" not in body


def test_recordings_and_snapshots_are_served_with_ranges(
    monitor_site: tuple[int, Path, bytes],
) -> None:
    port, segment, _ = monitor_site
    data = segment.read_bytes()
    status, body, headers = raw_get(port, f"/recordings/yard/{segment.name}")
    assert (status, body, headers["Accept-Ranges"]) == (200, data, "bytes")
    assert headers["Content-Type"] == "video/mp4"
    status, body, headers = raw_get(
        port, f"/recordings/yard/{segment.name}", {"Range": "bytes=10-19"}
    )
    assert (status, body) == (206, data[10:20])
    assert headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    status, body, _ = raw_get(port, f"/recordings/yard/{segment.name}", {"Range": "bytes=-5"})
    assert (status, body) == (206, data[-5:])
    status, _, headers = raw_get(
        port, f"/recordings/yard/{segment.name}", {"Range": f"bytes={len(data)}-"}
    )
    assert (status, headers["Content-Range"]) == (416, f"bytes */{len(data)}")
    status, body, _ = raw_get(port, "/snapshots/yard/yard-shot.jpg")
    assert (status, body) == (200, b"\xff\xd8jpeg\xff\xd9")


def test_camera_facts_show_no_credential_and_zones_as_fractions(
    monitor_site: tuple[int, Path, bytes],
) -> None:
    port = monitor_site[0]
    texts = []
    for path in ("/", "/events", "/api/cameras", "/api/events", "/assets/monitor.js"):
        status, body, _ = raw_get(port, path)
        assert status == 200, path
        texts.append(body.decode())
    assert not any(SECRET in t or "admin" in t for t in texts)
    yard = json.loads(texts[2])["cameras"]["yard"]
    assert yard["url"] == "rtsp://***@10.0.0.9/live?token=***"
    assert yard["zones"] == []  # pixel zones need a frame's size first: none came yet
    status, _, _ = raw_get(port, "/api/events?limit=ten")
    assert status == 400


def test_clients_that_never_ask_cannot_take_the_server(
    monitor_site: tuple[int, Path, bytes],
) -> None:
    # Twice as many connections as the server holds, none of them asking anything: each new
    # one pushes out the longest-idle one, so the pages and the probes still answer at once.
    port = monitor_site[0]
    silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(2 * MAX_CONNECTIONS)]
    try:
        for path in ("/healthz", "/events", "/metrics"):
            started = time.monotonic()
            assert raw_get(port, path)[0] in (200, 404), path  # no /metrics on this site
            assert time.monotonic() - started < 2.0, path
        # The first ones were closed by the server, not left to time out in 20 s.
        silent[0].settimeout(5.0)
        assert silent[0].recv(1) == b""
    finally:
        for s in silent:
            s.close()


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.fixture
def big_recording(monitor_site: tuple[int, Path, bytes]) -> tuple[int, str, int]:
    """A 1 GiB recording on the monitor's site (sparse: no disk, and cheap to read)."""
    port, segment, _ = monitor_site
    big = segment.with_name("yard-20261129T080000.000Z.mp4")
    size = 1 << 30
    with big.open("wb") as f:
        f.truncate(size)
    return port, f"/recordings/yard/{big.name}", size


def test_a_download_is_sent_in_chunks_not_read_whole(big_recording: tuple[int, str, int]) -> None:
    # Issue 19 item 3. Before: the whole file (or range) was read into memory per response, so
    # this one download of a 1 GiB recording cost the server 1 GiB. (The server runs in this
    # process: its memory is ours. benchmarks/web_downloads.py: 20 clients at once.)
    port, path, size = big_recording
    before = _rss_bytes()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        got = 0
        while got < 8 << 20:  # 8 MiB of it, then hold the connection a moment
            chunk = s.recv(1 << 20)
            assert chunk, "the server closed the connection"
            got += len(chunk)
        grown = _rss_bytes() - before
    assert grown < 200 << 20, f"the server grew by {grown >> 20} MiB for one download"
    assert size > 4 * (200 << 20)


def test_probes_answer_while_every_request_slot_streams_a_download(
    big_recording: tuple[int, str, int],
) -> None:
    # Issue 19 item 4. Clients that start a large download and stop reading hold a request
    # slot each; the probes must still answer at once (a liveness probe that times out
    # restarts a healthy monitor), and a page beyond the slots is told "busy", not kept waiting.
    port, path, _ = big_recording
    held = []
    try:
        for _ in range(MAX_BUSY):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            held.append(s)
        for s in held:  # each download under way (and stuck: nobody reads)
            s.settimeout(10)
            assert s.recv(12).startswith(b"HTTP/1.")
        for probe in ("/healthz", "/metrics", "/healthz"):
            started = time.monotonic()
            assert raw_get(port, probe)[0] != 503  # (no probe routes on this site: 404)
            assert time.monotonic() - started < 2.0
        started = time.monotonic()
        wait_for(lambda: raw_get(port, "/events")[0] == 503, "a page to be told busy")
        assert time.monotonic() - started < 5.0
    finally:
        for s in held:
            s.close()
    wait_for(lambda: raw_get(port, "/events")[0] == 200, "the pages once the downloads end")


def test_a_client_resetting_a_kept_alive_connection_prints_no_traceback(
    monitor_site: tuple[int, Path, bytes], capfd: pytest.CaptureFixture[str]
) -> None:
    # Issue 19 item 5. A video element abandoning a range download resets its kept-alive
    # connection: the server, reading the next request, gets ECONNRESET. Before: a 16-line
    # ConnectionResetError traceback on stderr each time.
    port, segment, _ = monitor_site
    for abandon_mid_response in (False, True):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(
            f"GET /recordings/yard/{segment.name} HTTP/1.1\r\nHost: x\r\n"
            "Range: bytes=0-99\r\n\r\n".encode()
        )
        if abandon_mid_response:
            s.sendall(f"GET /recordings/yard/{segment.name} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert s.recv(12).startswith(b"HTTP/1.1 206")
        # SO_LINGER 0: close() sends RST, as a browser abandoning the connection does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    wait_for(lambda: raw_get(port, "/events")[0] == 200, "the server to answer again")
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err, err


@pytest.mark.parametrize(
    ("facts", "condition", "reason"),
    [
        ({"state": "live", "last_frame_age_s": 0.1}, "live", ""),
        ({"state": "connecting"}, "connecting", "no frame yet"),
        # Killed: the connection refused, reconnecting. Before: "backoff", amber.
        (
            {"state": "backoff", "detail": "connection refused; reconnecting in 1.0 s",
             "last_frame_age_s": 30.0},
            "offline", "connection lost: connection refused",
        ),
        # Silent: the socket open, nothing comes. Before: "stalled", the same amber.
        (
            {"state": "stalled", "stalled": True, "detail": "no data for 2 s",
             "last_frame_age_s": 2.5},
            "offline", "the camera sends nothing",
        ),
        (
            {"state": "connecting", "stalled": True, "last_frame_age_s": 9.0},
            "offline", "reconnecting",
        ),
        (
            {"state": "failed", "detail": "refused; gave up after 5 attempts"},
            "offline", "stopped trying: refused",
        ),
        ({"state": "stopped"}, "stopped", "stopping"),
    ],
)  # fmt: skip
def test_a_camera_is_live_or_plainly_offline_with_the_reason_and_since_when(
    facts: dict[str, Any], condition: str, reason: str
) -> None:
    # Issue 19 item 13.
    now = 1_700_000_000.0
    said = camera_condition({"state_for_s": 4.0, **facts}, now)
    assert said["condition"] == condition and reason in said["reason"]
    age = facts.get("last_frame_age_s")
    assert said["last_frame_at"] == (None if age is None else now - age)
    if condition == "offline":  # since its last frame, else since it went offline
        assert said["offline_since"] == (now - age if age is not None else now - 4.0)
    else:
        assert said["offline_since"] is None


def test_zone_outlines_and_event_links() -> None:
    zones = ZoneSet(
        [
            Zone("a", ((0.1, 0.2), (0.5, 0.2), (0.5, 0.9))),
            Zone("b", ((64, 0), (128, 0), (128, 48)), "px"),
        ]
    )
    assert zone_outlines(zones, None) == [
        {"name": "a", "points": [[0.1, 0.2], [0.5, 0.2], [0.5, 0.9]]}
    ]
    assert zone_outlines(zones, (48, 128))[1] == {
        "name": "b",
        "points": [[0.5, 0.0], [1.0, 0.0], [1.0, 1.0]],
    }
    rec = Path("/data/rec")
    event = {
        "type": "watch",
        "camera": "yard",
        "snapshot": "/data/rec/yard/events/yard-x.jpg",
        "recording": {"file": "/data/rec/yard/yard-1.mp4", "offset_s": 3.5},
    }
    links = event_links(event, rec)
    assert links["snapshot_url"] == "/snapshots/yard/yard-x.jpg"
    assert links["recording_url"] == "/recordings/yard/yard-1.mp4"
    assert links["recording_offset_s"] == 3.5 and links["recording_ready"] is False
    assert "snapshot" not in links and "recording" not in links  # no disk paths
    # A file that is not where the camera's files go gets no link.
    odd = {**event, "snapshot": "/elsewhere/x.jpg", "recording": {"file": "/tmp/y.mp4"}}
    assert set(event_links(odd, rec)) == {"type", "camera"}


# ----------------------------------------------------------------------------- live view


def test_the_live_view_draws_nothing_while_nobody_watches_and_encodes_once_for_all() -> None:
    view = Broadcast(fps=1000, quality=70)
    drawn = []

    def picture() -> Any:
        drawn.append(1)
        return np.full((48, 64, 3), len(drawn) % 256, np.uint8)

    for _ in range(50):
        view.offer(picture)
    assert drawn == [] and view.encoded == 0  # nobody watches: no draw, no encode

    streams = [view.stream() for _ in range(5)]
    got: list[list[bytes]] = [[] for _ in streams]
    done = threading.Event()

    def read(i: int) -> None:
        for part in streams[i]:
            got[i].append(part)
            if done.is_set():
                return

    threads = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(5)]
    for t in threads:
        t.start()
    wait_for(lambda: view.viewers == 5, "five viewers")
    for _ in range(5):
        view.offer(picture)
        wait_for(lambda: all(len(g) >= len(drawn) for g in got), "every viewer to get it")
        time.sleep(0.002)  # the next frame must be a period (1 ms) later to be kept
    done.set()
    view.offer(picture)  # wakes the readers so they see ``done``
    for t in threads:
        t.join(5)
    assert view.kept == len(drawn) == 6
    # Five viewers, one encode per kept frame (the last may have gone unencoded).
    assert view.encoded in (len(drawn) - 1, len(drawn))
    part = got[0][0]
    assert part.startswith(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: ")
    assert part.rstrip(b"\r\n").endswith(b"\xff\xd9")  # a whole JPEG


def test_the_live_view_keeps_at_most_ui_fps_frames() -> None:
    view = Broadcast(fps=5)
    stream = view.stream()
    reader = threading.Thread(target=lambda: next(stream), daemon=True)
    reader.start()  # one viewer
    wait_for(lambda: view.viewers == 1, "a viewer")
    frame = np.zeros((8, 8, 3), np.uint8)
    start = time.monotonic()
    offered = 0
    while time.monotonic() - start < 1.0:
        view.offer(lambda: frame)
        offered += 1
        time.sleep(0.001)
    assert offered > 100 and 4 <= view.kept <= 6, view.kept
    view.close()
    reader.join(5)


# ----------------------------------------------------------------------------- chart series


def test_label_series_are_bucket_means_of_at_most_points() -> None:
    lines = [
        json.dumps(
            {"frame": i, "time": i / 10, "coverage": {"a": 1.0 if i < 500 else 0.0, "b": 0.25}}
        )
        for i in range(1000)
    ]
    s = label_series(lines, len(lines), points=100)
    assert s["kind"] == "coverage" and s["frames"] == 1000
    assert len(s["t"]) == 100 and len(s["series"]["a"]) == 100
    assert s["series"]["a"][:50] == [1.0] * 50 and s["series"]["a"][50:] == [0.0] * 50
    assert set(s["series"]["b"]) == {0.25}
    assert s["t"][0] == pytest.approx(0.45) and s["t"][-1] == pytest.approx(99.45)
    top = [json.dumps({"time": i, "top": [{"label": "cat", "score": 0.9}]}) for i in range(3)]
    top.append("not json")
    c = label_series(top, len(top))
    assert c["kind"] == "score" and c["series"] == {"cat": [0.9, 0.9, 0.9]}
    # A detector's lines: objects per label.
    boxes = [json.dumps({"time": i, "objects": [], "counts": {"car": i}}) for i in range(3)]
    d = label_series(boxes, len(boxes))
    assert d["kind"] == "count" and d["series"] == {"car": [0.0, 1.0, 2.0]}


# ----------------------------------------------------------------------------- dashboard


@pytest.fixture
def dashboard_site(tmp_path: Path) -> Iterator[tuple[int, Queue, Path]]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    env = worker_env(tmp_path, server.url)
    settings = Settings(redis_url=server.url, output_root=tmp_path / "out")
    out = tmp_path / "out"
    (out / "job1").mkdir(parents=True)
    make_video(out / "job1" / "a.mp4", frames=12)
    (out / "job1" / "a.jsonl").write_text(
        "".join(json.dumps({"time": i / 25, "coverage": {"x": 0.5}}) + "\n" for i in range(12))
    )
    (tmp_path / "outside.mp4").write_bytes(b"SECRET-BYTES")
    os.symlink(tmp_path / "outside.mp4", out / "job1" / "evil.mp4")
    q = Queue(settings)
    web = WebServer(dashboard_routes(q, settings.output_root), 0, "127.0.0.1")
    assert env  # the same Redis a worker process would use
    try:
        yield web.port, q, out
    finally:
        web.close()
        server.kill()


def _job(q: Queue, job_id: str, result: dict[str, Any], **fields: str) -> None:
    spec = {"input": fields.pop("input", "a.mp4")}
    mapping: dict[str, str] = {
        "id": job_id,
        "state": "done",
        "spec": json.dumps(spec),
        "result": json.dumps(result),
        **fields,
    }
    q.client.hset(q.keys.job(job_id), mapping=mapping)  # type: ignore[arg-type]
    q.client.zadd(q.keys.state("done"), {job_id: time.time()})


def test_dashboard_serves_only_a_job_s_own_outputs(
    dashboard_site: tuple[int, Queue, Path],
) -> None:
    port, q, out = dashboard_site
    _job(q, "good", {"output": "job1/a.mp4", "results": "job1/a.jsonl"})
    _job(q, "up", {"output": "../outside.mp4", "results": "../outside.mp4"})
    _job(q, "abs", {"output": str(out.parent / "outside.mp4"), "results": "/etc/hostname"})
    _job(q, "link", {"output": "job1/evil.mp4", "results": "job1/evil.mp4"})
    _job(
        q,
        "creds",
        {"output": "job1/a.mp4", "input": f"https://u:{SECRET}@h/v.mp4"},
        input=f"https://u:{SECRET}@h/v.mp4",
    )
    status, body, headers = raw_get(port, "/jobs/good/video", {"Range": "bytes=0-99"})
    assert (status, len(body), headers["Content-Type"]) == (206, 100, "video/mp4")
    status, body, _ = raw_get(port, "/jobs/good/series")
    assert status == 200 and json.loads(body)["series"] == {"x": [0.5] * 12}
    for job in ("up", "abs", "link"):
        for what in ("video", "series"):
            status, body, _ = raw_get(port, f"/jobs/{job}/{what}")
            assert status == 404 and b"SECRET" not in body, (job, what)
    for path in ("/jobs/..%2Fgood/video", "/jobs/good/..%2F..%2Fvideo", "/jobs/missing/video"):
        assert raw_get(port, path)[0] == 404, path
    status, body, _ = raw_get(port, "/api/jobs")
    jobs = {j["id"]: j for j in json.loads(body)["jobs"]}
    assert SECRET not in body.decode()
    assert jobs["creds"]["input"] == "https://***@h/v.mp4"
    assert jobs["good"]["video_url"] == "/jobs/good/video"
    status, body, _ = raw_get(port, "/api/jobs?state=nope")
    assert status == 400 and b"expected one of" in body


def test_dashboard_says_when_redis_is_away(dashboard_site: tuple[int, Queue, Path]) -> None:
    port, q, _ = dashboard_site
    q.client.connection_pool.disconnect()
    q.client.shutdown(nosave=True)
    status, body, _ = raw_get(port, "/api/queue")
    assert status == 503 and "unreachable" in json.loads(body)["error"]
    assert raw_get(port, "/")[0] == 200  # the page itself still loads, and says so


def test_the_dashboard_command_loads_nothing_heavy(tmp_path: Path) -> None:
    port = free_port()
    heavy = ("onnxruntime", "cv2", "av", "numpy")
    code = (
        "import signal, sys; from worker.cli import main; rc = main(sys.argv[1:]); "
        f"print('HEAVY', [m for m in {heavy!r} if m in sys.modules], file=sys.stderr)"
    )
    env = worker_env(tmp_path, "redis://127.0.0.1:1/0")  # nothing there: the page says so
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "dashboard", "--port", str(port)],
        cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: raw_get_or_none(port, "/healthz"), "the dashboard")
        assert raw_get(port, "/api/queue")[0] == 503
        proc.send_signal(2)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "HEAVY []" in err and "unreachable" in err and "Traceback" not in err


def raw_get_or_none(port: int, path: str) -> int | None:
    try:
        return raw_get(port, path)[0]
    except OSError:
        return None
