"""glibc's allocator set for frame-sized buffers, for the ``worker`` command.

Every frame makes and drops buffers of megabytes (decoded pictures, the blend's layers, the
encoder's input). glibc serves blocks above its mmap threshold with fresh pages and gives
memory above its trim threshold back to the system as soon as it is free, so each frame
faulted its pages in anew: about 2,400 page faults a 720p frame, 0.4 s of system CPU in a
200-frame run, and the blend alone twice as slow (2.0 -> 4.1 ms). With both thresholds above
a frame's buffers, freed blocks are reused by the next frame; the peak is what the frames in
flight hold either way. Only the entry point sets it (a program using the package keeps its
own allocator settings); nothing happens where the C library is not glibc.
"""

from __future__ import annotations

import ctypes
import os
from typing import Any

__all__ = ["release_free", "tune_for_frames"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc's largest mmap threshold on 64-bit: blocks up to it (a 4K BGR frame is 25 MB) come
#: from the heap.
_MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory kept for reuse before any is given back: several frames' worth.
_TRIM_THRESHOLD = 128 * 1024 * 1024


def _glibc(name: str, *argtypes: Any) -> Any:
    """glibc's function ``name`` taking ``argtypes`` and returning an int, or None where the
    C library is not glibc."""
    try:
        os.confstr("CS_GNU_LIBC_VERSION")
        function = getattr(ctypes.CDLL(None), name)
    except (ValueError, OSError, AttributeError):
        return None
    function.argtypes = list(argtypes)
    function.restype = ctypes.c_int
    return function


def tune_for_frames() -> bool:
    """Raise glibc's mmap and trim thresholds; whether they were set."""
    mallopt = _glibc("mallopt", ctypes.c_int, ctypes.c_int)
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )


def release_free() -> bool:
    """Give the memory glibc holds free back to the system (``malloc_trim``), after a burst
    of allocations that will not come again (the engine's opening run); whether any was
    given back. Nothing happens where the C library is not glibc."""
    trim = _glibc("malloc_trim", ctypes.c_size_t)
    return trim is not None and bool(trim(0))
