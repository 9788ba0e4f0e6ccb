"""Readers of what the worker writes, for the tests: a PNG picture (libpng, through cv2), an
indexed PNG back to its class map and palette, a bits PNG back to its bits, COCO RLE back to
a mask (``worker.ops.masks``).
Written independently of the writers' code paths, so a test that round-trips through them
checks the files, not the writers against themselves."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping
from typing import Any

import cv2
import numpy as np

__all__ = ["decode_png", "read_bits_png", "read_indexed_png", "rle_decode"]

Array = np.ndarray[Any, Any]
_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def decode_png(data: bytes, flags: int = cv2.IMREAD_COLOR) -> Array:
    """A PNG as libpng reads it, through cv2."""
    img: Array | None = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    assert img is not None
    return img


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    if not data.startswith(_SIGNATURE):
        raise ValueError("not a PNG file (bad signature)")
    out, p = [], len(_SIGNATURE)
    while p < len(data):
        if p + 12 > len(data):
            raise ValueError(f"truncated PNG chunk header at byte {p}")
        (n,), kind = struct.unpack(">I", data[p : p + 4]), data[p + 4 : p + 8]
        body = data[p + 8 : p + 8 + n]
        if len(body) != n or p + 12 + n > len(data):
            raise ValueError(f"truncated PNG chunk {kind!r} at byte {p}")
        (crc,) = struct.unpack(">I", data[p + 8 + n : p + 12 + n])
        if zlib.crc32(body, zlib.crc32(kind)) != crc:
            raise ValueError(f"PNG chunk {kind!r} at byte {p} fails its CRC")
        out.append((kind, body))
        p += 12 + n
        if kind == b"IEND":
            return out
    raise ValueError("PNG file has no IEND chunk (truncated?)")


def read_indexed_png(data: bytes) -> tuple[Array, Array]:
    """An 8-bit indexed PNG as :func:`indexed_png` writes it -> (class map (h, w) uint8,
    palette (n, 3) uint8 RGB).

    Reads any such file whose rows all use filter 0, not interlaced. Anything else (another
    colour type, bit depth, filter or interlacing, a bad CRC, missing chunks) is a ValueError.
    """
    chunks = _chunks(data)
    if not chunks or chunks[0][0] != b"IHDR" or len(chunks[0][1]) != 13:
        raise ValueError("PNG file does not start with an IHDR chunk")
    w, h, depth, colour, method, filter_method, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    if (depth, colour) != (8, 3):
        raise ValueError(f"not an 8-bit indexed PNG (bit depth {depth}, colour type {colour})")
    if (method, filter_method, interlace) != (0, 0, 0):
        raise ValueError(
            f"unsupported PNG: compression {method}, filter method {filter_method}, "
            f"interlace {interlace}"
        )
    for kind, _ in chunks:
        # An unknown critical chunk (upper-case first letter) changes how the image decodes.
        if kind[0:1].isupper() and kind not in (b"IHDR", b"PLTE", b"IDAT", b"IEND"):
            raise ValueError(f"unsupported critical PNG chunk {kind!r}")
    plte = [body for kind, body in chunks if kind == b"PLTE"]
    if len(plte) != 1 or not plte[0] or len(plte[0]) % 3 or len(plte[0]) > 768:
        raise ValueError("indexed PNG needs exactly one PLTE chunk of 1-256 RGB entries")
    try:
        raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    except zlib.error as e:
        raise ValueError(f"PNG image data does not decompress: {e}") from e
    if len(raw) != h * (w + 1):
        raise ValueError(f"PNG image data holds {len(raw)} bytes, {h}x{w} needs {h * (w + 1)}")
    rows = np.frombuffer(raw, np.uint8).reshape(h, w + 1)
    if rows[:, 0].any():
        bad = sorted({int(f) for f in rows[:, 0]} - {0})
        raise ValueError(f"PNG rows use filter types {bad}; only filter 0 is read")
    palette = np.frombuffer(plte[0], np.uint8).reshape(-1, 3).copy()
    return rows[:, 1:].copy(), palette


def read_bits_png(data: bytes) -> Array:
    """A PNG written by :func:`bits_png` (or any 8/16-bit grey or 8-bit RGBA PNG laid out
    the same way) -> (h, w) uint32 bits."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError("not a PNG that cv2 can decode")
    if img.ndim == 2 and img.dtype in (np.uint8, np.uint16):
        out: Array = img.astype(np.uint32)
        return out
    if img.ndim == 3 and img.shape[2] == 4 and img.dtype == np.uint8:
        rgba = np.ascontiguousarray(cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA))
        out = rgba.view("<u4").reshape(img.shape[:2]).astype(np.uint32)
        return out
    raise ValueError(f"not a bits PNG: decoded as {img.dtype} {img.shape}")


def _decode(s: str) -> Array:
    """pycocotools' rleFrString, vectorised: the inverse of :func:`_encode`."""
    try:
        c = np.frombuffer(s.encode("ascii"), np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError as e:
        raise ValueError("RLE counts string is not ASCII") from e
    if c.size and ((c < 0) | (c > 63)).any():
        raise ValueError("RLE counts string has characters outside '0'..'o'")
    last = c & 32 == 0
    if c.size and not last[-1]:
        raise ValueError("RLE counts string ends inside a number")
    ends = np.flatnonzero(last)
    starts = np.concatenate(([0], ends[:-1] + 1))
    k = np.arange(c.size) - np.repeat(starts, ends - starts + 1)  # group index in its number
    if c.size and k.max() > 7:
        raise ValueError("RLE counts string has a number too long to be a count")
    x = np.add.reduceat((c & 31) << (5 * k), starts) if c.size else c
    # Sign-extend from the last group's 0x10 bit, as rleFrString does.
    negative = c[ends] & 16 != 0
    x = np.where(negative, x - (np.int64(1) << (5 * (k[ends] + 1))), x)
    counts = x.copy()
    counts[1::2] = np.cumsum(x[1::2])  # 3 = x3 + c1, 5 = x5 + c3, ...
    counts[2::2] = np.cumsum(x[2::2])  # 2 stands as it is; 4 = x4 + c2, ...
    return counts


def rle_decode(obj: Mapping[str, Any]) -> Array:
    """COCO RLE (compressed string, bytes as pycocotools returns it, or a list of counts)
    -> (h, w) bool mask. Counts that do not add up to h * w are a ValueError."""
    try:
        h, w = (int(v) for v in obj["size"])
        counts_in = obj["counts"]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"not a COCO RLE object ({e}): {str(obj)[:80]}") from e
    if isinstance(counts_in, bytes):
        counts_in = counts_in.decode("ascii", errors="replace")
    if isinstance(counts_in, str):
        counts = _decode(counts_in)
    else:
        counts = np.asarray(counts_in, dtype=np.int64).reshape(-1)
    if h < 0 or w < 0 or (counts < 0).any() or int(counts.sum()) != h * w:
        raise ValueError(
            f"RLE counts add up to {int(counts.sum())} pixels, size {h}x{w} has {h * w} "
            "(or a count is negative)"
        )
    values = np.arange(counts.size) % 2 == 1
    return np.ascontiguousarray(np.repeat(values, counts).reshape(w, h).T)
