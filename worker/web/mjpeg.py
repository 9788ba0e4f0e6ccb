"""A camera's annotated frames for the browser: the latest JPEG, and an MJPEG stream.

The pipeline offers each annotated frame (``offer``) with a function that draws it. While
nobody watches, that costs one clock read: nothing is drawn or encoded. While someone does (a
viewer of the stream, or a ``latest.jpg`` asked for in the last few seconds), at most ``fps``
frames a second are drawn and kept, and a kept frame is JPEG-encoded once for every viewer, in
the first asking connection's thread. Each viewer's connection thread waits for the next frame
and writes it; a viewer that reads slowly finds a newer frame when it is ready again (it skips
frames), and one that stops reading blocks only its own thread. The pipeline never waits for a
viewer, and never encodes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import cv2
import numpy as np

__all__ = ["BOUNDARY", "Broadcast"]

BOUNDARY = "frame"
Array = np.ndarray[Any, Any]
#: After a ``latest.jpg``, frames are kept this long for the next one (a page polling it).
_ASKED_KEEP_S = 10.0


class Broadcast:
    def __init__(self, fps: float = 5.0, quality: int = 80) -> None:
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.quality = quality
        self.viewers = 0
        self.kept = 0  # frames drawn for viewers
        self.encoded = 0  # JPEG encodes (one per kept frame that anyone asked for)
        self._cv = threading.Condition()
        self._encoding = threading.Lock()  # one encode per kept frame, for every viewer
        self._image: Array | None = None  # the newest kept annotated frame (BGR)
        self._jpeg: bytes | None = None  # its JPEG, once encoded
        self._seq = 0  # bumps with each kept frame
        self._kept_at = -1e9
        self._asked_at = -1e9
        self._closed = False

    def wanted(self, now: float) -> bool:
        return self.viewers > 0 or now - self._asked_at < _ASKED_KEEP_S

    def offer(self, picture: Callable[[], Array]) -> None:
        """A new annotated frame: drawn (``picture()``) only if someone watches and the last
        kept one is at least a period old. Called by the pipeline; never blocks on a viewer."""
        now = time.monotonic()
        if now - self._kept_at < self.period or not self.wanted(now):
            return
        image = picture()
        with self._cv:
            self._image, self._jpeg, self._kept_at = image, None, now
            self._seq += 1
            self.kept += 1
            self._cv.notify_all()

    def latest(self, wait_s: float = 0.0) -> bytes | None:
        """The newest kept frame as JPEG. With ``wait_s``, a first ask waits that long for a
        frame (none is kept while nobody watches); None if there is none."""
        now = time.monotonic()
        with self._cv:
            self._asked_at = now
            if wait_s > 0 and now - self._kept_at > max(1.0, 2 * self.period):
                seq = self._seq
                self._cv.wait_for(lambda: self._seq != seq, wait_s)
        return self._encode()

    def _encode(self) -> bytes | None:
        with self._encoding:
            with self._cv:
                image, jpeg, seq = self._image, self._jpeg, self._seq
            if jpeg is not None or image is None:
                return jpeg
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            self.encoded += 1
            jpeg = data.tobytes() if ok else None
            with self._cv:
                if self._seq == seq:
                    self._jpeg = jpeg
            return jpeg

    def close(self) -> None:
        """The camera is gone for good (the monitor stopped): every stream ends."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    def stream(self) -> Iterator[bytes]:
        """multipart/x-mixed-replace parts, one per kept frame, until the viewer leaves (the
        connection's write fails) or ``close()``. The newest frame is sent first."""
        with self._cv:
            self.viewers += 1
        try:
            seen = -1
            while True:
                with self._cv:
                    if self._closed:
                        return
                    if self._seq == seen or self._image is None:
                        self._cv.wait(1.0)
                        if self._closed or self._seq == seen or self._image is None:
                            continue
                    seen = self._seq
                jpeg = self._encode()
                if jpeg is None:
                    continue
                yield (
                    (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                        f"Content-Length: {len(jpeg)}\r\n\r\n"
                    ).encode()
                    + jpeg
                    + b"\r\n"
                )
        finally:
            with self._cv:
                self.viewers -= 1
