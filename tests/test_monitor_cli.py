"""``worker monitor`` as a user runs it (``python -m worker monitor``) with real RTSP servers:
stopped by SIGTERM with every file finished and no credential shown; bad input refused in one
line; how it ends (cameras giving up, every camera failing, the inference stage failing at run
time, ``--duration``); and the ``writer_behind`` drops when drawing and encoding fall
behind."""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from factory import make_model
from worker.testing import (
    RtspServer,
    WorkerProc,
    clean_env,
    decode,
    free_port,
    one_error,
    wait_for,
    worker_cli,
)

pytestmark = pytest.mark.timeout(180)

SECRET = "hunter2-s3cret"


def env(**settings: str) -> dict[str, str]:
    """A clean environment with ``settings``; the pages on this machine only (no login)."""
    return clean_env(**{"metrics_host": "127.0.0.1", **settings})


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except OSError:
        return 0, ""


def health(port: int) -> dict[str, Any] | None:
    code, body = get(port, "/healthz")
    return json.loads(body) if code == 200 else None


def test_sigterm_finishes_every_file_and_no_credential_leaks(tmp_path: Path) -> None:
    port = free_port()
    dead = free_port()
    with RtspServer() as cam:
        # Credentials only in the settings (as a user should keep them), including a camera
        # that refuses connections, so its errors are logged over and over.
        cameras = {
            "yard": cam.url_with("admin", SECRET),
            "gate": f"rtsp://op:{SECRET}@127.0.0.1:{dead}/s",
        }
        w = WorkerProc(
            tmp_path,
            env(cameras=json.dumps(cameras)),
            "monitor", "--record", "rec", "--events", "events.jsonl",
            "--watch", "background>0@3", "--metrics-port", str(port),
            name="monitor",
        )  # fmt: skip
        try:
            try:
                state = wait_for(
                    lambda: (h := health(port)) and h["cameras"]["yard"]["processed"] >= 20 and h,
                    "the yard camera to be processed",
                )
            except AssertionError as e:  # say what the monitor said, and its health
                raise AssertionError(f"{e}\nhealth: {health(port)}\nlog:\n{w.text()}") from e
            _, metrics = get(port, "/metrics")
            w.signal(signal.SIGTERM)
            assert w.wait() == 0, w.text()
        finally:
            w.close()
    out = w.text()
    summary = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert summary["stopped_by"] == "SIGTERM"
    yard = summary["cameras"]["yard"]
    assert yard["received"] == yard["processed"] + yard["dropped"]
    assert state["cameras"]["gate"]["state"] in ("backoff", "connecting")
    assert 'video_worker_camera_frames_processed_total{camera="yard"}' in metrics
    # Only complete files: every recording renamed into place and playable, nothing partial.
    files = sorted(p for p in (tmp_path / "rec").rglob("*") if p.is_file())
    shots = [p for p in files if p.parent.name == "events"]  # the events' snapshots
    assert all(p.suffix == ".jpg" for p in shots)
    files = [p for p in files if p not in shots]
    assert files and all(p.suffix == ".mp4" and not p.name.startswith(".") for p in files)
    assert sum(len(decode(p)) for p in files) == yard["processed"]
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert {e["camera"] for e in events} == {"yard", "gate"}
    # The password appears nowhere a user or a scraper can see.
    for where, text in (
        ("logs and summary", out),
        ("/metrics", metrics),
        ("/healthz", json.dumps(state)),
        ("events", (tmp_path / "events.jsonl").read_text()),
    ):
        assert SECRET not in text, f"credential leaked into {where}"
    assert "op:***" not in out and "***@127.0.0.1" in out  # shown redacted, not dropped


