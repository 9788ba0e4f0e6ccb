"""The few words every layer shares, defined once: what a model does and where it runs."""

from __future__ import annotations

from typing import Literal

__all__ = ["Anchor", "Provider", "Task"]

#: What a model's answers are: a mask per frame, labels per frame, or boxes per frame.
Task = Literal["segment", "classify", "detect"]
#: Where the model runs. auto: CUDA when a CUDA session really loads, else the CPU.
Provider = Literal["auto", "cuda", "cpu"]
#: The point of a box that decides its zones and line crossings (supervision's ``Position``).
Anchor = Literal[
    "bottom_center", "center", "top_center", "center_left", "center_right",
    "bottom_left", "bottom_right", "top_left", "top_right",
]  # fmt: skip
