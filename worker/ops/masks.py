"""Masks out of the worker: lossless PNGs and COCO run-length encoding. Pure numpy, zlib, cv2.

Class maps (``--masks DIR``): :func:`indexed_png` writes an 8-bit *indexed* PNG (colour type
3). Each pixel's value is its class index, so any PNG reader that keeps indices (PIL's mode
``P``, ``np.array(Image.open(f))``, FFmpeg's ``pal8``) gives the class map back, while viewers
show the model card's colours from the PLTE chunk. Index 255 (``NO_CLASS``, pixels the model
did not see) is fully transparent through a tRNS chunk; every other index is opaque. The
palette always holds 256 entries, so no index can fall outside it.

Multi-label bits (``--masks DIR`` with ``multi_label``): :func:`bits_png` writes one lossless
PNG per frame whose *sample value is the bit mask* (bit ``c`` set = class ``c`` on), in the
smallest format that holds ``classes`` bits, chosen from ``classes`` alone, so every frame of
a run has the same format:

- up to 8 classes: 8-bit greyscale, ``bits = v``;
- up to 16 classes: 16-bit greyscale, ``bits = v`` (PNG stores it big-endian; decoders such as
  ``cv2.imread(f, cv2.IMREAD_UNCHANGED)`` or PIL hand back the integer);
- up to 32 classes: 8-bit RGBA, the four bytes of the little-endian uint32 in file order,
  ``bits = R | G << 8 | B << 16 | A << 24`` (cv2 reads it as BGRA: mind the order). The alpha
  byte is data: most viewers show such a file as (partly) transparent.

One file per frame rather than one per class keeps the files few and the write fast (one
compression), and a sample that *is* the mask decodes in one line of any language.

COCO RLE (``--masks rle``): :func:`rle` is pycocotools' compressed string form, so
``pycocotools.mask.decode({"size": [h, w], "counts": s})`` reads what we write.
:func:`rle_per_label` makes one per label present in a frame from a class map or the bits.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from worker.ops.postprocess import NO_CLASS

__all__ = [
    "Rle",
    "bits_png",
    "indexed_png",
    "instance_ids",
    "instance_png",
    "rle",
    "rle_per_label",
]

Array = np.ndarray[Any, Any]
Rle = dict[str, Any]  # {"size": [h, w], "counts": str}; JSON as it is

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Class maps are long runs of a few values: deflate's run-length strategy halves the file of a
# typical 720p map against the default strategy at any level, at the same speed (~1 ms), and
# is twice as fast on noise. Level 1 for what cv2 writes.
_LEVEL = 1
# 16 * 32**j: the smallest value that needs more than j + 1 groups in COCO's RLE string.
_SIGN_BIT = 16 * 32 ** np.arange(8, dtype=np.int64)


# ------------------------------------------------------------------------------ indexed PNG


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(kind))
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def indexed_png(class_map: Array, palette: Array, *, transparent: int | None = NO_CLASS) -> bytes:
    """A lossless indexed PNG (colour type 3, 8 bits) of a (h, w) uint8 class map.

    ``palette``: (n, 3) uint8 RGB, n <= 256 (a model card's colours; missing entries are
    black). ``transparent``: the index given alpha 0 (default ``NO_CLASS``), None for none.
    Filter 0 on every row and one zlib stream (deflate's run-length strategy).
    """
    if class_map.dtype != np.uint8 or class_map.ndim != 2 or 0 in class_map.shape:
        raise ValueError(
            f"class map must be a non-empty (h, w) uint8 array, got {class_map.dtype} "
            f"{class_map.shape}"
        )
    if palette.ndim != 2 or palette.shape[1] != 3 or not 1 <= palette.shape[0] <= 256:
        raise ValueError(f"palette must be (n <= 256, 3) RGB, got {palette.shape}")
    h, w = class_map.shape
    full = np.zeros((256, 3), np.uint8)
    full[: palette.shape[0]] = palette
    rows = np.empty((h, w + 1), np.uint8)
    rows[:, 0] = 0  # filter type 0 ("None") for every row
    rows[:, 1:] = class_map
    parts = [
        _SIGNATURE,
        # width, height, bit depth 8, colour type 3, compression 0, filter 0, no interlace
        _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0)),
        _chunk(b"PLTE", full.tobytes()),
    ]
    if transparent is not None:
        if not 0 <= transparent <= 255:
            raise ValueError(f"transparent must be an index 0-255 or None, got {transparent}")
        alpha = np.full(transparent + 1, 255, np.uint8)
        alpha[transparent] = 0
        # tRNS may be shorter than PLTE: the entries after it are opaque.
        parts.append(_chunk(b"tRNS", alpha.tobytes()))
    # zlib.compress releases the GIL, so the pipeline's other stages run meanwhile.
    z = zlib.compressobj(_LEVEL, zlib.DEFLATED, 15, 9, zlib.Z_RLE)
    parts += [_chunk(b"IDAT", z.compress(rows.data) + z.flush()), _chunk(b"IEND", b"")]
    return b"".join(parts)


# ------------------------------------------------------------------------- multi-label bits


def bits_png(bits: Array, classes: int) -> bytes:
    """Multi-label bits (h, w) uint32 -> a lossless PNG whose sample value is the bit mask.

    The format follows ``classes`` (1-32): 8-bit grey up to 8, 16-bit grey up to 16, else RGBA
    with ``bits = R | G << 8 | B << 16 | A << 24`` (see the module's docstring). A bit set at
    or above ``classes`` is a ValueError: it would be lost or misread.
    """
    if bits.dtype != np.uint32 or bits.ndim != 2 or 0 in bits.shape:
        raise ValueError(
            f"bits must be a non-empty (h, w) uint32 array, got {bits.dtype} {bits.shape}"
        )
    if not 1 <= classes <= 32:
        raise ValueError(f"classes must be 1-32, got {classes}")
    if classes < 32 and (bits >> np.uint32(classes)).any():
        raise ValueError(f"bits set at or above bit {classes} (classes={classes})")
    if classes <= 8:
        img: Array = bits.astype(np.uint8)
    elif classes <= 16:
        img = bits.astype(np.uint16)
    else:
        # The uint32's bytes, low first, are R, G, B, A; cv2 takes BGRA, so swap R and B.
        le = np.ascontiguousarray(bits, dtype="<u4").view(np.uint8).reshape(*bits.shape, 4)
        img = cv2.cvtColor(le, cv2.COLOR_RGBA2BGRA)
    params = [cv2.IMWRITE_PNG_COMPRESSION, _LEVEL]
    params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    if hasattr(cv2, "IMWRITE_PNG_FILTER"):  # OpenCV >= 4.11
        # Sub alone instead of libpng trying five filters per row: 3x faster, ~20% larger.
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]
    ok, buf = cv2.imencode(".png", img, params)
    if not ok:  # pragma: no cover - cv2 encodes every 2-D uint8/uint16 and BGRA image
        raise ValueError("cv2 could not encode the bits as PNG")
    return bytes(buf.data)


def _png(img: Array) -> bytes:
    params = [cv2.IMWRITE_PNG_COMPRESSION, _LEVEL]
    params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok, buf = cv2.imencode(".png", img, params)
    if not ok:  # pragma: no cover - cv2 encodes every 2-D uint8/uint16 image
        raise ValueError("cv2 could not encode the picture as PNG")
    return bytes(buf.data)


def instance_ids(
    masks: Sequence[tuple[tuple[int, int, int, int], Array]], frame_hw: tuple[int, int]
) -> Array:
    """Instance masks (each: its box x1, y1, x2, y2 in whole frame pixels, and a bool mask of
    the box's size) as one (h, w) uint16 map: 0 nothing, k the k-th instance (1-based, the
    order of the frame's ``objects``). Where two overlap the earlier (higher score) wins."""
    if len(masks) > 65535:
        raise ValueError(f"{len(masks)} instances: at most 65535 fit a 16-bit map")
    out = np.zeros(frame_hw, np.uint16)
    for k in range(len(masks) - 1, -1, -1):  # the last painted, the first listed, wins
        (x1, y1, x2, y2), inside = masks[k]
        out[y1:y2, x1:x2][inside] = k + 1
    return out


def instance_png(ids: Array) -> bytes:
    """A (h, w) uint16 instance map as a 16-bit grey PNG (always 16-bit: one format to read,
    whatever the count)."""
    if ids.dtype != np.uint16 or ids.ndim != 2 or 0 in ids.shape:
        raise ValueError(
            f"instance map must be a non-empty (h, w) uint16 array, got {ids.dtype} {ids.shape}"
        )
    return _png(ids)


# ------------------------------------------------------------------------------------ RLE


def _runs(flat: Array) -> tuple[Array, Array]:
    """A 1-D array -> (start of each run of equal values, each run's value)."""
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], starts)) if flat.size else starts
    return starts, flat[starts]


