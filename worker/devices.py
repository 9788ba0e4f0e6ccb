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

__all__ = ["NVIDIA_NODES", "nvidia_device_node"]

NVIDIA_NODES = ("/dev/nvidiactl", "/dev/dxg")


def nvidia_device_node() -> bool:
    """Whether a CUDA device can exist for this process (False only where it cannot)."""
    return sys.platform != "linux" or any(os.path.exists(p) for p in NVIDIA_NODES)
