"""Real RTSP cameras for the monitor tests: ``tests/rtsp_server.py`` (GStreamer's RTSP server)
run by Debian's /usr/bin/python3, started, killed and started again on the same port.

The system packages it needs are installed by ``tests/system-deps.sh`` (the README's test
command runs it); a machine without them fails here with the install line, never skips.
"""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from queue_harness import free_port

__all__ = ["SYSTEM_PYTHON", "RtspServer", "SilentServer", "free_port"]

SYSTEM_PYTHON = "/usr/bin/python3"
_SCRIPT = Path(__file__).with_name("rtsp_server.py")
_INSTALL = "bash tests/system-deps.sh (apt: python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-*)"


class RtspServer:
    """A live test camera at ``url``: a moving ball, H.264 over RTSP."""

    def __init__(self, port: int | None = None, *, size: str = "320x240", fps: int = 15) -> None:
        self.port = port or free_port()
        self.size, self.fps = size, fps
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
        cmd += ["--size", self.size, "--fps", str(self.fps)]
        # Output to a file, not a pipe nobody reads: GStreamer warnings must not fill it.
        self.log.write_text("")
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)
        line = _wait_ready(self.log, self.proc, timeout)
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


def _wait_ready(log: Path, proc: subprocess.Popen[str], timeout: float) -> str:
    """The server's first line once it printed one (or exited); "" after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        if "\n" in text:
            return text.splitlines()[0]
        if proc.poll() is not None:
            return text
        time.sleep(0.02)
    return ""
