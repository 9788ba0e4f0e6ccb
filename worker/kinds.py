"""The few words every layer shares, defined once: what a model does and where it runs."""

from __future__ import annotations

from typing import Literal

__all__ = ["Provider", "Task"]

#: What a model's answers are: a mask per frame, labels per frame, or boxes per frame.
Task = Literal["segment", "classify", "detect"]
#: Where the model runs. auto: CUDA when a CUDA session really loads, else the CPU.
Provider = Literal["auto", "cuda", "cpu"]