def _counts(starts: Array, on: Array, n: int) -> Array:
    """COCO counts (off, on, off, ...) of a mask given as runs: ``on[i]`` for the run starting
    at ``starts[i]``. Neighbouring runs that are both on merge into one count."""
    prev = np.concatenate(([False], on))[:-1]
    cuts = starts[on != prev]
    counts: Array = np.diff(np.concatenate(([0], cuts, [n])))
    return counts


def _encode(counts: Array) -> str:
    """pycocotools' rleToString: from the fourth count on, each is stored as the difference
    from the count two before; every signed value becomes 5-bit groups, low first, as chars
    48 + group, with 0x20 set on all but the last. Vectorised over the chars, not the counts.
    """
    x = counts.astype(np.int64)
    x[3:] -= counts[1:-2].astype(np.int64)
    # A value takes L groups when it fits in 5L signed bits: the last group's 0x10 bit is its
    # sign. ~x maps negatives onto the same thresholds as non-negatives.
    length = 1 + np.searchsorted(_SIGN_BIT, np.where(x < 0, ~x, x), side="right")
    end = np.cumsum(length)
    value = np.repeat(x, length)
    k = np.arange(value.size) - np.repeat(end - length, length)  # group index in its value
    more = np.ones(value.size, bool)
    more[end - 1] = False
    chars: Array = (((value >> (5 * k)) & 31) + 48 + 32 * more).astype(np.uint8)
    return chars.tobytes().decode("ascii")


