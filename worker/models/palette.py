"""The PASCAL VOC colour map, the default colours of segmentation classes."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["voc_palette"]


def voc_palette(n: int = 256) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """``n`` RGB colours: class ``i``'s colour spreads the bits of ``i`` over the three channels."""
    out = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        out[i] = (r, g, b)
    return out
