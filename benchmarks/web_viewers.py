"""Does watching slow the cameras? ``worker monitor``'s pipeline with nobody watching, side by
side with 20 MJPEG viewers of its live view plus two hostile clients (one that reads the
stream's first bytes and then never reads again, one that connects and never sends a
request), alternating phases in one run.

    python benchmarks/web_viewers.py [--seconds 15] [--rounds 2] [--viewers 20] [--json]

One real RTSP camera (``worker/testing/rtsp_server.py``: GStreamer, x264 at its default 2 Mbit/s;
the ``snow`` pattern, so every decoded frame is textured like camera footage and its JPEG is
as costly as a real one) through the demo segmenter in this process, with the pages served as
``worker monitor`` serves them. The viewers are a separate process (as browsers are), each
reading the whole stream as fast as it comes. Per phase: the camera's processed fps, its
receive-to-annotated latency p50/p99 over the phase's frames, drops, this process's CPU, and
what the viewers received (frames per second each). Ratios are with / without viewers.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from worker.description import RunDescription
from worker.live import Camera, Monitor
from worker.live.pages import monitor_routes
from worker.models import demo_model_path, load_model
from worker.testing import RtspServer, wait_for
from worker.web import WebServer

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- viewer process


def _viewer(port: int, counts: list[int], i: int, stop: threading.Event) -> None:
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /cameras/cam/live.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(1.0)
    buf = b""
    while not stop.is_set():
        try:
            data = s.recv(1 << 16)
        except TimeoutError:
            continue
        if not data:
            break
        buf += data
        counts[i] += buf.count(b"--frame\r\n")
        buf = buf[-16:]
    s.close()


def viewers_child(port: int, n: int) -> None:
    """Runs in its own process: n readers, a stuck reader and a silent connection; prints the
    frames each reader got when stdin closes."""
    stop = threading.Event()
    counts = [0] * n
    threads = [
        threading.Thread(target=_viewer, args=(port, counts, i, stop), daemon=True)
        for i in range(n)
    ]
    for t in threads:
        t.start()
    stuck = socket.create_connection(("127.0.0.1", port))  # reads a little, then never again
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b"GET /cameras/cam/live.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
    stuck.recv(100)
    silent = socket.create_connection(("127.0.0.1", port))  # never sends a request
    print("READY", flush=True)
    sys.stdin.read()
    stop.set()
    for t in threads:
        t.join(3)
    print(json.dumps(counts), flush=True)
    stuck.close()
    silent.close()


# ----------------------------------------------------------------------------- the run


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def phase(m: Monitor, port: int, seconds: float, viewers: int) -> dict[str, Any]:
    cam = m.cams["cam"]
    child = None
    if viewers:
        child = subprocess.Popen(
            [sys.executable, __file__, "--viewers-child", str(port), str(viewers)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "READY"
        wait_for(lambda: cam.view.viewers >= viewers, "the viewers to connect")
    before = cam.counters.snapshot()
    lat_before = cam.latency.count
    encoded = cam.view.encoded
    cpu, start = _cpu(), time.monotonic()
    time.sleep(seconds)  # the measured stretch itself
    wall = time.monotonic() - start
    cpu = _cpu() - cpu
    after = cam.counters.snapshot()
    n = cam.latency.count - lat_before
    recent = cam.latency.recent()[-n:] if n else []
    got: list[int] = []
    if child is not None:
        assert child.stdin is not None
        out, _ = child.communicate("", timeout=30)
        got = json.loads(out.splitlines()[-1])
    lat = np.array(recent) * 1000 if recent else np.zeros(1)
    return {
        "viewers": viewers,
        "fps": round((after["processed"] - before["processed"]) / wall, 2),
        "received_fps": round((after["received"] - before["received"]) / wall, 2),
        "dropped": after["dropped"] - before["dropped"],
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "cpu_cores": round(cpu / wall, 2),
        "jpeg_encodes_per_s": round((cam.view.encoded - encoded) / wall, 2),
        "viewer_fps": round(statistics.mean(got) / wall, 2) if got else None,
        "viewer_fps_min": round(min(got) / wall, 2) if got else None,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=15.0, help="per phase")
    p.add_argument("--rounds", type=int, default=2, help="pairs of phases, alternating")
    p.add_argument("--viewers", type=int, default=20)
    p.add_argument("--size", default="1280x720")
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--json", action="store_true")
    p.add_argument("--viewers-child", nargs=2, type=int, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.viewers_child:
        viewers_child(*a.viewers_child)
        return 0
    model = load_model(demo_model_path("segment"), provider="cpu")
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        RtspServer(size=a.size, fps=a.fps, pattern="snow") as camera,
    ):
        m = Monitor(
            [Camera("cam", camera.url)],
            model,
            RunDescription().overlay({"record": Path(tmp) / "rec"}),
        )
        m.start()
        web = WebServer(monitor_routes(m), 0, "127.0.0.1")
        try:
            wait_for(lambda: m.stats()["cam"]["processed"] >= 30, "the camera's first frames")
            time.sleep(2.0)  # warm-up: the encoder's and ONNX Runtime's first frames
            for _ in range(a.rounds):
                for viewers in (0, a.viewers):
                    rows.append(phase(m, web.port, a.seconds, viewers))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        finally:
            web.close()
            m.stop()
    quiet = [r for r in rows if r["viewers"] == 0]
    watched = [r for r in rows if r["viewers"]]

    def med(rs: list[dict[str, Any]], k: str) -> float:
        return float(statistics.median(r[k] for r in rs))

    summary = {
        "camera": f"{a.size} {a.fps} fps, snow, x264 2 Mbit/s; recording on",
        "phases": rows,
        "ratio_fps": round(med(watched, "fps") / med(quiet, "fps"), 3),
        "ratio_p50": round(med(watched, "p50_ms") / med(quiet, "p50_ms"), 3),
        "ratio_p99": round(med(watched, "p99_ms") / med(quiet, "p99_ms"), 3),
        "extra_cpu_cores": round(med(watched, "cpu_cores") - med(quiet, "cpu_cores"), 2),
    }
    if a.json:
        print(json.dumps(summary))
    else:
        print(f"camera: {summary['camera']}; {a.seconds:g} s phases, alternating")
        print(f"{'viewers':>8} {'fps':>7} {'p50 ms':>8} {'p99 ms':>8} {'drops':>6} "
              f"{'cores':>6} {'jpeg/s':>7} {'viewer fps':>11}")  # fmt: skip
        for r in rows:
            vf = "-"
            if r["viewer_fps"] is not None:
                vf = f"{r['viewer_fps']:.1f} (min {r['viewer_fps_min']:.1f})"
            print(f"{r['viewers']:>8} {r['fps']:>7.2f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
                  f"{r['dropped']:>6} {r['cpu_cores']:>6.2f} {r['jpeg_encodes_per_s']:>7.2f} "
                  f"{vf:>11}")  # fmt: skip
        print(
            f"with {a.viewers} viewers / without (medians): fps x{summary['ratio_fps']}, "
            f"p50 x{summary['ratio_p50']}, p99 x{summary['ratio_p99']}, "
            f"+{summary['extra_cpu_cores']} cores"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