def rle(mask: Array) -> Rle:
    """A (h, w) mask (bool, or nonzero = on) -> COCO compressed RLE
    ``{"size": [h, w], "counts": str}``: column-major runs, starting with a (maybe empty) run
    of zeros, in pycocotools' string form."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be (h, w), got {mask.shape}")
    h, w = mask.shape
    flat = np.ascontiguousarray(mask.T).ravel() != 0  # column-major, as COCO counts
    starts, on = _runs(flat)
    return {"size": [h, w], "counts": _encode(_counts(starts, on, h * w))}


def rle_per_label(
    class_map: Array | None, bits: Array | None, labels: Sequence[str]
) -> dict[str, Rle]:
    """label -> COCO RLE of its pixels, for the labels present in the frame (the keys of
    ``coverage``/``coverage_bits``, in class order).

    With ``bits`` ((h, w) uint32, multi-label) each label is its bit; else each is its value
    in ``class_map`` ((h, w) uint8; ``NO_CLASS`` and values past ``labels`` are no label).
    The frame is scanned once: each label's runs come from the runs of the whole map.
    """
    source = bits if bits is not None else class_map
    if source is None or source.ndim != 2:
        raise ValueError("rle_per_label needs a (h, w) class map or bits")
    h, w = source.shape
    starts, values = _runs(np.ascontiguousarray(source.T).ravel())
    out = {}
    if bits is not None:
        for k, label in enumerate(labels[:32]):
            on = (values >> np.uint32(k)) & 1 != 0
            if on.any():
                out[label] = {"size": [h, w], "counts": _encode(_counts(starts, on, h * w))}
        return out
    # Group the runs by class once (a stable sort keeps each class's runs in frame order), so
    # each label costs its own runs, not the whole frame's. Runs of one class are never
    # neighbours, so each run is one "on" count between two "off" counts.
    bounds = np.append(starts, h * w)
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    firsts = np.flatnonzero(np.diff(ranked, prepend=ranked[:1] ^ 1))
    for a, b in zip(firsts, [*firsts[1:], ranked.size], strict=True):
        k = int(ranked[a])
        if k >= min(len(labels), NO_CLASS):
            continue
        idx = order[a:b]
        cuts = np.empty(2 * idx.size + 2, np.int64)
        cuts[0], cuts[-1] = 0, h * w
        cuts[1:-1:2], cuts[2:-1:2] = bounds[idx], bounds[idx + 1]
        counts = np.diff(cuts)
        # COCO counts end with the last run itself, never with an empty run of zeros.
        counts = counts[:-1] if counts[-1] == 0 else counts
        out[labels[k]] = {"size": [h, w], "counts": _encode(counts)}
    return out
