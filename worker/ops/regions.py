"""Regions: a semantic mask split into separate objects, each with its size and place.

A segmenter says which pixels are "crack" or "sunburn"; the question people ask next is how
many there are and how big each is. Per class, the 8-connected components of the mask at
model resolution are the regions; each is measured in frame pixels through the ``MaskMap``
the mask is drawn with (so a region's area is exactly the pixels it paints on the frame):
area, box, centroid. For thin structures (cracks, scratches, wires), ``measure`` adds the
length along the region's skeleton and its largest width, from the region at frame size.

Plain numpy and OpenCV; no model, no video.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from worker.ops.postprocess import MaskMap

__all__ = ["Region", "bit_masks", "class_masks", "find_regions", "measure", "thin"]

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Region:
    """One region, in frame pixels: ``box`` is (x1, y1, x2, y2), x2 and y2 the right and
    bottom edges (a region covering the whole frame is (0, 0, W, H))."""

    cls: int
    area: int
    box: tuple[int, int, int, int]
    centroid: tuple[float, float]
    length: float | None = None  # along the skeleton, end to end
    width: float | None = None  # the largest, across


def _spans(index: Array, n: int) -> tuple[Array, Array, Array]:
    """For each of ``n`` mask rows (or columns): the first and one-past-last frame row that
    shows it, and the mean frame coordinate of its pixel centres. ``index``: frame -> mask,
    -1 where the frame shows none."""
    pos = np.arange(len(index))
    seen = index >= 0
    first = np.full(n, len(index), dtype=np.int64)
    last = np.full(n, -1, dtype=np.int64)
    np.minimum.at(first, index[seen], pos[seen])
    np.maximum.at(last, index[seen], pos[seen])
    counts = np.bincount(index[seen], minlength=n)[:n]
    sums = np.bincount(index[seen], weights=pos[seen] + 0.5, minlength=n)[:n]
    centre = np.divide(sums, counts, out=np.zeros(n), where=counts > 0)
    return first, last + 1, centre


def class_masks(small: Array, classes: Iterable[int]) -> Iterator[tuple[int, Array]]:
    """(class, its mask) of a class map ``small`` ((h, w) uint8)."""
    for cls in classes:
        yield cls, small == cls


def bit_masks(bits: Array, classes: Iterable[int]) -> Iterator[tuple[int, Array]]:
    """(class, its mask) of a multi-label answer (bit c of ``bits`` set: class c is on)."""
    for cls in classes:
        yield cls, (bits >> np.uint32(cls)) & 1 != 0


def find_regions(
    masks: Iterable[tuple[int, Array]],
    where: MaskMap,
    *,
    min_area: int = 0,
    measured: bool = False,
) -> list[Region]:
    """The regions of each (class, mask) in ``masks`` (model resolution, bool), measured on
    the frame ``where`` maps them to; those under ``min_area`` frame pixels (or showing on
    none) left out. In the order of ``masks``, each class's largest first."""
    h, w = where.small_hw
    r_first, r_end, r_centre = _spans(where.rows, h)
    c_first, c_end, c_centre = _spans(where.cols, w)
    weights = where.weights
    out: list[Region] = []
    for cls, on in masks:
        mask = on.astype(np.uint8)
        if not mask.any():
            continue
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        flat = labels.ravel()
        area = np.bincount(flat, weights=weights.ravel(), minlength=n)
        ys = np.bincount(flat, weights=(weights * r_centre[:, None]).ravel(), minlength=n)
        xs = np.bincount(flat, weights=(weights * c_centre[None, :]).ravel(), minlength=n)
        found: list[Region] = []
        for k in range(1, n):
            a = round(float(area[k]))
            if a == 0 or a < min_area:
                continue
            x, y, bw, bh = (int(v) for v in stats[k, :4])
            rows = slice(y, y + bh)
            cols = slice(x, x + bw)
            box = (
                int(c_first[cols].min()), int(r_first[rows].min()),
                int(c_end[cols].max()), int(r_end[rows].max()),
            )  # fmt: skip
            centroid = (round(xs[k] / area[k], 2), round(ys[k] / area[k], 2))
            length = width = None
            if measured:
                crop = labels[y : y + bh, x : x + bw] == k
                length, width = measure(crop, *_scale(where))
            found.append(Region(cls, a, box, centroid, length, width))
        out += sorted(found, key=lambda r: -r.area)
    return out


def _scale(where: MaskMap) -> tuple[float, float]:
    """Frame pixels per mask pixel, across and down (mask pixels off the frame not counted)."""
    sx = (where.cols >= 0).sum() / max(1, len(np.unique(where.cols[where.cols >= 0])))
    sy = (where.rows >= 0).sum() / max(1, len(np.unique(where.rows[where.rows >= 0])))
    return float(sx), float(sy)