@pytest.mark.parametrize(
    ("args", "settings", "expected"),
    [
        (["--input", "clip.mp4"], {}, "expected an rtsp:// or rtsps:// URL"),
        ([], {}, "no camera"),
        (["--input", f"rtsp://u:{SECRET}@x/s", "--watch", "cat"], {}, "LABEL>THRESHOLD"),
        (["--input", "rtsp://x/s", "--watch", "zebra>0.5"], {}, "no label 'zebra'"),
        (["--input", "a=rtsp://x/s", "--input", "a=rtsp://y/s"], {}, "used twice"),
        ([], {"cameras": '{"bad name": "rtsp://x/s"}'}, "camera name 'bad name'"),
        ([], {"cameras": '{"..": "rtsp://x/s"}'}, "camera name '..'"),
        (["--input", "rtsp://x/s", "--segment-seconds", "0"], {}, "--segment-seconds"),
        (["--input", f"ftp://u:{SECRET}@x/s"], {}, "ftp://***@x/s"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], settings: dict[str, str], expected: str
) -> None:
    r = worker_cli(tmp_path, "monitor", *args, env=env(**settings))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], r.stderr
    assert SECRET not in r.stderr


def test_pages_open_to_the_network_without_a_login_do_not_start(tmp_path: Path) -> None:
    # Before: the pages listened on every interface with no login at all. Now the command
    # refuses, before it connects to anything, and says how to set one.
    r = worker_cli(
        tmp_path, "monitor", "--input", "rtsp://127.0.0.1:9/cam", "--metrics-port",
        str(free_port()), env=clean_env(),
    )  # fmt: skip
    line = one_error(r, "WORKER_UI_PASSWORD_HASH", "worker password", "127.0.0.1",
                     "WORKER_UI=false")  # fmt: skip
    assert "every interface" in line


def test_cameras_pipeline_example_runs_as_it_is(tmp_path: Path) -> None:
    # pipelines/cameras.toml: two cameras (ports and the password from the environment, as
    # its comment says), recordings, events and a watch rule, with no other flag than where
    # to serve metrics.
    example = Path(__file__).resolve().parents[1] / "pipelines" / "cameras.toml"
    port = free_port()
    with RtspServer() as front, RtspServer() as back:
        e = env()
        e.update(FRONT_PORT=str(front.port), BACK_PORT=str(back.port), BACK_PASSWORD=SECRET)
        w = WorkerProc(
            tmp_path, e, "monitor", "--pipeline", str(example), "--metrics-port", str(port),
            name="monitor",
        )  # fmt: skip
        try:
            wait_for(
                lambda: (
                    (h := health(port))
                    and all(h["cameras"][c]["processed"] >= 10 for c in ("front", "back"))
                ),
                "both cameras of the example to be processed",
            )
            w.signal(signal.SIGTERM)
            assert w.wait() == 0, w.text()
        finally:
            w.close()
    out = w.text()
    summary = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert set(summary["cameras"]) == {"front", "back"}
    for name in ("front", "back"):
        assert list((tmp_path / "recordings" / name).glob(f"{name}-*.mp4"))
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert {e["camera"] for e in events} == {"front", "back"}
    assert SECRET not in out


#: Quick reconnects: the tests wait for them.
FAST = {"reconnect_base_s": "0.1", "reconnect_max_s": "0.5", "open_timeout_s": "3"}


def summary_or_none(text: str) -> dict[str, Any] | None:
    """The JSON summary the command prints on stdout, if it printed one."""
    line = next((x for x in text.splitlines() if x.startswith("{")), None)
    return None if line is None else dict(json.loads(line))


def summary_in(text: str) -> dict[str, Any]:
    summary = summary_or_none(text)
    assert summary is not None, f"no summary printed:\n{text}"
    return summary


