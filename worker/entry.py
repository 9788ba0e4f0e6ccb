"""The ``worker`` command's entry point (the console script and ``python -m worker``).

It imports almost nothing itself, so a Ctrl-C, SIGTERM or SIGHUP that arrives while the
command is still starting (importing ONNX Runtime, reading settings) ends it with one line
and the signal's exit code, not a traceback.
"""

from __future__ import annotations

import signal
import sys

from worker.collector import at_exit, hold

__all__ = ["main"]


def main() -> int:
    hold()
    try:
        return _main()
    finally:
        at_exit()


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
