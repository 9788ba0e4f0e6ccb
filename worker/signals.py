"""What SIGINT, SIGTERM and SIGHUP do: stop cleanly, never mid-way through native code.

A ``KeyboardInterrupt`` raised in the main thread while stage threads run ONNX Runtime or FFmpeg
must not end the process: the interpreter would finalize with those (daemon) threads still
inside native code, and when they next try to take the GIL they are unwound by
``pthread_exit``, through C++ frames that may not be unwound: ``terminate called without an
active exception``, SIGABRT, exit 134. So:

- from start-up until a command starts its threads, SIGTERM and SIGHUP raise ``Signalled``
  (a ``KeyboardInterrupt``), like SIGINT: nothing runs beside the main thread, unwinding it
  is safe and removes any temporaries on the way;
- while threads run, ``stop_on_signals`` turns these signals into a stop request (an event the
  threads poll) and remembers the first; the caller joins its threads, then reports it.
  A second signal asks the same again: it cannot cut the clean stop short.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from worker.errors import Signalled

__all__ = ["HANDLED", "Caught", "install_startup_handlers", "stop_on_signals"]

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _raise(signum: int, frame: FrameType | None) -> None:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Signalled(signum)


def install_startup_handlers() -> None:
    """SIGTERM and SIGHUP raise ``Signalled`` in the main thread (SIGINT already raises
    ``KeyboardInterrupt``)."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise)


class Caught:
    """The first signal that asked a ``stop_on_signals`` block to stop (None: none did)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[Caught]:
    """Within the block, SIGINT/SIGTERM/SIGHUP set ``stop`` instead of raising. Only the main
    thread can handle signals: elsewhere (a queued job's thread) this does nothing, and the
    process's own handlers (``worker serve``'s) stay in charge."""
    caught = Caught()
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if caught.signum is None:
            caught.signum = signum
        stop.set()

    previous: dict[int, Any] = {sig: signal.signal(sig, on_signal) for sig in HANDLED}
    try:
        yield caught
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
