"""A live RTSP camera for tests: GStreamer's RTSP server, run with Debian's /usr/bin/python3.

Not imported by the tests (the project's venv has no GObject bindings): ``worker.testing.rtsp``
starts it as a process, waits for the ``READY`` line, and kills it to simulate an outage.

    /usr/bin/python3 worker/testing/rtsp_server.py --port 8554 [--size 320x240] [--fps 15] \
        [--pattern ball]

Serves ``rtsp://127.0.0.1:<port>/cam``: a moving ball (or another ``videotestsrc`` pattern),
H.264, one key frame per second.
"""

from __future__ import annotations

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--size", default="320x240")
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--pattern", default="ball")
    a = p.parse_args()
    w, h = (int(v) for v in a.size.split("x"))
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_service(str(a.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        f"( videotestsrc is-live=true pattern={a.pattern} "
        f"! video/x-raw,width={w},height={h},framerate={a.fps}/1 "
        f"! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={a.fps} "
        "! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        print(f"FAILED to listen on port {a.port}", flush=True)
        sys.exit(1)
    print(f"READY rtsp://127.0.0.1:{a.port}/cam", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
