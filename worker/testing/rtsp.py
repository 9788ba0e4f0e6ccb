"""Real RTSP cameras for tests and benchmarks: ``rtsp_server.py`` beside this file (GStreamer's
RTSP server) run by Debian's /usr/bin/python3, started, killed and started again on the same
port.

The system packages it needs are installed by ``tests/system-deps.sh`` (the README's test
command runs it); a machine without them fails here with the install line, never skips.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from worker.testing.waiting import free_port, wait_for

__all__ = ["SYSTEM_PYTHON", "RtspServer", "SilentServer", "free_port"]

SYSTEM_PYTHON = "/usr/bin/python3"
_SCRIPT = Path(__file__).with_name("rtsp_server.py")
_INSTALL = "bash tests/system-deps.sh (apt: python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-*)"


class RtspServer:
    """A live test camera at ``url``: a moving ball (or another GStreamer ``videotestsrc``
    pattern: ``white``, ``black``, ``snow``...), H.264 over RTSP."""

    def __init__(
        self,
        port: int | None = None,
        *,
        size: str = "320x240",
        fps: int = 15,
        pattern: str = "ball",
    ) -> None:
        self.port = port or free_port()
        self.size, self.fps, self.pattern = size, fps, pattern
        self.proc: subprocess.Popen[str] | None = None
        fd, name = tempfile.mkstemp(prefix=f"rtsp-{self.port}-", suffix=".log")
        os.close(fd)
        self.log = Path(name)

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def url_with(self, user: str, password: str) -> str:
        return f"rtsp://{user}:{password}@127.0.0.1:{self.port}/cam"

    def start(self, timeout: float = 30.0) -> RtspServer:
        cmd = [SYSTEM_PYTHON, str(_SCRIPT), "--port", str(self.port)]
        cmd += ["--size", self.size, "--fps", str(self.fps), "--pattern", self.pattern]
        # Output to a file, not a pipe nobody reads: GStreamer warnings must not fill it.
        self.log.write_text("")
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
        proc = self.proc
        try:
            line = wait_for(lambda: _first_line(self.log, proc), "the RTSP server", timeout)
        except AssertionError:
            line = ""  # reported below, with what it printed and how to install it
        if not line.startswith("READY"):
            said = self.kill().strip() or "no output"
            raise AssertionError(
                f"RTSP test server on port {self.port} did not start ({said}); needs {_INSTALL}"
            )
        return self

    def kill(self) -> str:
        """Stop it at once, as a camera losing power would; whatever it printed."""
        if self.proc is None:
            return ""
        self.proc.kill()
        self.proc.wait(timeout=10)
        self.proc = None
        return self.log.read_text(errors="replace")

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.kill()


class SilentServer:
    """A TCP port that accepts connections and never answers: a camera that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/cam"

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _first_line(log: Path, proc: subprocess.Popen[str]) -> str | None:
    """The server's first line once it printed one, what it printed if it exited, else None."""
    text = log.read_text(errors="replace")
    if "\n" in text:
        return text.splitlines()[0]
    if proc.poll() is not None:
        return text or "exited"
    return None
