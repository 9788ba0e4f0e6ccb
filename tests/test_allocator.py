"""``worker.allocator``: frame-sized buffers reuse freed memory instead of faulting in fresh
pages every frame (glibc), checked by the kernel's count of page faults in a child process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# The writer's blend of a 512x512 mask over 720p frames (buffers of 1-4 MB made and dropped
# each frame, by numpy and OpenCV), 40 frames; prints the minor page faults per frame of the
# last 30.
_CHILD = """
import resource, sys
import cv2
import numpy as np
from worker.models.palette import voc_palette
from worker.ops.overlay import Blender
from worker.ops.postprocess import Geometry, MaskMap
if sys.argv[1] == "tuned":
    from worker.allocator import tune_for_frames
    assert tune_for_frames()
cv2.setNumThreads(1)
frame = np.full((720, 1280, 3), 90, np.uint8)
small = (np.arange(64 * 64, dtype=np.uint8) % 21).reshape(64, 64).repeat(8, 0).repeat(8, 1)
where = MaskMap.build(Geometry(512 / 1280, 512 / 720, 0, 0), (512, 512), (720, 1280))
blend = Blender.build(voc_palette(256), 0.5, np.arange(256) < 21)
for _ in range(10):
    blend.over(frame, small, where.restore)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    blend.over(frame, small, where.restore)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 30)
"""


def _faults_per_round(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True,
                         check=True, timeout=60)  # fmt: skip
    return float(out.stdout)


def _glibc() -> bool:
    try:
        return bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (AttributeError, ValueError):
        return False


@pytest.mark.skipif(not _glibc(), reason="glibc's allocator only")
def test_frame_sized_buffers_are_reused_not_faulted_in_again() -> None:
    # By default glibc gives the blocks back and each frame faults its pages in anew (about
    # 2,600 a frame here); tuned, the next frame reuses them.
    assert _faults_per_round("default") > 500
    assert _faults_per_round("tuned") < 20
