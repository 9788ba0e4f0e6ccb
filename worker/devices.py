"""Whether this process can have an NVIDIA GPU, read from the device nodes its driver makes.

FFmpeg lists CUDA decoding, and onnxruntime-gpu the CUDA provider, wherever they were built
with it; only creating a device tells whether one works, and a try costs: FFmpeg opens the
file once more (~10 ms a file), ONNX Runtime builds a whole session of the model and, when
CUDA does not load, keeps it on the CPU (the weights read and optimised for nothing). On
Linux a process given an NVIDIA GPU sees the driver's control node (hosts and containers) or
WSL 2's GPU node: without either, nothing is tried.
"""

from __future__ import annotations

import os
import sys

__all__ = ["NVIDIA_NODES", "no_nvidia_device"]

NVIDIA_NODES = ("/dev/nvidiactl", "/dev/dxg")


def no_nvidia_device() -> str | None:
    """Why no CUDA device can exist for this process; None where one may."""
    if sys.platform != "linux" or any(os.path.exists(p) for p in NVIDIA_NODES):
        return None
    return f"no NVIDIA device here ({' or '.join(NVIDIA_NODES)} absent)"
