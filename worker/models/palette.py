"""The PASCAL VOC colour map, the default colours of segmentation classes."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["voc_color", "voc_palette"]


def voc_color(i: int) -> tuple[int, int, int]:
    """Class ``i``'s RGB colour: the bits of ``i`` spread over the three channels (24 of
    them, so every class of a 1000-class classifier has its own)."""
    c, r, g, b = i, 0, 0, 0
    for j in range(8):
        r |= ((c >> 0) & 1) << (7 - j)
        g |= ((c >> 1) & 1) << (7 - j)
        b |= ((c >> 2) & 1) << (7 - j)
        c >>= 3
    return r, g, b


def voc_palette(n: int = 256) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """``n`` RGB colours, class ``i``'s is ``voc_color(i)``."""
    return np.array([voc_color(i) for i in range(n)], dtype=np.uint8).reshape(n, 3)
