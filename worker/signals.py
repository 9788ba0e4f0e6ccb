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

Every command that runs threads (``run``, ``monitor``, ``serve``, ``dashboard``) handles
signals through ``on_signals`` here, and nowhere else: one place says what a signal does.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, NoReturn

from worker.errors import Signalled

__all__ = [
    "HANDLED",
    "Caught",
    "arrived",
    "held",
    "install_startup_handlers",
    "on_signals",
    "stop_on_signals",
]

HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _ignore_from_now_on() -> None:
    """The command is on its way out: a second signal must not interrupt its unwinding (an
    import's clean-up interrupted prints 'Exception ignored'; temporaries not yet removed
    would stay)."""
    for sig in HANDLED:
        signal.signal(sig, signal.SIG_IGN)


#: The signal the start-up handlers raised for, if one came.
_arrived: int | None = None


def arrived() -> int | None:
    """The signal that interrupted start-up, if one did. Whatever error the command ends in
    after it is its consequence: a signal landing while a native module initialises comes
    out of the import as ``ImportError: initialization failed`` (pybind11 wraps it so), not
    as the ``KeyboardInterrupt`` that was raised."""
    return _arrived


#: Steps under way that must happen whole (``held``), and the signal that came meanwhile.
_holding = 0
_held_lock = threading.Lock()
_pending: int | None = None


def _throw(signum: int) -> NoReturn:
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Signalled(signum)


def _raise(signum: int, frame: FrameType | None) -> None:
    global _arrived, _pending
    _ignore_from_now_on()
    _arrived = signum
    if _holding:
        _pending = signum  # raised as the held step ends
        return
    _throw(signum)


@contextmanager
def held() -> Iterator[None]:
    """A start-up step that must happen whole, such as a temporary made and recorded for
    removal: a signal arriving inside it is raised when it ends, not between the two (where
    the unwinding would not know the temporary is there)."""
    global _holding, _pending
    with _held_lock:
        _holding += 1
    try:
        yield
    finally:
        with _held_lock:
            _holding -= 1
    if _holding == 0 and _pending is not None:
        signum, _pending = _pending, None
        _throw(signum)


def install_startup_handlers() -> None:
    """SIGINT raises ``KeyboardInterrupt`` and SIGTERM and SIGHUP ``Signalled`` in the main
    thread, once: further signals are ignored while the command unwinds."""
    for sig in HANDLED:
        signal.signal(sig, _raise)


class Caught:
    """The first signal that asked a ``stop_on_signals`` block to stop (None: none did)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


@contextmanager
def on_signals(handler: Callable[[int], None]) -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM/SIGHUP call ``handler(signum)`` instead of raising;
    the handlers before are back after it. Only the main thread can handle signals: elsewhere
    (a queued job's thread) this does nothing, and the process's own handlers stay in
    charge."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        handler(signum)

    previous: dict[int, Any] = {sig: signal.signal(sig, on_signal) for sig in HANDLED}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[Caught]:
    """Within the block, SIGINT/SIGTERM/SIGHUP set ``stop`` instead of raising; the first of
    them is remembered in what the block gets (``Caught``)."""
    caught = Caught()

    def on_signal(signum: int) -> None:
        if caught.signum is None:
            caught.signum = signum
        stop.set()

    with on_signals(on_signal):
        yield caught
    if caught.signum is not None:
        # Stopping for that signal: what is left (removing the temporaries, one line, the
        # exit) must not be cut short by another one.
        _ignore_from_now_on()
