"""Waiting the right way in tests and benchmarks: poll a condition with a deadline (never a
bare sleep standing in for it), and free ports to listen on."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DEADLINE_S", "free_port", "wait_for"]

T = TypeVar("T")

#: Generous: CPU is shared with other developers' work and timings are noisy.
DEADLINE_S = 60.0
_POLL_S = 0.05


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    check: Callable[[], T | None], what: str, timeout: float = DEADLINE_S, poll: float = _POLL_S
) -> T:
    """Poll ``check`` until it returns something truthy; fail naming ``what`` after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
