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
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import av
import av.error

from worker.live.queues import LiveFrame
from worker.stages.frames import Frame

__all__ = [
    "Backoff",
    "Camera",
    "CameraSource",
    "CameraState",
    "ConnectOptions",
    "redact",
]

log = logging.getLogger(__name__)

CameraState = Literal["connecting", "live", "stalled", "backoff", "stopped", "failed"]


def redact(url: str) -> str:
    """The URL without its secrets: user info becomes ``***`` and query values ``***``
    (camera APIs put tokens there too).

    Done by hand rather than with ``urllib.parse``: cameras' passwords often hold unescaped
    ``#``, ``/`` or ``?``, which end a URL's authority early and would leave the password in
    what looks like the host or path. Everything up to the last ``@`` goes instead (hiding
    too much beats showing a password)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    at = rest.rfind("@")
    if at >= 0:
        rest = "***@" + rest[at + 1 :]
    rest = rest.split("#", 1)[0]
    path, q, query = rest.partition("?")
    if q:
        parts = [p.split("=", 1)[0] + "=***" if "=" in p else "***" for p in query.split("&")]
        path += "?" + "&".join(parts)
    return f"{scheme}{sep}{path}"


@dataclass(frozen=True)
class Camera:
    name: str
    url: str = field(repr=False)

    @property
    def shown(self) -> str:
        """What logs, metrics and errors may show of the URL."""
        return redact(self.url)


@dataclass(frozen=True)
class Backoff:
    """Delay before reconnect attempt ``n`` (0-based): ``base * 2**n`` capped at ``cap``, less
    up to ``jitter`` of it at random, so cameras that dropped together do not return in step."""

    base_s: float = 0.5
    cap_s: float = 30.0
    jitter: float = 0.5

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        d = min(self.cap_s, self.base_s * float(2 ** min(attempt, 62)))
        r: float = (rng or random).random()
        return d * (1.0 - self.jitter * r)


@dataclass(frozen=True)
class ConnectOptions:
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    backoff: Backoff = field(default_factory=Backoff)
    max_attempts: int = 0  # failed connections in a row before giving up; 0: never give up


class CameraSource:
    """Runs in its own thread (``run``): frames go to ``sink``, states to ``on_state``."""

    def __init__(
        self,
        camera: Camera,
        sink: Callable[[LiveFrame], None],
        on_state: Callable[[str, CameraState, str], None],
        options: ConnectOptions,
        stop: threading.Event,
    ) -> None:
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
            limit = self.options.max_attempts
            if limit and failures >= limit:
                self._set("failed", f"{why}; gave up after {failures} attempts")
                return
            delay = self.options.backoff.delay(max(failures - 1, 0))
            self._set("backoff", f"{why}; reconnecting in {delay:.1f} s")
            self.stop.wait(delay)
        self._set("stopped")

    def _session(self) -> tuple[bool, str]:
        """One connection: (whether any frame came, why it ended)."""
        o = self.options
        try:
            container: Any = av.open(
                self.camera.url,
                options={
                    "rtsp_transport": "tcp",
                    "timeout": str(int(o.read_timeout_s * 1e6)),  # socket I/O, microseconds
                    # FFmpeg's default probing waits ~2 s on a live stream; the SDP and the
                    # first packets say all we need, and a reconnect should be quick.
                    "analyzeduration": "250000",
                    "probesize": "65536",
                },
                timeout=(o.open_timeout_s, o.read_timeout_s),
            )
        except (av.error.FFmpegError, OSError, ValueError) as e:
            return False, f"cannot open: {_why(e)}"
        got = False
        try:
            if not container.streams.video:
                return False, "no video stream"
            stream = container.streams.video[0]
            # One decoder thread: each frame thread would hold back a frame of latency.
            stream.codec_context.thread_count = 1
            self.generation += 1
            index = 0
            for packet in container.demux(stream):
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
                    item = LiveFrame(self.camera.name, frame, received_at, wall, self.generation)
                    self.sink(item)
            return got, "stream ended"
        except av.error.ExitError:
            # Our read timeout fired: the camera is connected but sends nothing.
            self._set("stalled", f"no data for {o.read_timeout_s:g} s")
            return got, "stalled"
        except (av.error.FFmpegError, OSError, ValueError) as e:
            return got, f"read error: {_why(e)}"
        finally:
            container.close()


def _why(e: BaseException) -> str:
    """The error without the URL FFmpeg appends to its message."""
    text = getattr(e, "strerror", None)
    if isinstance(text, str) and text:
        return text
    return type(e).__name__
