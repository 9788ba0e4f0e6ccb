"""The ``worker`` command's entry point (``command``: the console script and ``python -m worker``).

It imports almost nothing itself, so a Ctrl-C, SIGTERM or SIGHUP that arrives while the
command is still starting (importing ONNX Runtime, reading settings) ends it with one line
and the signal's exit code, not a traceback.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import NoReturn

from worker.collector import at_exit, hold

__all__ = ["command", "main"]


def main() -> int:
    hold()
    try:
        return _main()
    finally:
        at_exit()


def command() -> NoReturn:
    """The console script: ``main``, then the process ends without the interpreter's
    teardown.

    Once the command is done its outputs are closed and in place, and the exit handlers
    still run (logging's flush, temporary folders' removal, anything a library registered).
    What is skipped is what follows them: every module's objects freed one by one and the
    native libraries' own teardown (ONNX Runtime's, OpenCV's): 20-30 ms at the end of every
    run here, for memory the system takes back at once. Where a thread other than this one
    is still alive, or the standard streams cannot be flushed, the process exits as usual.
    """
    code = main()
    if threading.active_count() == 1:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except (OSError, ValueError):
            pass  # the usual exit says what became of the stream, as it always did
        else:
            atexit._run_exitfuncs()
            _flush_c_streams()
            os._exit(code)
    sys.exit(code)


def _flush_c_streams() -> None:
    """What native code wrote through C's buffered stdio, out before ``os._exit``."""
    import contextlib
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).fflush(None)


def _main() -> int:
    try:
        # Inside the try: a Ctrl-C while this import runs (Python's own handler still in
        # place) is one line too, not a traceback.
        from worker.signals import install_startup_handlers

        install_startup_handlers()
        from worker.allocator import tune_for_frames

        tune_for_frames()
        from worker.cli.main import main as run

        return run()
    except KeyboardInterrupt as e:
        signum = int(getattr(e, "signum", signal.SIGINT))
        print(f"error: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    except Exception:
        # A signal landing while a native module initialises comes out as that import's
        # error (pybind11: "ImportError: initialization failed"): still the signal.
        from worker.signals import arrived

        came = arrived()
        if came is None:
            raise
        print(f"error: interrupted ({signal.Signals(came).name})", file=sys.stderr)
        return 128 + came
