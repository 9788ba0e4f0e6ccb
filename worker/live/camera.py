"""Camera source: one RTSP stream, decoded by PyAV, reconnected forever (or as told).

FFmpeg has no RTSP reconnect of its own, so this loop is it: open (TCP, open/read timeouts),
decode until the stream ends, stalls or fails, close, wait a capped exponential backoff with
jitter, open again. A camera's state (``connecting``, ``live``, ``stalled``, ``backoff``, then
``stopped`` or ``failed``) is reported on every change.

A URL may carry credentials (``rtsp://user:password@host/...``), and FFmpeg's errors repeat
the URL. Nothing here lets either out: states and errors carry ``redact(url)`` and the
error's text (``strerror``), never ``str(error)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import av
import av.error

from worker.description import Live
from worker.messages import redact
from worker.retry import backoff
from worker.stages.frames import Frame, Item

__all__ = ["Camera", "CameraSource", "CameraState", "redact"]

log = logging.getLogger(__name__)

CameraState = Literal["connecting", "live", "stalled", "backoff", "stopped", "failed"]


@dataclass(frozen=True)
class Camera:
    name: str
    url: str = field(repr=False)

    @property
    def shown(self) -> str:
        """What logs, metrics and errors may show of the URL."""
        return redact(self.url)


class CameraSource:
    """Runs in its own thread (``run``): frames go to ``sink``, states to ``on_state``."""

    def __init__(
        self,
        camera: Camera,
        sink: Callable[[Item], None],
        on_state: Callable[[str, CameraState, str], None],
        options: Live,
        stop: threading.Event,
    ) -> None:
        """``options``: the open and read timeouts, reconnect delays and attempts."""
        self.camera = camera
        self.sink = sink
        self.on_state = on_state
        self.options = options
        self.stop = stop
        self.generation = 0  # successful connections so far
        self.bad_packets = 0

    def _set(self, state: CameraState, detail: str = "") -> None:
        self.on_state(self.camera.name, state, detail)

    def run(self) -> None:
        failures = 0  # connections in a row that ended without a frame
        while not self.stop.is_set():
            self._set("connecting", self.camera.shown)
            got, why = self._session()
            if self.stop.is_set():
                break
            failures = 0 if got else failures + 1
            o = self.options
            if o.reconnect_attempts and failures >= o.reconnect_attempts:
                self._set("failed", f"{why}; gave up after {failures} attempts")
                return
            delay = backoff(failures, o.reconnect_base_s, o.reconnect_max_s)
            self._set("backoff", f"{why}; reconnecting in {delay:.1f} s")
            self.stop.wait(delay)
        self._set("stopped")

    def _session(self) -> tuple[bool, str]:
        """One connection: (whether any frame came, why it ended)."""
        o = self.options
        opening = time.monotonic()
        try:
            container: Any = av.open(
                self.camera.url,
                options={
                    "rtsp_transport": "tcp",
                    # FFmpeg's own socket timeout (microseconds) only as a backstop for what
                    # PyAV does not time (the TEARDOWN sent on close): PyAV's timeouts below
                    # must fire first. Set to the read timeout, it raced ours and, when it
                    # won, FFmpeg's RTSP code reported the silence as "Invalid data found"
                    # (and cut the open timeout down to the read timeout).
                    "timeout": str(int(2 * max(o.open_timeout_s, o.read_timeout_s) * 1e6)),
                    # FFmpeg's default probing waits ~2 s on a live stream; the SDP and the
                    # first packets say all we need, and a reconnect should be quick.
                    "analyzeduration": "250000",
                    "probesize": "65536",
                },
                timeout=(o.open_timeout_s, o.read_timeout_s),
            )
        except (av.error.FFmpegError, OSError, ValueError) as e:
            # FFmpeg's RTSP code turns a reply that never came into "Invalid data found":
            # an open that failed only once the open timeout had passed timed out.
            timed_out = time.monotonic() - opening >= o.open_timeout_s
            if timed_out or isinstance(e, av.error.ExitError):
                why = f"no answer within the open timeout ({o.open_timeout_s:g} s)"
            else:
                why = _why(e)
            return False, f"cannot open: {why}"
        got = False
        packets: Any = None
        asked = time.monotonic()  # when the read under way was asked for
        try:
            if not container.streams.video:
                return False, "no video stream"
            stream = container.streams.video[0]
            # One decoder thread: each frame thread would hold back a frame of latency.
            stream.codec_context.thread_count = 1
            self.generation += 1
            index = 0
            packets = container.demux(stream)
            while True:
                asked = time.monotonic()
                packet = next(packets, None)
                if packet is None:
                    break
                if time.monotonic() - asked >= o.read_timeout_s:
                    # Our read timeout fired, but FFmpeg's demuxer answers any read error by
                    # flushing its H.264 parser: the frame it held (sent before the silence)
                    # comes back instead of the error, and the error is lost. Taking it would
                    # count a stale frame and start another full read timeout.
                    return got, self._stalled()
                if self.stop.is_set():
                    return got, "stopping"
                try:
                    decoded = packet.decode()
                except av.error.InvalidDataError:
                    # Lost packets over a network are routine: count, go on.
                    self.bad_packets += 1
                    continue
                for f in decoded:
                    image = f.to_ndarray(format="bgr24")
                    received_at, wall = time.monotonic(), time.time()
                    if not got:
                        got = True
                        h, w = image.shape[:2]
                        self._set("live", f"{w}x{h}")
                    t = float(f.pts * f.time_base) if f.pts is not None and f.time_base else 0.0
                    frame = Frame(index=index, pts=f.pts, time=t, image=image)
                    index += 1
                    item = Item(self.camera.name, frame, received_at, wall, self.generation)
                    self.sink(item)
            return got, "stream ended"
        except av.error.ExitError:
            # Our read timeout fired with nothing held: the camera is connected, sends nothing.
            return got, self._stalled()
        except (av.error.FFmpegError, OSError, ValueError) as e:
            if time.monotonic() - asked >= o.read_timeout_s:
                return got, self._stalled()  # the silence, whatever FFmpeg calls it
            return got, f"read error: {_why(e)}"
        finally:
            if packets is not None:
                # Ends PyAV's read timer first: the TEARDOWN that closing sends is bounded by
                # the socket backstop, not cut short by a read timeout that already ran out.
                packets.close()
            container.close()

    def _stalled(self) -> str:
        self._set("stalled", f"no data for {self.options.read_timeout_s:g} s")
        return "stalled"


def _why(e: BaseException) -> str:
    """The error without the URL FFmpeg appends to its message."""
    text = getattr(e, "strerror", None)
    if isinstance(text, str) and text:
        return text
    return type(e).__name__
