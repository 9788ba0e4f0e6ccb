"""The cyclic garbage collector while the ``worker`` command starts and as it exits.

Starting imports pydantic, numpy, ONNX Runtime, OpenCV and PyAV and builds the run's
description: a few hundred thousand objects that live as long as the process. The collector,
triggered by counts of allocations, walks them again and again as they are made (about 30 ms
of a 0.4 s start here), and the interpreter's last collections walk them once more as it
exits (about 30 ms more). None of them is garbage.

So the entry point ``hold``\\ s the collector from its first line; ``release`` (a pipeline's
threads start, a queue worker's loop starts, any other command is about to run) freezes
every object alive, which moves it where no collection walks it, and collection resumes for
the work's own objects; ``at_exit`` freezes what is left before the interpreter's teardown.
Only the entry point holds: a program using the package as a library keeps its collector
as it was, and ``release`` does nothing there.
"""

from __future__ import annotations

import gc

__all__ = ["at_exit", "hold", "release"]

_held = False


def hold() -> None:
    """Collect nothing until ``release``."""
    global _held
    if gc.isenabled():
        gc.disable()
        _held = True


def release() -> None:
    """What start-up made is frozen and collection resumes; nothing if ``hold`` did not
    disable it (called twice, or in a program that did not start through the entry point)."""
    global _held
    if _held:
        _held = False
        gc.freeze()
        gc.enable()


def at_exit() -> None:
    """The process is about to end: no collection of what is alive walks it once more."""
    release()
    gc.freeze()
