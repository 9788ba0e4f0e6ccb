"""Soak: a monitor whose cameras drop off and come back again and again, with this process's
memory, threads and open files sampled after every reconnect, so that anything a reconnect
leaves behind (a decoder, a socket, a segment's encoder, a thread) shows as a slope.

    python benchmarks/live_soak.py [--reconnects 26] [--seconds 240] [--quick] [--json]

Two cameras (640x480, 15 fps, real RTSP servers: ``worker.testing.RtspServer``, GStreamer, run
by Debian's /usr/bin/python3; ``bash tests/system-deps.sh`` installs it) through the demo
segmenter, in this process (``worker.live.Monitor``), recording a segment per connection. The
servers are killed and started again on the same port in turn, ``--reconnects`` times spread
over ``--seconds``; each reconnect ends a connection (its container, decoder and socket) and
the camera's segment (its encoder and file), and opens new ones. After each, once frames flow
again and after ``gc.collect()`` (garbage the collector would free is not a leak): VmRSS
(/proc/self/status), threads (``threading.active_count()`` and the native ones in
/proc/self/task: ONNX Runtime's, FFmpeg's, x264's) and open file descriptors (/proc/self/fd),
these two as the least of ten readings over 0.2 s (some threads live only for a moment).

Sampling starts after ``--warmup`` seconds and a first reconnect of each camera (ONNX Runtime's
arena, the allocator's arenas and the latency windows fill first, and the first reconnects
reach the allocator's high-water mark): sample 0 before the first reconnect, then one at the
end of each reconnect's time slot (both cameras live, each with a segment open, not amid a
reconnect's comings and goings). Printed: a table, the least-squares slope per reconnect and
the first-to-last difference. Exit 1 when a slope passes its limit: RSS 1 MiB (one leaked
640x480 H.264 decoder holds its reference frames, several MiB; an x264 encoder more), threads
and fds 0.1 (a leaked thread or socket is 1 per reconnect).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from worker.description import RunDescription
from worker.live import Camera, Monitor
from worker.models import demo_model_path, load_model
from worker.testing import RtspServer, wait_for

ROOT = Path(__file__).resolve().parents[1]


#: Growth per reconnect (least-squares slope) above which the run fails.
LIMITS = {"rss_mib": 1.0, "threads_native": 0.1, "threads_python": 0.1, "fds": 0.1}


@dataclass
class Sample:
    reconnect: int  # 0: before the first (after the warm-up)
    camera: str
    at_s: float  # since the warm-up ended
    back_after_s: float | None  # server started again -> frames again
    rss_mib: float
    threads_python: int
    threads_native: int
    fds: int


def least(read: Callable[[], int], times: int = 10, gap_s: float = 0.02) -> int:
    """The smallest of a few readings: threads and fds that live for a moment (FFmpeg's
    swscale starts threads for a conversion; a segment's file is opened) only ever add, so
    the minimum is what stays."""
    values = []
    for _ in range(times):
        values.append(read())
        time.sleep(gap_s)  # readings spread over a moment, not a wait for a condition
    return min(values)


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def sample(reconnect: int, camera: str, at_s: float, back_after_s: float | None) -> Sample:
    gc.collect()
    return Sample(
        reconnect=reconnect,
        camera=camera,
        at_s=round(at_s, 1),
        back_after_s=None if back_after_s is None else round(back_after_s, 2),
        rss_mib=round(rss_mib(), 1),
        threads_python=least(threading.active_count),
        threads_native=least(lambda: len(os.listdir("/proc/self/task"))),
        fds=least(lambda: len(os.listdir("/proc/self/fd"))),  # the listing's own fd included
    )


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares growth of ys per unit of xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def soak(reconnects: int, seconds: float, warmup: float, work: Path) -> dict[str, Any]:
    model = load_model(demo_model_path("segment"), provider="cpu")
    options = RunDescription().overlay(
        {
            "record": work / "rec",
            # One segment per connection: reconnects end them (what is soaked here), and no
            # segment rolling over at a sample's moment makes its encoder's threads come and
            # go.
            "segment_seconds": 3600.0,
            # Quick returns: the soak is about what reconnects leave behind, not about waiting.
            "reconnect_base_s": 0.2,
            "reconnect_max_s": 1.0,
        }
    )
    servers = {name: RtspServer(size="640x480", fps=15) for name in ("a", "b")}
    for s in servers.values():
        s.start()
    m = Monitor([Camera(n, s.url) for n, s in servers.items()], model, options)

    def stat(camera: str, key: str) -> Any:
        return m.stats()[camera][key]

    def running(camera: str) -> bool:
        return bool(stat(camera, "processed") >= 10)

    def down(camera: str) -> bool:
        return bool(stat(camera, "state") != "live")

    def back_again(camera: str, connections: int, received: int) -> bool:
        return bool(
            stat(camera, "connections") > connections and stat(camera, "received") > received
        )

    def reconnect(name: str) -> float:
        """Kill the camera's server, start it again: seconds from its return to frames."""
        connections = stat(name, "connections")
        servers[name].kill()  # the camera loses power
        wait_for(partial(down, name), f"camera {name} to drop")
        received = stat(name, "received")
        servers[name].start()
        back = time.monotonic()
        wait_for(
            partial(back_again, name, connections, received),
            f"camera {name} to come back",
            timeout=120,
        )
        return time.monotonic() - back

    try:
        m.start()
        for name in servers:
            wait_for(partial(running, name), f"camera {name} frames")
        # Warm-up (see the module's docstring), a first reconnect of each camera included.
        time.sleep(warmup)
        for name in servers:
            reconnect(name)
        began = time.monotonic()
        slot = seconds / reconnects
        samples = [sample(0, "-", 0.0, None)]
        for i in range(1, reconnects + 1):
            name = "ab"[(i - 1) % 2]
            back_after = reconnect(name)
            # The soak itself: both cameras run until this reconnect's time slot ends; then
            # the sample, in the steady state (both live, each with a segment open) rather
            # than amid the reconnect's comings and goings.
            time.sleep(max(0.0, began + i * slot - time.monotonic()))
            samples.append(sample(i, name, time.monotonic() - began, back_after))
        summary = m.stop()
    finally:
        if not m.stopping:
            m.stop()
        for s in servers.values():
            s.kill()
    return {"samples": samples, "summary": summary}


def report(result: dict[str, Any], reconnects: int) -> dict[str, Any]:
    samples: list[Sample] = result["samples"]
    xs = [float(s.reconnect) for s in samples]
    out: dict[str, Any] = {"per_reconnect": {}, "failed": []}
    for key, limit in LIMITS.items():
        ys = [float(getattr(s, key)) for s in samples]
        per = slope(xs, ys)
        out["per_reconnect"][key] = {
            "slope": round(per, 4),
            "first_to_last": round(ys[-1] - ys[0], 2),
            "first_to_last_per_reconnect": round((ys[-1] - ys[0]) / reconnects, 4),
            "limit": limit,
        }
        if per > limit:
            out["failed"].append(f"{key} grows {per:.3f} per reconnect (limit {limit:g})")
    cams = result["summary"]["cameras"]
    kept = ("connections", "received", "processed", "dropped", "segments_written")
    out["cameras"] = {n: {k: c[k] for k in kept} for n, c in cams.items()}
    out["reconnects"] = reconnects
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reconnects", type=int, help="camera reconnects in all (26; --quick 8)")
    p.add_argument("--seconds", type=float, help="spread over this long (240; --quick 30)")
    p.add_argument("--warmup", type=float, help="seconds before the first sample (20; --quick 5)")
    p.add_argument("--quick", action="store_true", help="8 reconnects in ~30 s")
    p.add_argument("--verbose", action="store_true", help="the monitor's log lines too")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    reconnects = a.reconnects or (8 if a.quick else 26)
    seconds = a.seconds if a.seconds is not None else (30.0 if a.quick else 240.0)
    warmup = a.warmup if a.warmup is not None else (5.0 if a.quick else 20.0)
    if reconnects < 3:
        p.error("--reconnects: at least 3, to fit a slope")
    if not a.verbose:  # a warning per camera drop and return would bury the table
        logging.getLogger("worker").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as d:
        result = soak(reconnects, seconds, warmup, Path(d))
    verdict = report(result, reconnects)
    samples: list[Sample] = result["samples"]
    if a.json:
        print(json.dumps({"samples": [asdict(s) for s in samples], **verdict}, indent=2))
    else:
        print(
            f"soak: {reconnects} reconnects over {samples[-1].at_s:g} s after {warmup:g} s of "
            "warm-up; 2 cameras 640x480 @ 15 fps, demo segmenter, a segment per connection"
        )
        print(f"{'#':>3} {'camera':>6} {'at s':>7} {'back s':>7} {'RSS MiB':>8} "
              f"{'py thr':>6} {'threads':>7} {'fds':>4}")  # fmt: skip
        for s in samples:
            back = "warm-up" if s.back_after_s is None else f"{s.back_after_s:.2f}"
            print(f"{s.reconnect:>3} {s.camera:>6} {s.at_s:>7.1f} {back:>7} {s.rss_mib:>8.1f} "
                  f"{s.threads_python:>6} {s.threads_native:>7} {s.fds:>4}")  # fmt: skip
        print("growth per reconnect (least-squares slope over the samples; first to last):")
        for key, g in verdict["per_reconnect"].items():
            print(
                f"  {key:>15}: {g['slope']:+.4f} per reconnect (limit {g['limit']:g}); "
                f"{g['first_to_last']:+g} from first to last "
                f"({g['first_to_last_per_reconnect']:+.4f} per reconnect)"
            )
        for n, c in verdict["cameras"].items():
            print(f"  camera {n}: {c}")
    if verdict["failed"]:
        print("LEAK? " + "; ".join(verdict["failed"]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
