"""Live cameras, measured: latency at a steady rate, reconnect time after an outage, and drop
counts under overload, each against real RTSP servers (``worker/testing/rtsp_server.py``, GStreamer,
run by Debian's /usr/bin/python3; ``bash tests/system-deps.sh`` installs it).

    python benchmarks/live_monitor.py [--seconds 20] [--json]

1. steady: two cameras (640x480, 25 fps) through the demo segmenter, recording segments;
   per camera received / processed / dropped and latency percentiles (receive to annotated
   and encoded).
2. reconnect: one camera's server killed for ``--outage`` seconds and started again, with the
   default backoff (0.5 s doubling, cap 30 s): time from the server being back to frames.
3. overload: one camera (25 fps) through a model slower than real time; the drop counts and
   latency with the default ``--max-latency-ms`` (500).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from worker.description import RunDescription
from worker.live import Camera, Monitor
from worker.models import Model, demo_model_path, load_model
from worker.testing import RtspServer, make_slow_model, wait_for

ROOT = Path(__file__).resolve().parents[1]


def _row(name: str, c: dict[str, Any]) -> dict[str, Any]:
    return {
        "camera": name,
        "received": c["received"],
        "processed": c["processed"],
        "dropped": c["dropped"],
        "by_reason": c["dropped_by_reason"],
        "latency_ms": c["latency_ms"],
    }


def steady(model: Model, seconds: float, work: Path, lanes: int) -> dict[str, Any]:
    with RtspServer(size="640x480", fps=25) as a, RtspServer(size="640x480", fps=25) as b:
        m = Monitor(
            [Camera("a", a.url), Camera("b", b.url)],
            model,
            RunDescription().overlay(
                {"record": work / "rec", "segment_seconds": 10, "lanes": lanes}
            ),
        )
        m.start()
        wait_for(lambda: all(s["state"] == "live" for s in m.stats().values()), "cameras live")
        time.sleep(seconds)  # the measurement itself: a fixed stretch of steady running
        summary = m.stop()
    return {
        "cameras": [_row(n, c) for n, c in summary["cameras"].items()],
        "mean_batch": summary["inference"]["mean_batch"],
        "batch": summary["batch"],
    }


def reconnect(model: Model, outage: float) -> dict[str, Any]:
    with RtspServer(fps=25) as cam:
        m = Monitor([Camera("cam", cam.url)], model, RunDescription())
        m.start()
        wait_for(lambda: m.stats()["cam"]["processed"] >= 10, "first frames")
        cam.kill()
        down = time.monotonic()
        wait_for(lambda: m.stats()["cam"]["state"] != "live", "the outage to be noticed", poll=0.02)
        noticed = time.monotonic() - down
        time.sleep(outage)  # the outage being simulated
        before = m.stats()["cam"]["received"]
        cam.start()
        back = time.monotonic()

        def again() -> bool:
            return bool(m.stats()["cam"]["received"] > before)

        wait_for(again, "frames again", timeout=120, poll=0.02)
        resumed = time.monotonic() - back
        summary = m.stop()
    c = summary["cameras"]["cam"]
    return {
        "outage_s": outage,
        "noticed_after_s": round(noticed, 3),
        "frames_again_after_server_back_s": round(resumed, 3),
        "connections": c["connections"],
    }


def overload(seconds: float, work: Path, lanes: int) -> dict[str, Any]:
    model = load_model(make_slow_model(work / "slow.onnx"), provider="cpu")
    t = time.perf_counter()
    for _ in range(5):
        model.engine.run_all(np.zeros((1, 3, 32, 32), np.float32))
    per_frame_ms = (time.perf_counter() - t) / 5 * 1000
    with RtspServer(fps=25) as cam:
        m = Monitor([Camera("cam", cam.url)], model, RunDescription().overlay({"lanes": lanes}))
        m.start()
        wait_for(lambda: m.stats()["cam"]["state"] == "live", "camera live")
        time.sleep(seconds)  # a fixed stretch of overload
        summary = m.stop()
    return {"model_ms_per_frame": round(per_frame_ms, 1), "frame_interval_ms": 40.0,
            **_row("cam", summary["cameras"]["cam"])}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0, help="steady and overload runs")
    p.add_argument("--outage", type=float, default=5.0, help="reconnect: server down this long")
    p.add_argument("--lanes", type=int, default=0, help="model runs in flight (0: the default)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    demo = load_model(demo_model_path("segment"), provider="cpu")
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        result: dict[str, Any] = {
            "steady": steady(demo, a.seconds, work, a.lanes),
            "reconnect": reconnect(demo, a.outage),
            "overload": overload(a.seconds, work, a.lanes),
        }
    if a.json:
        print(json.dumps(result, indent=2))
        return
    s = result["steady"]
    print(f"steady ({a.seconds:g} s, 2 cameras 640x480 @ 25 fps, demo segmenter, recording; "
          f"frames per model run {s['mean_batch']} of at most {s['batch']}):")  # fmt: skip
    for r in s["cameras"]:
        print(f"  {r['camera']}: received {r['received']} processed {r['processed']} "
              f"dropped {r['dropped']} {r['by_reason']}  latency ms {r['latency_ms']}")  # fmt: skip
    r = result["reconnect"]
    print(f"reconnect (server down {r['outage_s']:g} s, default backoff): outage noticed after "
          f"{r['noticed_after_s']} s; frames again {r['frames_again_after_server_back_s']} s "
          "after the server was back")  # fmt: skip
    o = result["overload"]
    print(f"overload (model {o['model_ms_per_frame']} ms/frame, a frame every 40 ms, "
          f"{a.seconds:g} s): received {o['received']} processed {o['processed']} dropped "
          f"{o['dropped']} {o['by_reason']}  latency ms {o['latency_ms']}")  # fmt: skip


if __name__ == "__main__":
    main()