def error_line(text: str) -> str:
    """The one ``error: ...`` line the command ends with."""
    lines = [x for x in text.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, text
    return lines[0]


def add_up(summary: dict[str, Any]) -> None:
    for name, c in summary["cameras"].items():
        assert c["received"] == c["processed"] + c["skipped"] + c["dropped"], (name, c)


def test_cameras_that_give_up_reconnecting_exit_1_naming_them(tmp_path: Path) -> None:
    # --reconnect-attempts N: a camera whose N connects in a row failed is `failed`; when
    # every camera has, the monitor stops with exit 1 and says which and why.
    dead = [free_port(), free_port()]
    r = worker_cli(
        tmp_path,
        "monitor", "--input", f"door=rtsp://127.0.0.1:{dead[0]}/s",
        "--input", f"yard=rtsp://127.0.0.1:{dead[1]}/s",
        "--reconnect-attempts", "3", "--metrics-port", "0", env=env(**FAST),
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    summary = summary_in(r.stdout)
    assert summary["stopped_by"] == "every camera gave up"
    for name in ("door", "yard"):
        c = summary["cameras"][name]
        assert c["state"] == "failed", c
        assert "gave up after 3 attempts" in c["detail"], c
        assert c["connections"] == 0
    error = error_line(r.stderr)
    assert "every camera gave up" in error
    assert "door: cannot open" in error and "yard: cannot open" in error, error


def test_every_camera_failing_exits_1(tmp_path: Path) -> None:
    # Each camera's recording folder is a file: each camera's writer fails, each camera goes
    # to `failed` (its own failure), and with none left the monitor exits 1.
    (tmp_path / "rec").mkdir()
    for name in ("a", "b"):
        (tmp_path / "rec" / name).write_text("not a folder")
    with RtspServer() as a, RtspServer() as b:
        r = worker_cli(
            tmp_path,
            "monitor", "--input", f"a={a.url}", "--input", f"b={b.url}",
            "--record", "rec", "--metrics-port", "0", env=env(**FAST),
        )  # fmt: skip
    assert r.returncode == 1, r.stderr
    summary = summary_in(r.stdout)
    assert summary["stopped_by"] == "every camera gave up"
    for name in ("a", "b"):
        c = summary["cameras"][name]
        assert c["state"] == "failed" and c["detail"].startswith("writer: "), c
        assert "recording" in c["detail"], c
        assert c["dropped_by_reason"].get("camera_failed", 0) >= 1, c
    add_up(summary)
    error = error_line(r.stderr)
    assert "a: writer: " in error and "b: writer: " in error, error


def make_bright_trap_model(path: Path) -> Path:
    """A 3-class segmenter (a 1x1 convolution) that ONNX Runtime cannot run on a bright frame:
    a side branch reshapes 3 values to ``[1, -1]``, or to ``[2, -1]`` (impossible) when the
    mean normalised pixel is above 1 (a white frame is about 2.2; black -2.1; blank 0). The
    failure comes from the model itself, at run time, on the frames a camera sends."""
    w = numpy_helper.from_array(
        np.random.default_rng(0).normal(0, 1, (3, 3, 1, 1)).astype(np.float32), "W"
    )
    consts = [
        w,
        numpy_helper.from_array(np.ones(3, np.float32), "three"),
        numpy_helper.from_array(np.array(1.0, np.float32), "limit"),
        numpy_helper.from_array(np.array([1], np.int64), "one"),
        numpy_helper.from_array(np.array([-1], np.int64), "rest"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("Conv", ["image", "W"], ["logits"], kernel_shape=[1, 1]),
        helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=0),
        helper.make_node("Greater", ["mean", "limit"], ["bright"]),
        helper.make_node("Cast", ["bright"], ["bright64"], to=TensorProto.INT64),
        helper.make_node("Add", ["bright64", "one"], ["rows"]),  # [1] or [2]
        helper.make_node("Concat", ["rows", "rest"], ["shape"], axis=0),
        helper.make_node("Reshape", ["three", "shape"], ["reshaped"]),
        helper.make_node("ReduceSum", ["reshaped"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Add", ["logits", "nothing"], ["out"]),
    ]
    graph = helper.make_graph(
        nodes,
        "bright_trap",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 32, 32])],
        initializer=consts,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model, full_check=True)
    path.write_bytes(model.SerializeToString())
    return path


def test_inference_failing_at_run_time_exits_1_after_closing_every_segment(
    tmp_path: Path,
) -> None:
    # The shared inference stage fails on a frame a camera sends (a white one, for this
    # model): the monitor stops, names the stage, exits 1, and every camera's recording is
    # finished: complete, renamed into place, playable, holding every frame processed.
    model = make_bright_trap_model(tmp_path / "trap.onnx")
    port, late = free_port(), free_port()
    with RtspServer() as a, RtspServer() as b:
        w = WorkerProc(
            tmp_path, env(**FAST),
            "monitor", "--input", f"a={a.url}", "--input", f"b={b.url}",
            "--input", f"late=rtsp://127.0.0.1:{late}/cam",
            "--model", str(model), "--record", "rec", "--metrics-port", str(port),
            name="monitor",
        )  # fmt: skip

        def both_processed() -> dict[str, Any] | None:
            h = health(port)
            if h and all(h["cameras"][c]["processed"] >= 10 for c in ("a", "b")):
                return h
            return None

        try:
            seen = wait_for(both_processed, "cameras a and b to be processed")
            # The late camera comes up showing white: its first frame fails the model.
            with RtspServer(late, pattern="white"):
                code = w.wait()
        finally:
            w.close()
    out = w.text()
    assert code == 1, out
    error = error_line(out)
    print(f"\n{error}")
    assert "stage 'inference' failed" in error and "Reshape" in error, error
    assert summary_or_none(out) is None  # a failed run has no summary: its counts are not whole
    for name in ("a", "b"):
        left = sorted(p for p in (tmp_path / "rec" / name).iterdir() if p.name != "events")
        assert left and all(p.suffix == ".mp4" and not p.name.startswith(".") for p in left), left
        frames = [decode(p) for p in left]
        assert all(frames), f"an empty recording of {name}"
        assert sum(len(f) for f in frames) >= seen["cameras"][name]["processed"]
    # The late camera's frame never got past the model: nothing of it was recorded.
    late_dir = tmp_path / "rec" / "late"
    assert not late_dir.exists() or not list(late_dir.iterdir())


def test_duration_stops_with_exit_0_and_a_summary(tmp_path: Path) -> None:
    with RtspServer() as cam:
        r = worker_cli(
            tmp_path,
            "monitor", "--input", f"door={cam.url}", "--duration", "3", "--metrics-port", "0",
            env=env(**FAST),
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    summary = summary_in(r.stdout)
    assert summary["stopped_by"] == "duration reached"
    assert 3.0 <= summary["seconds"] < 3.0 + 10.0
    door = summary["cameras"]["door"]
    assert door["state"] == "stopped" and door["processed"] > 0, door
    add_up(summary)
    assert "error" not in r.stderr


@pytest.mark.long
def test_writer_falling_behind_drops_oldest_frames_as_writer_behind(tmp_path: Path) -> None:
    # Inference is quick (a 1x1 convolution on 32x32) but recording is not: 1280x720 at 25 fps
    # through x264's slowest preset encodes far slower than frames come. The writer's queue
    # drops its oldest frames, counted as writer_behind, and the counts still add up.
    model = make_model(tmp_path / "tiny.onnx")
    port = free_port()
    with RtspServer(size="1280x720", fps=25) as cam:
        w = WorkerProc(
            tmp_path, env(**FAST),
            "monitor", "--input", f"door={cam.url}", "--model", str(model),
            "--record", "rec", "--segment-seconds", "2", "--preset", "placebo",
            "--metrics-port", str(port),
            name="monitor",
        )  # fmt: skip
        try:
            wait_for(
                lambda: (
                    (h := health(port))
                    and h["cameras"]["door"]["dropped_by_reason"].get("writer_behind", 0) >= 5
                ),
                "frames dropped because the writer is behind",
            )
            w.signal(signal.SIGTERM)
            code = w.wait()
        finally:
            w.close()
    out = w.text()
    assert code == 0, out
    summary = summary_in(out)
    door = summary["cameras"]["door"]
    print(f"\nwriter behind: received {door['received']}, processed {door['processed']}, "
          f"dropped {door['dropped_by_reason']}")  # fmt: skip
    assert door["dropped_by_reason"]["writer_behind"] >= 5, door
    add_up(summary)
    files = sorted(p for p in (tmp_path / "rec" / "door").iterdir() if p.name != "events")
    assert sum(len(decode(p)) for p in files) == door["processed"]
