"""Pure image and mask maths on numpy arrays: pre-processing (resize, crop, normalise), the
model's output to class maps and coverage, and blending masks and labels over frames.

Nothing here does I/O or knows about threads, files or models; each function is tested with
numpy alone.
"""

from worker.ops.overlay import Blender, draw_top, pad_even
from worker.ops.postprocess import (
    NO_CLASS,
    MaskMap,
    classify,
    coverage,
    coverage_bits,
    restore,
    segment,
    shown_from_bits,
    sigmoid,
    softmax,
)
from worker.ops.preprocess import Geometry, InputPlan, geometry, preprocess, warp, warp_matrix

__all__ = [
    "NO_CLASS",
    "Blender",
    "Geometry",
    "InputPlan",
    "MaskMap",
    "classify",
    "coverage",
    "coverage_bits",
    "draw_top",
    "geometry",
    "pad_even",
    "preprocess",
    "restore",
    "segment",
    "shown_from_bits",
    "sigmoid",
    "softmax",
    "warp",
    "warp_matrix",
]
