"""``worker monitor`` as a user runs it: a process with real cameras, stopped by SIGTERM;
bad input refused in one line; credentials never shown."""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from worker.testing import RtspServer, WorkerProc, decode, free_port, wait_for, worker_cli

pytestmark = pytest.mark.timeout(180)

SECRET = "hunter2-s3cret"


def env(**settings: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
    e.update({f"WORKER_{k.upper()}": v for k, v in settings.items()})
    return e


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
    r = worker_cli(tmp_path, env(**settings), "monitor", *args)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], r.stderr
    assert SECRET not in r.stderr


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
