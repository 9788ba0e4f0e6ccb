"""Zones, events with snapshots, results-only runs, frame-rate control and masks out, on real
encoded video and real ONNX models (issue 13).

Rules: a zone's coverage is what counting the full-size mask inside the polygon gives, for
every resize mode; a classifier's zone is its crop classified, in the same model calls as the
frames; ``--output none`` writes no video but everything else; frames skipped by ``--every``
and ``--fps`` are still in the video, drawn with the latest mask, but get no JSON line; mask
pictures and RLE read back to the mask that was drawn; events go to JSON lines, a webhook
(retried) and carry a snapshot; the summary picture is written.
"""

from __future__ import annotations

import http.server
import itertools
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from factory import described, make_model
from readers import read_bits_png, read_indexed_png, rle_decode
from worker.models import demo_model_path, load_model
from worker.ops.postprocess import MaskMap
from worker.ops.preprocess import geometry
from worker.ops.zones import Zone, ZoneSet
from worker.sinks import Webhook
from worker.stages import Inferencer
from worker.stages.infer import infer_frames
from worker.stages.runner import run_file
from worker.stages.sample import robot_scene, write_sample
from worker.testing import Rig, clean_env, decode, make_video, walkers, worker_cli

DOOR = "door=0.35,0.2 0.65,0.2 0.65,0.9 0.35,0.9"


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return worker_cli(cwd, *args, timeout=300)


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def street(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_video(tmp_path_factory.mktemp("v") / "street.mp4", frames=75, width=320,
                      height=180, image=walkers())  # fmt: skip


# ----------------------------------------------------------------------------- zone maths


@pytest.mark.parametrize("resize", ["stretch", "letterbox", "center_crop"])
def test_zone_coverage_equals_counting_the_full_size_mask(resize: str) -> None:
    rng = np.random.default_rng(3)
    frame_hw, small_hw, model_hw = (180, 320), (60, 60), (120, 120)
    g = geometry(frame_hw, model_hw, resize, 140).then_scale(0.5, 0.5)  # type: ignore[arg-type]
    where = MaskMap.build(g, small_hw, frame_hw)
    small = rng.integers(0, 4, small_hw).astype(np.uint8)
    zone = Zone("z", ((0.1, 0.1), (0.7, 0.2), (0.6, 0.95), (0.05, 0.8)))
    fz = ZoneSet([zone]).at(frame_hw)
    got = fz.coverage(where, ["a", "b", "c", "d"], small)["z"]
    full = where.restore(small)
    inside = np.zeros(frame_hw, np.uint8)
    cv2.fillPoly(inside, [fz.polygons[0].reshape(-1, 1, 2)], 1)
    inside_b = inside.astype(bool)
    for i, label in enumerate("abcd"):
        want = float(((full == i) & inside_b).sum()) / inside_b.sum()
        assert got.get(label, 0.0) == pytest.approx(want, abs=1e-12)


def test_pixel_zones_are_checked_against_the_frame(tmp_path: Path) -> None:
    write_sample(tmp_path / "s.mp4", seconds=0.2)
    proc = cli(tmp_path, "run", "--input", "s.mp4", "--zone", "big=10,10 900,10 900,300 px")
    assert proc.returncode == 2, proc.stderr
    assert (
        "zone 'big'" in proc.stderr and "640x360" in proc.stderr and "Traceback" not in proc.stderr
    )
    assert not list(tmp_path.glob("*.segment.*"))  # nothing published


def test_a_classifiers_zones_are_crops_classified_with_the_frames() -> None:
    model = load_model(demo_model_path("classify"), provider="cpu")
    infer = Inferencer(model, top_k=1, batch=4)
    image = robot_scene(0, 640, 360)
    sky = Zone("sky", ((0, 0), (1, 0), (1, 0.3), (0, 0.3)))
    ground = Zone("ground", ((0, 0.65), (1, 0.65), (1, 0.95), (0, 0.95)))
    zones = ZoneSet([sky, ground]).at((360, 640))
    (answer,) = infer_frames(infer, [image], [zones])
    assert answer.zones is not None
    tops = {name: model.label(a.top[0][0]) for name, a in answer.zones.items()}
    assert tops["sky"] == "blue" and tops["ground"] != "blue"
    for name, crop in zip(("sky", "ground"), zones.crops(image), strict=True):
        alone = infer([np.ascontiguousarray(crop)])[0]
        assert alone.top[0][0] == answer.zones[name].top[0][0]


# ----------------------------------------------------------------------------- file runs


def test_results_only_every_and_fps(tmp_path: Path) -> None:
    write_sample(tmp_path / "s.mp4", seconds=2)  # 50 frames
    none = cli(tmp_path, "run", "--input", "s.mp4", "--output", "none", "--zone", DOOR)
    assert none.returncode == 0, none.stderr
    summary = json.loads(none.stdout)
    assert summary["output"] is None and not (tmp_path / "s.segment.mp4").exists()
    records = lines(tmp_path / "s.segment.jsonl")
    assert len(records) == 50 and "door" in records[0]["zones"]

    every = cli(tmp_path, "run", "--input", "s.mp4", "--every", "5", "--output", "e.mp4",
                "--results", "e.jsonl")  # fmt: skip
    assert every.returncode == 0, every.stderr
    s = json.loads(every.stdout)
    assert (s["frames"], s["processed"]) == (50, 10)
    assert [r["frame"] for r in lines(tmp_path / "e.jsonl")] == list(range(0, 50, 5))
    out, raw = decode(tmp_path / "e.mp4"), decode(tmp_path / "s.mp4")
    assert len(out) == 50  # every frame is in the video ...
    # ... the skipped ones drawn with the latest mask, not left bare.
    assert np.abs(out[3][1].astype(int) - raw[3][1].astype(int)).mean() > 5

    fps = cli(tmp_path, "run", "--input", "s.mp4", "--fps", "5", "--output", "none",
              "--results", "f.jsonl")  # fmt: skip
    assert fps.returncode == 0, fps.stderr
    times = [r["time"] for r in lines(tmp_path / "f.jsonl")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 10 and all(g == pytest.approx(0.2, abs=0.021) for g in gaps)


def test_masks_read_back_to_the_mask_that_was_drawn(tmp_path: Path) -> None:
    video = tmp_path / "s.mp4"
    write_sample(video, seconds=0.4, width=320, height=180)
    model = load_model(demo_model_path("segment"), provider="cpu")
    run_file(video, model, described(masks=str(tmp_path / "masks")), output=None,
             results=tmp_path / "r.jsonl")  # fmt: skip
    run_file(video, model, described(masks="rle"), output=None, results=tmp_path / "rle.jsonl")
    (_, first), *_ = decode(video)
    answer = Inferencer(model)([first])[0]
    assert answer.class_map is not None
    g = geometry((180, 320), model.input_hw, model.resize, model.crop_from)
    where = MaskMap.build(
        g.then_scale(answer.class_map.shape[1] / model.input_hw[1],
                     answer.class_map.shape[0] / model.input_hw[0]),
        answer.class_map.shape, (180, 320),
    )  # fmt: skip
    expected = where.restore(answer.class_map)
    png, palette = read_indexed_png((tmp_path / "masks" / "000000.png").read_bytes())
    assert np.array_equal(png, expected)
    assert palette[1].tolist() == model.colors[1].tolist()  # the card's colours
    rle = lines(tmp_path / "rle.jsonl")[0]["rle"]
    for label, obj in rle.items():
        assert np.array_equal(rle_decode(obj), expected == model.labels.index(label))
    assert len(list((tmp_path / "masks").iterdir())) == 10


def test_multi_label_masks_round_trip(tmp_path: Path) -> None:
    video = make_video(tmp_path / "v.mp4", frames=3)
    model = load_model(make_model(tmp_path / "ml.onnx", output="logits",
                                  card={"multi_label": True}), provider="cpu")  # fmt: skip
    run_file(video, model, described(masks=str(tmp_path / "m")), output=None,
             results=tmp_path / "r.jsonl")  # fmt: skip
    bits = read_bits_png((tmp_path / "m" / "000000.png").read_bytes())
    answer = Inferencer(model)([decode(video)[0][1]])[0]
    assert answer.bits is not None
    assert np.array_equal(np.unique(bits), np.unique(answer.bits))


def test_events_snapshots_and_the_picture(tmp_path: Path, street: Path) -> None:
    proc = cli(tmp_path, "run", "--input", str(street), "--output", "out.mp4", "--results",
               "out.jsonl", "--zone", DOOR, "--watch", "door:robot>0.02@2 end=0.4s")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    events = lines(tmp_path / "out.events.jsonl")
    ends = [e for e in events if e["event"] == "end"]
    assert ends and summary["events"]["ended"] == len(ends)
    for e in ends:
        assert e["zone"] == "door" and e["recording"] == {"file": "out.mp4",
                                                          "offset_s": e["start"]}  # fmt: skip
        shot = cv2.imread(e["snapshot"])
        assert shot is not None and shot.shape == (180, 320, 3)
        assert e["start"] <= e["peak_time"] <= e["end"]
    picture = cv2.imread(str(tmp_path / "out.png"))
    assert picture is not None and picture.shape[1] >= 800
    # Again: the snapshots of the first run are ours to replace; a stranger's file is not.
    rerun = ("run", "--input", str(street), "--output", "out.mp4", "--results", "out.jsonl",
             "--zone", DOOR, "--watch", "door:robot>0.02")  # fmt: skip
    assert cli(tmp_path, *rerun).returncode == 0
    (tmp_path / "out.events" / "notes.txt").write_text("mine")
    again = cli(tmp_path, *rerun)
    assert again.returncode == 2 and "notes.txt" in again.stderr


# ----------------------------------------------------------------------------- webhook


class _Hook(http.server.BaseHTTPRequestHandler):
    bodies: list[dict[str, Any]]
    fail_first: int
    refuse: int = 0  # answer every event with this code (a 4xx: the receiver refuses them)
    authorization: str | None = None  # if set, the Authorization header asked for

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        hook = type(self)
        if hook.authorization and self.headers.get("Authorization") != hook.authorization:
            self.send_response(401)
            self.end_headers()
            return
        if hook.refuse or hook.fail_first > 0:
            hook.fail_first -= 1
            self.send_response(hook.refuse or 503)
            self.end_headers()
            return
        type(self).bodies.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _server(fail_first: int, **hook: Any) -> tuple[http.server.ThreadingHTTPServer, type[_Hook]]:
    handler = type("Hook", (_Hook,), {"bodies": [], "fail_first": fail_first, **hook})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler


def test_events_go_to_a_webhook_retried_through_errors(tmp_path: Path, street: Path) -> None:
    server, hook = _server(fail_first=2)  # two 503s: retried, nothing lost
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        proc = cli(tmp_path, "run", "--input", str(street), "--output", "none", "--results",
                   "r.jsonl", "--zone", DOOR, "--watch", "door:robot>0.02@2 end=0.4s",
                   "--webhook", url)  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stderr
    assert hook.bodies == lines(tmp_path / "r.events.jsonl")  # the same events, in order
    assert "webhook unavailable" in proc.stderr and "is back" in proc.stderr


def test_a_webhook_url_s_user_and_password_are_sent_as_basic_authentication(
    tmp_path: Path, street: Path
) -> None:
    # Issue 19 item 2. Before: 'user:s3cr3t@127.0.0.1' was looked up as a host name, every
    # event lost; and the summary's webhook line showed the password.
    server, hook = _server(fail_first=0, authorization="Basic dXNlcjpzM2NyM3Q=")  # user:s3cr3t
    try:
        port = server.server_address[1]
        proc = cli(tmp_path, "run", "--input", str(street), "--output", "none", "--results",
                   "r.jsonl", "--zone", DOOR, "--watch", "door:robot>0.02@2 end=0.4s",
                   "--webhook", f"http://user:s3cr3t@127.0.0.1:{port}/hook")  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stderr
    assert hook.bodies and hook.bodies == lines(tmp_path / "r.events.jsonl")
    assert json.loads(proc.stdout)["events"]["lost"] == 0
    assert "s3cr3t" not in proc.stdout + proc.stderr


def test_the_summary_counts_the_events_the_webhook_lost(tmp_path: Path, street: Path) -> None:
    # Issue 19 item 11. Before: the summary had no count of lost events (the README said so).
    server, _ = _server(fail_first=0, refuse=400)
    try:
        proc = cli(tmp_path, "run", "--input", str(street), "--output", "none", "--results",
                   "r.jsonl", "--zone", DOOR, "--watch", "door:robot>0.02@2 end=0.4s",
                   "--webhook", f"http://127.0.0.1:{server.server_address[1]}/hook")  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stderr
    written = len(lines(tmp_path / "r.events.jsonl"))
    summary = json.loads(proc.stdout)
    assert written > 0 and summary["events"]["lost"] == written
    assert summary["events_sink"]["lost"] == written


def test_the_webhook_buffer_is_bounded_and_losses_are_counted() -> None:
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here
    sink = Webhook(f"http://127.0.0.1:{port}/", buffer=3, retry_base_s=0.05, timeout_s=0.5)
    for i in range(10):
        sink.write({"n": i})
    sink.close(drain_s=0.5)
    said = sink.describe()
    assert said["written"] == 0 and said["lost"] == 10  # 7 over the buffer, 3 never sent


# ----------------------------------------------------------------------------- cameras


def test_a_camera_with_zones_rules_and_a_reduced_rate(tmp_path: Path) -> None:
    from worker.testing import RtspServer, worker_cli

    with RtspServer(fps=15) as cam:
        proc = worker_cli(
            tmp_path, "monitor", "--input", f"gate={cam.url}", "--zone",
            "left=0,0 0.5,0 0.5,1 0,1", "--watch", "left:background>0.3@2 end=0.5s",
            "--fps", "5", "--record", "rec", "--events", "events.jsonl", "--duration", "4",
            "--metrics-port", "0",
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(next(x for x in proc.stdout.splitlines() if x.startswith("{")))
    c = summary["cameras"]["gate"]
    # Skipped on purpose is not dropped: the counts still add up, and the skipped frames
    # are in the recordings (drawn with the latest mask).
    assert c["skipped"] > c["processed"] > 0
    assert c["received"] == c["processed"] + c["skipped"] + c["dropped"]
    segments = sorted((tmp_path / "rec" / "gate").glob("*.mp4"))
    assert sum(len(decode(p)) for p in segments) == c["processed"] + c["skipped"]
    events = lines(tmp_path / "events.jsonl")
    watch = [e for e in events if e["type"] == "watch"]
    start, end = watch[0], watch[-1]
    assert (start["event"], end["event"], start["zone"], start["camera"]) == (
        "start", "end", "left", "gate")  # fmt: skip
    shot = tmp_path / end["snapshot"]  # relative to where the monitor ran, as --record was
    assert shot.parent == tmp_path / "rec" / "gate" / "events"
    assert cv2.imread(str(shot)) is not None
    assert tmp_path / end["recording"]["file"] in segments and end["recording"]["offset_s"] >= 0


# ----------------------------------------------------------------------------- examples, jobs


def test_the_zones_pipeline_example_runs_with_its_webhook(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "pipelines" / "zones.toml"
    write_sample(tmp_path / "robot.mp4", seconds=8)
    server, hook = _server(fail_first=0)
    try:
        to = {"EVENTS_WEBHOOK": f"http://127.0.0.1:{server.server_address[1]}/events"}
        proc = worker_cli(
            tmp_path, "run", "--pipeline", str(example), env=clean_env(to), timeout=300
        )
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stderr
    events = lines(tmp_path / "robot.zones.events.jsonl")
    assert {e["zone"] for e in events} == {"left", "right"} and hook.bodies == events
    assert all(Path(tmp_path / e["snapshot"]).is_file() for e in events if e["event"] == "end")
    assert (tmp_path / "robot.zones.png").is_file()
    first = lines(tmp_path / "robot.zones.jsonl")[0]
    assert set(first["zones"]) == {"left", "right"}


def test_a_queued_job_carries_its_zones_and_rules(rig: Rig) -> None:
    (rig.root / "job.toml").write_text(
        'input = "a.mp4"\nevery = 2\nmasks = "rle"\n'
        '[[zones]]\nname = "top"\npoints = [[0, 0], [1, 0], [1, 0.5], [0, 0.5]]\n'
        '[[watch]]\nzone = "top"\nlabel = "ground"\nabove = 0.0\n'
    )
    submitted = rig.cli("submit", "--pipeline", "job.toml")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    w = rig.worker("--burst")
    assert w.wait(60) == 0, w.text()
    q = rig.queue()
    st = q.status(job_id)
    assert st["state"] == "done", st
    records = lines(rig.out / job_id / "a.jsonl")
    assert [r["frame"] for r in records] == list(range(0, 12, 2))  # every 2nd frame
    assert "top" in records[0]["zones"] and "rle" in records[0]
    events = lines(rig.out / job_id / "a.events.jsonl")
    assert events and events[0]["zone"] == "top"
    assert sorted(p.name for p in (rig.out / job_id).iterdir()) == [
        "a.events", "a.events.jsonl", "a.jsonl", "a.mp4"]  # fmt: skip