def thin(region: Array) -> Array:
    """The skeleton of a bool image (Zhang and Suen's thinning, 1984): one pixel wide,
    8-connected, along the middle of each shape."""
    img = np.pad(region.astype(np.uint8), 1)
    while True:
        changed = False
        for step in (0, 1):
            p2, p3, p4 = img[:-2, 1:-1], img[:-2, 2:], img[1:-1, 2:]
            p5, p6, p7 = img[2:, 2:], img[2:, 1:-1], img[2:, :-2]
            p8, p9 = img[1:-1, :-2], img[:-2, :-2]
            ring = (p2, p3, p4, p5, p6, p7, p8, p9, p2)
            b = sum(p.astype(np.int16) for p in ring[:8])
            a = sum(((ring[i] == 0) & (ring[i + 1] == 1)).astype(np.int16) for i in range(8))
            gone = (img[1:-1, 1:-1] == 1) & (b >= 2) & (b <= 6) & (a == 1)
            if step == 0:
                gone &= (p2 * p4 * p6 == 0) & (p4 * p6 * p8 == 0)
            else:
                gone &= (p2 * p4 * p8 == 0) & (p2 * p6 * p8 == 0)
            if gone.any():
                img[1:-1, 1:-1][gone] = 0
                changed = True
        if not changed:
            return img[1:-1, 1:-1].astype(bool)


def _without_corners(skel: Array) -> Array:
    """The skeleton less the pixels a path does not need: where thinning leaves a staircase
    (right, down, right, ...) the corner pixels are detours, and a path through them would
    count two straight steps for one diagonal. A pixel goes if its neighbours stay
    connected without it (Yokoi's 8-connectivity number is 1) and it is not an end; the
    four subfields of (row, column) parity take turns, so no two pixels that go together
    are neighbours and the path stays connected."""
    img = np.pad(skel.astype(np.uint8), 1)
    row_parity = (np.arange(img.shape[0] - 2) % 2)[:, None]
    col_parity = (np.arange(img.shape[1] - 2) % 2)[None, :]
    changed = True
    while changed:
        changed = False
        for sub in ((0, 0), (0, 1), (1, 0), (1, 1)):
            c: Array = img[1:-1, 1:-1]
            # The ring from east, counter-clockwise: E, NE, N, NW, W, SW, S, SE.
            x = [img[1:-1, 2:], img[:-2, 2:], img[:-2, 1:-1], img[:-2, :-2],
                 img[1:-1, :-2], img[2:, :-2], img[2:, 1:-1], img[2:, 2:]]  # fmt: skip
            off = [1 - v.astype(np.int16) for v in x]
            n8 = sum(off[k] - off[k] * off[k + 1] * off[(k + 2) % 8] for k in (0, 2, 4, 6))
            neighbours = sum(v.astype(np.int16) for v in x)
            here = (row_parity == sub[0]) & (col_parity == sub[1])
            gone = (c == 1) & (n8 == 1) & (neighbours >= 2) & here
            if gone.any():
                img[1:-1, 1:-1][gone] = 0
                changed = True
    return img[1:-1, 1:-1].astype(bool)


#: The skeleton's 8 neighbour offsets (row, column).
_RING = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def measure(region: Array, sx: float = 1.0, sy: float = 1.0) -> tuple[float, float]:
    """(length, largest width) of a bool image's shape, in its pixels, or scaled: each of its
    pixels ``sx`` wide and ``sy`` high (a model-resolution mask, measured in frame pixels:
    the mask is drawn on the frame by repeating its pixels, so measuring the small one loses
    nothing, and costs a fraction).

    Width: twice the largest distance from inside to the edge (the distance transform), less
    half a pixel, so a band of W pixels measures W to within half a pixel. Length: the
    skeleton's path, 1 a straight step and sqrt 2 a diagonal one, less 0.115 a change of
    direction (a digital path zigzags: without that term a curve measures about 5 % long; the
    form is Vossepoel and Smeulders', the constant chosen on lines and curves drawn at every
    angle, which then measure within 1.5 %), plus at each end the distance to the edge there,
    which thinning wears off (without it a W-wide bar of length L measures about L - W).
    """
    mean = math.sqrt(sx * sy)  # for what has no direction: widths, the ends
    img = np.pad(region.astype(np.uint8), 1)
    dist = cv2.distanceTransform(img, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    width = max(0.0, 2.0 * float(dist.max()) - 0.5) * mean
    skel = _without_corners(thin(img.astype(bool))).astype(np.int32)
    if not skel.any():
        return 0.0, round(width, 2)
    across = int((skel[:, 1:] & skel[:, :-1]).sum())
    down = int((skel[1:, :] & skel[:-1, :]).sum())
    # A diagonal step counts where no straight path joins the two pixels (else it is a corner
    # already counted as two straight steps).
    d1 = skel[1:, 1:] & skel[:-1, :-1] & ~(skel[1:, :-1] | skel[:-1, 1:]) & 1
    d2 = skel[1:, :-1] & skel[:-1, 1:] & ~(skel[1:, 1:] | skel[:-1, :-1]) & 1
    diagonal = int(d1.sum() + d2.sum())
    h, w = skel.shape
    pad = np.pad(skel, 1)
    around = np.stack([pad[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx in _RING])
    degree = around.sum(axis=0)
    # A pixel on the path whose two neighbours are not opposite each other: a turn.
    offsets = np.array(_RING)
    dy = np.tensordot(offsets[:, 0], around, axes=1)
    dx = np.tensordot(offsets[:, 1], around, axes=1)
    turns = int(((skel == 1) & (degree == 2) & ((dy != 0) | (dx != 0))).sum())
    length = across * sx + down * sy + math.hypot(sx, sy) * diagonal - 0.115 * turns * mean
    ends = (skel == 1) & (degree <= 1)
    if ends.sum() >= 2:
        length += float(dist[ends].sum()) * mean
    else:  # a round blob thins to a point (or a ring): its length is its diameter
        length = max(length, 2.0 * float(dist.max()) * mean)
    return round(length, 2), round(width, 2)
